"""Training-state checkpoints are verified: a flipped bit in any tensor is one line naming the file and the
tensor, and a checkpoint that fails verification or restores a non-finite loss is discarded, the run
restarting from scratch to the same result as an uninterrupted run, with the restart in its outcome."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from safetensors.torch import save_file

from bitscale.runs.outcome import outcome_from_lm_result, outcome_from_result
from bitscale.sweep.executors import STATE_FILE, RunTask, execute
from bitscale.tensorfile import DamagedFileError, UncheckedFileWarning, load_tensors, save_tensors
from bitscale.train import RunConfig, run
from bitscale.train.state import load_training_state
from tests.damage import flip, tensor_offsets

DISCARDED = (0, "run", "checkpoint_discarded", 1.0)


class Killed(Exception):
    pass


def config(**train) -> RunConfig:
    return RunConfig.model_validate(
        {
            "model": {"kind": "mlp", "width": 16, "depth": 2, "quant": "bitnet-b1.58"},
            "task": {"function": "sines", "d": 8, "n_train": 96, "n_test": 64, "noise_std": 0.1},
            "train": {"optimizer": "adam", "lr": 0.01, "steps": 60, "batch_size": 32, "eval_every": 10,
                      "schedule": "cosine", "seed": 3, "grad_clip": 1.0, **train},
        }
    )


def kill_at(n):
    def callback(step, loss):
        if step == n:
            raise Killed

    return callback


@pytest.fixture(scope="module")
def whole():
    return run(config())[2]


@pytest.fixture
def state(tmp_path):
    """The checkpoint a run killed after 40 updates leaves (written at step 30)."""
    path = tmp_path / "state.safetensors"
    with pytest.raises(Killed):
        run(config(), callback=kill_at(40), checkpoint=path, checkpoint_every=15)
    return path




def same_run(a, b):
    assert a.status == b.status == "done" and a.steps_done == b.steps_done
    assert a.train_curve == b.train_curve and a.test_curve == b.test_curve
    assert a.final_train_loss == b.final_train_loss and a.final_test_loss == b.final_test_loss


def test_a_flipped_bit_in_each_tensor_of_a_training_state_is_refused(state):
    from bitscale.train.optimizers import make_optimizer
    from bitscale.train.run import build_model

    cfg = config()
    pristine = state.read_bytes()
    offsets = tensor_offsets(state)
    assert {n.split(".")[0] for n in offsets} == {"model", "optim", "rng"}
    for name, offset in offsets.items():
        state.write_bytes(pristine)
        flip(state, offset)
        net = build_model(cfg.model, cfg.task.d, cfg.train.seed)
        before = {k: v.clone() for k, v in net.state_dict().items()}
        with pytest.raises(DamagedFileError) as err:
            load_training_state(state, net, make_optimizer(list(net.parameters()), cfg.train))
        message = str(err.value)
        assert message.startswith(f"{state}: tensor '{name}': checksum mismatch") and "\n" not in message
        assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # nothing loaded


@pytest.mark.parametrize("damage", ["bit flip", "truncation", "non-finite weights"])
def test_a_bad_checkpoint_restarts_the_run_from_scratch_to_the_uninterrupted_result(state, whole, damage):
    if damage == "bit flip":
        flip(state, next(offset for name, offset in tensor_offsets(state).items() if name.startswith("model.")))
        reason = "checksum mismatch"
    elif damage == "truncation":
        state.write_bytes(state.read_bytes()[:-11])
        reason = "truncated"
    else:  # checksums intact, but the weights it restores give a NaN loss
        tensors, metadata = load_tensors(state)
        tensors = {k: (torch.full_like(v, math.nan) if k.startswith("model.") and v.is_floating_point() else v)
                   for k, v in tensors.items()}
        save_tensors(state, tensors, metadata)
        reason = "not finite"
    torch.manual_seed(999)  # the global RNG of a fresh process differs; a restart must not depend on it
    with pytest.warns(UserWarning, match=f"{reason}.*checkpoint discarded, the run restarts from scratch") as record:
        _, _, result = run(config(), checkpoint=state, checkpoint_every=15)
    assert str(state) in str(record[0].message) and "\n" not in str(record[0].message)
    same_run(result, whole)
    assert result.restarts == 1 and whole.restarts == 0
    assert DISCARDED in outcome_from_result("r", result, 0.0).metrics
    assert not any(m[2] == "checkpoint_discarded" for m in outcome_from_result("r", whole, 0.0).metrics)


def test_an_intact_checkpoint_still_resumes_exactly(state, whole):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, _, result = run(config(), checkpoint=state, checkpoint_every=15)
    same_run(result, whole)
    assert result.restarts == 0


def test_a_legacy_checkpoint_without_checksums_resumes_with_a_warning(state, whole):
    tensors, metadata = load_tensors(state)
    save_file(tensors, str(state), metadata={"bitscale.state": metadata["bitscale.state"]})
    with pytest.warns(UncheckedFileWarning, match="has no checksums"):
        _, _, result = run(config(), checkpoint=state, checkpoint_every=15)
    same_run(result, whole)
    assert result.restarts == 0


def test_a_sweep_run_with_a_damaged_checkpoint_is_done_and_records_the_restart(tmp_path, whole):
    """What `bitscale sweep --retry-failed` relies on: execute() trains the run from scratch instead of
    failing it again on its unreadable checkpoint."""
    workdir = tmp_path / "work" / "r1"
    with pytest.raises(Killed):
        run(config(), callback=kill_at(40), checkpoint=workdir / STATE_FILE, checkpoint_every=15)
    flip(workdir / STATE_FILE, next(iter(tensor_offsets(workdir / STATE_FILE).values())))
    with pytest.warns(UserWarning, match="checkpoint discarded"):
        outcome = execute(RunTask("r1", config().model_dump(mode="json"), str(workdir), checkpoint_every=15))
    assert outcome.status == "done", outcome.error
    assert outcome.final_test_loss == whole.final_test_loss and outcome.final_train_loss == whole.final_train_loss
    assert DISCARDED in outcome.metrics


# -- language models ---------------------------------------------------------------------------------------

TINY = {
    "eval_batches": 2,
    "model": {"n_layer": 1, "n_head": 2, "d_model": 32, "block_size": 32},
    "data": {"block_size": 32},
    "train": {"steps": 20, "batch_size": 8, "warmup_steps": 4, "eval_every": 5, "lr": 3e-3},
}


def test_an_lm_run_with_a_damaged_checkpoint_restarts_to_the_uninterrupted_result(tmp_path):
    from bitscale.train.lm import LMRunConfig, train_lm

    cfg = LMRunConfig.model_validate(TINY)
    full = train_lm(cfg)
    state = tmp_path / "state.safetensors"

    def stop(step, loss):
        if step == 11:  # the checkpoint of update 10 is on disk
            raise Killed

    with pytest.raises(Killed):
        train_lm(cfg, checkpoint=state, checkpoint_every=10, callback=stop)
    offsets = tensor_offsets(state)
    pristine = state.read_bytes()
    for name, offset in offsets.items():  # every tensor of the LM's training state is verified
        state.write_bytes(pristine)
        flip(state, offset)
        with pytest.raises(DamagedFileError, match=f"tensor '{name}': checksum mismatch"):
            load_tensors(state)
    with pytest.warns(UserWarning, match="checksum mismatch.*checkpoint discarded"):
        result = train_lm(cfg, checkpoint=state, checkpoint_every=10)
    assert result.restarts == 1 and full.restarts == 0
    assert result.train_losses == full.train_losses and result.val_curve == full.val_curve
    assert result.final_val_loss == full.final_val_loss
    assert DISCARDED in outcome_from_lm_result("lm", result, 0.0).metrics
