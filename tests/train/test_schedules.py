import math

import pytest
import torch
from torch import nn

from bitscale.train import TrainConfig, lr_at, train, weight_decay_at


def lrs(cfg: TrainConfig) -> list[float]:
    return [lr_at(s, cfg) for s in range(cfg.steps)]


def test_linear_warmup_then_constant():
    cfg = TrainConfig(lr=1.0, steps=10, warmup_steps=4)
    assert lrs(cfg) == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])


def test_cosine():
    cfg = TrainConfig(lr=2.0, steps=100, schedule="cosine", min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(2.0)
    assert lr_at(50, cfg) == pytest.approx(2.0 * (0.1 + 0.9 * 0.5))  # midpoint: halfway to the floor
    assert lr_at(25, cfg) == pytest.approx(2.0 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4))))
    assert lr_at(100, cfg) == pytest.approx(0.2)  # floor, after the last update
    assert all(a > b for a, b in zip(lrs(cfg), lrs(cfg)[1:]))


def test_cosine_after_warmup():
    cfg = TrainConfig(lr=1.0, steps=120, warmup_steps=20, schedule="cosine")
    assert lr_at(19, cfg) == pytest.approx(1.0)
    assert lr_at(20, cfg) == pytest.approx(1.0)
    assert lr_at(70, cfg) == pytest.approx(0.5)  # midpoint of the decay phase


def test_linear():
    cfg = TrainConfig(lr=1.0, steps=100, schedule="linear")
    assert lr_at(25, cfg) == pytest.approx(0.75)
    assert lr_at(99, cfg) == pytest.approx(0.01)
    cfg = TrainConfig(lr=1.0, steps=100, schedule="linear", min_lr_ratio=0.2)
    assert lr_at(50, cfg) == pytest.approx(0.6)


def test_two_stage_cut_exactly_at_midpoint():
    cfg = TrainConfig(lr=1.0, steps=100, schedule="two-stage", min_lr_ratio=0.1, stage2_lr_ratio=0.5)
    assert lr_at(0, cfg) == pytest.approx(1.0)
    assert lr_at(49, cfg) == pytest.approx(1.0 - 0.9 * 0.49)
    assert lr_at(50, cfg) == pytest.approx((1.0 - 0.9 * 0.50) * 0.5)  # sudden cut
    assert lr_at(99, cfg) == pytest.approx((1.0 - 0.9 * 0.99) * 0.5)
    assert lr_at(100, cfg) == pytest.approx(0.1 * 0.5)  # lr * min_lr_ratio * stage2_lr_ratio


def test_two_stage_odd_steps_cut_at_floor_half():
    cfg = TrainConfig(lr=1.0, steps=11, schedule="two-stage", stage2_lr_ratio=0.25)
    drops = [s for s in range(1, 11) if lr_at(s, cfg) < 0.5 * lr_at(s - 1, cfg)]
    assert drops == [11 // 2]


def test_weight_decay_switch():
    cfg = TrainConfig(steps=100, schedule="two-stage", weight_decay=0.1)
    assert [weight_decay_at(s, cfg) for s in (0, 49, 50, 99)] == [0.1, 0.1, 0.0, 0.0]
    cfg = TrainConfig(steps=100, schedule="two-stage", weight_decay=0.1, stage2_weight_decay=0.01)
    assert weight_decay_at(50, cfg) == 0.01
    for schedule in ("constant", "cosine", "linear"):
        cfg = TrainConfig(steps=100, schedule=schedule, weight_decay=0.1, stage2_weight_decay=0.5)
        assert {weight_decay_at(s, cfg) for s in range(100)} == {0.1}


class ZeroOutput(nn.Module):
    """Output is 0 * (x @ w): the loss gradient is zero, so only weight decay moves w."""

    def __init__(self, d: int):
        super().__init__()
        self.w = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return 0.0 * (x @ self.w)


def test_loop_applies_lr_and_weight_decay_every_step(make_task):
    # SGD with L2 decay and zero loss gradient: w_{k+1} = (1 - lr_k * wd_k) * w_k.
    task = make_task(d=4)
    cfg = TrainConfig(lr=0.5, steps=20, warmup_steps=3, schedule="two-stage", weight_decay=0.2,
                      stage2_weight_decay=0.05, eval_every=5)
    model = ZeroOutput(4).double()
    task.x_train, task.x_test = task.x_train.double(), task.x_test.double()
    task.y_train, task.y_test = task.y_train.double(), task.y_test.double()
    train(model, task, cfg)
    expected = math.prod(1 - lr_at(s, cfg) * weight_decay_at(s, cfg) for s in range(cfg.steps))
    torch.testing.assert_close(model.w.detach(), torch.full((4,), expected, dtype=torch.float64))
