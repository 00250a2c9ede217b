import copy
import json
import math

import pytest
import torch
from torch import nn

from bitscale.train import RunResult, TrainConfig, train


def linear_model(d: int, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(d, 1)


@pytest.mark.parametrize(
    "cfg",
    [
        TrainConfig(optimizer="sgd", lr=0.1, steps=200, eval_every=50),
        TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, steps=200, eval_every=50),
        TrainConfig(optimizer="adam", lr=0.05, steps=200, eval_every=50, schedule="cosine"),
        TrainConfig(optimizer="adamw", lr=0.05, steps=200, eval_every=50, weight_decay=1e-4),
    ],
    ids=["sgd", "sgd-momentum", "adam", "adamw"],
)
def test_loss_decreases(task, cfg):
    result = train(linear_model(task.d), task, cfg)
    assert result.status == "done" and result.diverged_at is None and result.steps_done == cfg.steps
    initial = result.train_curve[0][1]
    assert result.final_train_loss < 1e-2 * initial
    assert result.final_test_loss < 1e-2 * result.test_curve[0][1]
    assert result.n_params == task.d + 1


def test_minibatch_also_learns(task):
    result = train(linear_model(task.d), task, TrainConfig(lr=0.05, steps=300, batch_size=8, eval_every=100))
    assert result.final_train_loss < 1e-2 * result.train_curve[0][1]


def test_full_batch_equals_batch_size_at_least_n_train(task):
    runs = [train(linear_model(task.d), task, TrainConfig(steps=30, eval_every=10, batch_size=bs))
            for bs in (None, task.n_train, 10 * task.n_train)]
    assert runs[0].train_curve == runs[1].train_curve == runs[2].train_curve


def test_curves_contain_step_zero_every_eval_and_end(task):
    result = train(linear_model(task.d), task, TrainConfig(steps=25, eval_every=10))
    steps = [s for s, _ in result.train_curve]
    assert steps == [0, 10, 20, 25]
    assert [s for s, _ in result.test_curve] == steps
    assert result.final_train_loss == result.train_curve[-1][1]
    assert result.final_test_loss == result.test_curve[-1][1]


def test_callback_called_at_each_eval(task):
    seen = []
    result = train(linear_model(task.d), task, TrainConfig(steps=20, eval_every=10),
                   callback=lambda step, loss: seen.append((step, loss)))
    assert seen == result.train_curve


def test_step_zero_is_initial_model(task):
    model = linear_model(task.d)
    with torch.no_grad():
        initial = task.loss(model(task.x_train), task.y_train).item()
    result = train(model, task, TrainConfig(steps=5))
    assert result.train_curve[0] == (0, pytest.approx(initial))


@pytest.mark.parametrize("batch_size", [None, 8])
def test_deterministic(task, batch_size):
    cfg = TrainConfig(steps=50, eval_every=10, batch_size=batch_size, seed=3)
    model_a, model_b = linear_model(task.d), linear_model(task.d)
    torch.manual_seed(123)  # global RNG state must not matter
    a = train(model_a, task, cfg)
    torch.manual_seed(456)
    b = train(model_b, task, cfg)
    assert a.train_curve == b.train_curve and a.test_curve == b.test_curve
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(pa, pb)


def test_different_seed_different_minibatches(task):
    cfg = TrainConfig(steps=50, eval_every=10, batch_size=8)
    a = train(linear_model(task.d), task, cfg.model_copy(update={"seed": 0}))
    b = train(linear_model(task.d), task, cfg.model_copy(update={"seed": 1}))
    assert a.train_curve[0] == b.train_curve[0]  # same init
    assert a.train_curve[1:] != b.train_curve[1:]


class NaNModel(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.lin = nn.Linear(d, 1)

    def forward(self, x):
        return self.lin(x) * float("nan")


def test_nan_model_diverges_at_step_zero(task):
    result = train(NaNModel(task.d), task, TrainConfig(steps=10))
    assert result.status == "diverged" and result.diverged_at == 0 and result.steps_done == 0
    assert math.isnan(result.final_train_loss) and math.isnan(result.final_test_loss)
    assert result.train_curve == []


class NaNAfter(nn.Module):
    """Finite for the first `k` training forwards, NaN afterwards (eval forwards don't count)."""

    def __init__(self, d: int, k: int):
        super().__init__()
        self.lin, self.k, self.calls = nn.Linear(d, 1), k, 0

    def forward(self, x):
        if self.training:
            self.calls += 1
        return self.lin(x) * (float("nan") if self.calls > self.k else 1.0)


def test_minibatch_nan_reports_its_step(task):
    result = train(NaNAfter(task.d, k=7), task, TrainConfig(lr=0.01, steps=100, eval_every=5))
    assert result.status == "diverged" and result.diverged_at == 7 and result.steps_done == 7
    assert [s for s, _ in result.train_curve] == [0, 5]


def test_huge_lr_diverges_without_raising(task):
    result = train(linear_model(task.d), task, TrainConfig(lr=1e6, steps=500, eval_every=100))
    assert result.status == "diverged"
    assert 0 < result.diverged_at < 500 and result.steps_done == result.diverged_at
    assert math.isnan(result.final_train_loss)
    json.dumps(result.to_dict())


def test_grad_clip_bounds_the_update(make_task):
    task = make_task(d=4)
    task.y_train = task.y_train * 1e6  # enormous gradient at w = 0
    cfg = TrainConfig(lr=1.0, steps=1, grad_clip=0.5)
    for clip, bound in ((0.5, 0.5 + 1e-5), (None, None)):
        model = nn.Linear(4, 1)
        nn.init.zeros_(model.weight)
        nn.init.zeros_(model.bias)
        before = torch.cat([p.detach().clone().reshape(-1) for p in model.parameters()])
        train(model, task, cfg.model_copy(update={"grad_clip": clip}))
        after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        step_norm = (after - before).norm().item()
        if bound is None:
            assert step_norm > 1e3  # without clipping the same step is huge
        else:
            assert step_norm == pytest.approx(0.5, rel=1e-4)  # SGD, lr=1: ||update|| = clip


def test_frozen_parameters_untouched(task):
    model = nn.Sequential(nn.Linear(task.d, 16), nn.ReLU(), nn.Linear(16, 1))
    model[0].requires_grad_(False)
    frozen = copy.deepcopy(model[0].state_dict())
    trained_before = model[2].weight.detach().clone()
    result = train(model, task, TrainConfig(optimizer="adamw", lr=0.01, steps=20, weight_decay=0.1))
    for name, value in model[0].state_dict().items():
        assert torch.equal(value, frozen[name])
    assert not torch.equal(model[2].weight, trained_before)
    assert result.n_params == 16 + 1


def test_eval_mode_during_evaluation_and_train_mode_after(task):
    modes = []

    class Spy(nn.Linear):
        def forward(self, x):
            modes.append(self.training)
            return super().forward(x)

    model = Spy(task.d, 1)
    train(model, task, TrainConfig(steps=2, eval_every=1))
    # eval(0): 2 eval forwards; then per step: 1 train forward + 2 eval forwards
    assert modes == [False, False, True, False, False, True, False, False]
    assert model.training


def test_to_dict_is_json_round_trippable(task):
    result = train(linear_model(task.d), task, TrainConfig(steps=10, eval_every=5))
    d = json.loads(json.dumps(result.to_dict()))
    assert d["status"] == "done" and d["steps_done"] == 10 and d["n_params"] == task.d + 1
    assert d["train_curve"] == [[s, v] for s, v in result.train_curve]
    assert set(d) == set(RunResult.__dataclass_fields__)
