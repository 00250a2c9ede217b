"""Kernel diagnostics: known answers (a linear model is its own linearization; a wide fp32 net follows
its NTK-at-init prediction; kernel movement falls with width)."""

import math

import pytest
import torch
from torch import nn

from bitscale.data import make_task
from bitscale.models import TwoLayerNet
from bitscale.theory.diagnostics import KernelTrace, kernel_trace
from bitscale.train.config import TrainConfig


@pytest.fixture(scope="module")
def task():
    return make_task("sines", d=8, n_train=32, n_test=64, seed=0)


class Linear(nn.Module):
    """f(x) = <w, x>: linear in its parameters, so the linearized dynamics are exact."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(d, generator=torch.Generator().manual_seed(1)))

    def forward(self, x):
        return x @ self.w


def test_linear_model_is_its_own_linearization(task):
    cfg = TrainConfig(lr=0.02, steps=60)
    tr = kernel_trace(Linear(task.d), task, cfg, every=10, test_points=16)
    assert isinstance(tr, KernelTrace)
    assert tr.steps == [0, 10, 20, 30, 40, 50, 60]
    assert tr.run.status == "done"
    assert max(tr.linearized_distance) < 1e-4
    assert max(tr.linearized_test_distance) < 1e-4
    assert max(tr.movement) < 1e-6  # H = X X^T does not depend on the parameters
    for measured, predicted, bound in zip(tr.train_loss, tr.predicted_loss, tr.loss_bound):
        assert measured == pytest.approx(predicted, rel=1e-4, abs=1e-7)
        assert predicted <= bound * (1 + 1e-6)
    # H0 = X X^T has rank d = 8 < n = 32: lambda_min = 0, the residual orthogonal to the data never decays
    assert tr.lambda_min[0] == pytest.approx(0.0, abs=1e-3 * tr.lambda_max0_full)


def test_loss_bound_is_the_lambda_min_rate(task):
    """For eta <= n/(lambda_min + lambda_max) the bound is L(0) (1 - 2 eta lambda_min / n)^(2t)."""
    x = task.x_train[:4]  # n = 4 <= d = 8: the Gram of a linear model is full rank
    small = type(task)(task.name, x, task.y_train[:4], task.x_test, task.y_test, 0.0)
    cfg = TrainConfig(lr=0.05, steps=40)
    tr = kernel_trace(Linear(task.d), small, cfg, every=20)
    n, lmin, lmax = 4, tr.lambda_min0_full, tr.lambda_max0_full
    assert lmin > 0 and cfg.lr <= n / (lmin + lmax)
    for t, bound, loss in zip(tr.steps, tr.loss_bound, tr.train_loss):
        assert bound == pytest.approx(tr.train_loss[0] * (1 - 2 * cfg.lr * lmin / n) ** (2 * t), rel=1e-6)
        assert loss <= bound * (1 + 1e-4)
    assert tr.lambda_min[0] == pytest.approx(lmin, rel=1e-6)


def test_wide_fp32_net_follows_its_linearization(task):
    """Width 4096, fp32: the measured training loss equals the NTK-at-init prediction within 5 %."""
    net = TwoLayerNet(task.d, 4096, 1.0, "fp32", seed=0)
    tr = kernel_trace(net, task, TrainConfig(lr=0.1, steps=80), every=40, n_kernel=16)
    assert tr.train_loss[-1] < 0.2 * tr.train_loss[0]  # it did train
    for measured, predicted in zip(tr.train_loss, tr.predicted_loss):
        assert measured == pytest.approx(predicted, rel=0.05)
    assert max(tr.linearized_distance) < 0.02
    assert max(tr.movement) < 0.02
    assert len(tr.lambda_min) == len(tr.steps) == 3
    assert all(lm > 0 for lm in tr.lambda_min)


def test_kernel_movement_decreases_with_width(task):
    """The issue's known answer: final relative kernel movement falls monotonically with width
    (~ 1/sqrt(m) for the NTK parametrization)."""
    cfg = TrainConfig(lr=0.1, steps=60)
    final = {}
    for m in (256, 1024, 4096):
        net = TwoLayerNet(task.d, m, 1.0, "fp32", seed=0)
        tr = kernel_trace(net, task, cfg, every=60, n_kernel=16)
        assert tr.steps == [0, 60] and tr.movement[0] == 0.0
        final[m] = tr.movement[-1]
    assert final[256] > final[1024] > final[4096] > 0
    assert final[256] / final[4096] > 2.5  # 1/sqrt(m) would give 4


def test_one_bit_net_trace_runs(task):
    net = TwoLayerNet(task.d, 512, 1.0, "paper-1bit", seed=0)
    tr = kernel_trace(net, task, TrainConfig(lr=0.1, steps=20), every=10, n_kernel=8, test_points=8)
    assert tr.steps == [0, 10, 20]
    for series in (tr.lambda_min, tr.movement, tr.linearized_distance, tr.predicted_loss, tr.loss_bound,
                   tr.linearized_test_distance):
        assert len(series) == 3 and all(math.isfinite(v) for v in series)
    assert tr.movement[0] == 0.0 and tr.linearized_distance[0] == pytest.approx(0.0, abs=1e-10)
    d = tr.to_dict()
    assert d["run"]["status"] == "done" and d["steps"] == [0, 10, 20]


@pytest.mark.parametrize(
    "update, match",
    [({"optimizer": "adam"}, "optimizer"), ({"momentum": 0.9}, "momentum"), ({"batch_size": 8}, "batch_size"),
     ({"weight_decay": 0.1}, "weight decay"), ({"grad_clip": 1.0}, "grad_clip")],
)
def test_refuses_anything_but_plain_gd(task, update, match):
    cfg = TrainConfig(**{"lr": 0.1, "steps": 5, **update})
    with pytest.raises(ValueError, match=match):
        kernel_trace(Linear(task.d), task, cfg, every=1)


def test_argument_checks(task):
    cfg = TrainConfig(lr=0.1, steps=5)
    with pytest.raises(ValueError, match="every"):
        kernel_trace(Linear(task.d), task, cfg, every=0)
    with pytest.raises(ValueError, match="n_kernel"):
        kernel_trace(Linear(task.d), task, cfg, every=1, n_kernel=task.n_train + 1)
    with pytest.raises(ValueError, match="test_points"):
        kernel_trace(Linear(task.d), task, cfg, every=1, test_points=-1)
