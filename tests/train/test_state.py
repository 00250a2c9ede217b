"""Exact resume from a training-state checkpoint."""

import json
import math

import pytest
import torch
from safetensors import safe_open

from bitscale.train import RunConfig, run


class Killed(Exception):
    pass


def saved_step(path) -> int:
    with safe_open(str(path), framework="pt") as f:
        return json.loads(f.metadata()["bitscale.state"])["step"]


def config(optimizer: str, **train) -> RunConfig:
    return RunConfig.model_validate(
        {
            "model": {"kind": "mlp", "width": 16, "depth": 2, "quant": "bitnet-b1.58"},
            "task": {"function": "sines", "d": 8, "n_train": 96, "n_test": 64, "noise_std": 0.1},
            "train": {"optimizer": optimizer, "lr": 0.01, "steps": 60, "batch_size": 32, "eval_every": 10,
                      "schedule": "cosine", "momentum": 0.9, "seed": 3, **train},
        }
    )


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_killed_run_resumes_to_the_same_result(tmp_path, optimizer):
    cfg = config(optimizer, weight_decay=0.01, grad_clip=1.0)
    _, _, whole = run(cfg)

    state = tmp_path / "state.safetensors"

    def kill_at_40(step, loss):
        if step == 40:  # the checkpoint at 30 exists; updates 31..40 are lost work
            raise Killed

    with pytest.raises(Killed):
        run(cfg, callback=kill_at_40, checkpoint=state, checkpoint_every=15)
    assert saved_step(state) == 30

    torch.manual_seed(12345)  # global RNG disturbed between the two processes' lifetimes
    _, _, resumed = run(cfg, checkpoint=state, checkpoint_every=15)
    assert resumed.status == "done" and resumed.steps_done == 60
    assert resumed.train_curve == whole.train_curve
    assert resumed.test_curve == whole.test_curve
    assert resumed.final_train_loss == whole.final_train_loss


def test_checkpoint_of_another_seed_is_rejected(tmp_path):
    state = tmp_path / "state.safetensors"
    with pytest.raises(Killed):
        run(config("sgd"), callback=lambda s, l: (_ for _ in ()).throw(Killed) if s == 30 else None,
            checkpoint=state, checkpoint_every=20)
    other = config("sgd", seed=4)
    with pytest.raises(RuntimeError, match="minibatch stream"):
        run(other, checkpoint=state)


def test_no_checkpoint_written_without_a_path_and_none_after_the_last_step(tmp_path):
    state = tmp_path / "state.safetensors"
    _, _, result = run(config("sgd", steps=20), checkpoint=state, checkpoint_every=20)
    assert result.status == "done" and not state.exists()  # a checkpoint at the final step is never needed
    _, _, result = run(config("sgd", steps=20), checkpoint=state, checkpoint_every=7)
    assert state.exists() and math.isfinite(result.final_train_loss)


def test_a_non_state_safetensors_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="not a bitscale training state"):
        run(config("sgd"), checkpoint=path)
