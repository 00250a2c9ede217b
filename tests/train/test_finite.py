"""Diverged means diverged: a non-finite parameter or optimizer state ends a run, whatever the loss says."""

from __future__ import annotations

import math

import torch
from torch import nn

from bitscale.sweep.batched.loop import _Group
from bitscale.train import RunConfig, build_model, build_task, train
from bitscale.train.finite import first_nonfinite
from bitscale.train.lm import train_lm
from tests.train.test_lm import tiny_config

NAN = float("nan")


def test_first_nonfinite_names_the_parameter_buffer_or_optimizer_state():
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    opt = torch.optim.Adam(model.parameters())
    assert first_nonfinite(model, opt) is None
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    assert first_nonfinite(model, opt) is None
    opt.state[model[0].bias]["exp_avg"][0] = math.inf
    assert first_nonfinite(model, opt) == "optimizer state 'exp_avg' of '0.bias'"
    model[1].running_mean[1] = NAN
    assert first_nonfinite(model, opt) == "buffer '1.running_mean'"
    with torch.no_grad():
        model[0].weight[0, 0] = NAN
    assert first_nonfinite(model) == "parameter '0.weight'"


def _paper_run(steps=30):
    cfg = RunConfig.model_validate({"model": {"width": 16, "quant": "paper-1bit"},
                                    "task": {"d": 4, "n_train": 16, "n_test": 16},
                                    "train": {"lr": 0.5, "steps": steps, "eval_every": 5}})
    task = build_task(cfg.task)
    return cfg, task, build_model(cfg.model, task.d, cfg.train.seed)


def test_a_nan_weight_under_a_sign_quantizer_is_divergence_although_the_loss_stays_finite():
    cfg, task, model = _paper_run()

    def poison(step: int, loss: float) -> None:
        if step == 10:  # after the evaluation at step 10 recorded a finite loss
            with torch.no_grad():
                model.hidden.weight[0, 0] = NAN

    result = train(model, task, cfg.train, callback=poison)
    with torch.no_grad():  # the loss itself stays finite: sign(NaN) is a code like any other
        assert math.isfinite(task.loss(model(task.x_test), task.y_test).item())
    assert result.status == "diverged" and result.diverged_at == 15
    assert math.isnan(result.final_test_loss) and result.test_curve[-1][0] == 10


def test_the_batched_engine_marks_the_same_member_diverged_at_the_same_step():
    cfg, _, _ = _paper_run()
    other = cfg.model_copy(update={"train": cfg.train.model_copy(update={"seed": 1})})
    group = _Group([cfg, other])
    group.evaluate(0)
    group.ens.params["hidden.weight"][1, 0, 0] = NAN
    assert group.nonfinite_members() == [False, True]
    group.evaluate(5)
    assert group.status == ["done", "diverged"] and group.diverged_at == [None, 5]
    assert group.alive == [True, False] and group.nonfinite_members() == [False, False]  # frozen at zero


def test_a_diverged_lm_is_not_saved(tmp_path):
    cfg = tiny_config(lr=1e30, steps=10, warmup_steps=0, grad_clip=None)
    result = train_lm(cfg, tmp_path / "run")
    assert result.status == "diverged"
    assert not (tmp_path / "run").exists()
