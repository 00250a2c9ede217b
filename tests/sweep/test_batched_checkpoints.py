"""The batched engine's checkpoint is verified: a flipped bit in any tensor is one line naming the file and
the tensor, and a damaged checkpoint (or one restoring a non-finite loss) is discarded, the group training
from scratch to the uninterrupted results, each carrying the restart."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import save_file

from bitscale.runs.outcome import outcome_from_result
from bitscale.sweep.batched import train_batched
from bitscale.sweep.batched.loop import _load_checkpoint
from bitscale.tensorfile import DamagedFileError, UncheckedFileWarning, load_tensors, save_tensors
from bitscale.train import ModelSpec, RunConfig, TaskSpec, TrainConfig
from tests.damage import flip, tensor_offsets

TASK = {"function": "sines", "d": 8, "n_train": 40, "n_test": 48, "input_dist": "sphere"}


class Killed(Exception):
    pass


def configs() -> list[RunConfig]:
    return [
        RunConfig(model=ModelSpec(kind="mlp", depth=2, width=16, quant=quant), task=TaskSpec(**TASK, seed=seed),
                  train=TrainConfig(lr=0.01, optimizer="adam", steps=30, eval_every=10, batch_size=12, seed=seed))
        for quant in ("bitnet-b1.58", "fp32")
        for seed in (0, 1)
    ]


@pytest.fixture(scope="module")
def uninterrupted():
    return train_batched(configs())


@pytest.fixture
def checkpoint(tmp_path):
    """The group checkpoint a call killed after 16 updates leaves (written at step 14)."""
    path = tmp_path / "group.safetensors"

    def kill(step):
        if step == 16:
            raise Killed

    with pytest.raises(Killed):
        train_batched(configs(), checkpoint_path=path, checkpoint_every=7, callback=kill)
    return path




def assert_equal_results(got, want):
    for a, b in zip(got, want, strict=True):
        assert a.status == b.status and a.diverged_at == b.diverged_at
        assert a.train_curve == b.train_curve and a.test_curve == b.test_curve


def test_a_flipped_bit_in_each_tensor_is_refused_naming_it(checkpoint):
    pristine = checkpoint.read_bytes()
    offsets = tensor_offsets(checkpoint)
    assert {n.split(".")[0] for n in offsets} >= {"param", "opt", "sampler"}
    for name, offset in offsets.items():
        checkpoint.write_bytes(pristine)
        flip(checkpoint, offset)
        with pytest.raises(DamagedFileError) as err:
            _load_checkpoint(checkpoint)
        assert str(err.value).startswith(f"{checkpoint}: tensor '{name}': checksum mismatch") and "\n" not in str(err.value)


@pytest.mark.parametrize("damage", ["bit flip", "truncation", "non-finite weights"])
def test_a_bad_checkpoint_restarts_the_group_to_the_uninterrupted_results(checkpoint, uninterrupted, damage):
    if damage == "bit flip":
        flip(checkpoint, next(o for n, o in tensor_offsets(checkpoint).items() if n.startswith("param.")))
        reason = "checksum mismatch"
    elif damage == "truncation":
        checkpoint.write_bytes(checkpoint.read_bytes()[:-5])
        reason = "truncated"
    else:
        tensors, metadata = load_tensors(checkpoint)
        tensors = {k: torch.full_like(v, math.nan) if k.startswith("param.") else v for k, v in tensors.items()}
        save_tensors(checkpoint, tensors, metadata)
        reason = "not finite"
    seen = []
    with pytest.warns(UserWarning, match=f"{reason}.*checkpoint discarded, starting from scratch"):
        results = train_batched(configs(), checkpoint_path=checkpoint, checkpoint_every=7, callback=seen.append)
    assert seen[0] == 1  # trained from step 0
    assert_equal_results(results, uninterrupted)
    assert all(r.restarts == 1 for r in results) and all(r.restarts == 0 for r in uninterrupted)
    assert all((0, "run", "checkpoint_discarded", 1.0) in outcome_from_result("r", r, 0.0).metrics for r in results)
    assert not checkpoint.exists()


def test_an_intact_checkpoint_resumes_and_a_legacy_one_resumes_with_a_warning(checkpoint, uninterrupted, tmp_path):
    legacy = tmp_path / "legacy.safetensors"
    tensors, metadata = load_tensors(checkpoint)
    save_file(tensors, str(legacy), metadata={"bitscale": metadata["bitscale"]})  # as written before checksums
    seen = []
    results = train_batched(configs(), checkpoint_path=checkpoint, checkpoint_every=7, callback=seen.append)
    assert seen[0] == 15 and all(r.restarts == 0 for r in results)
    assert_equal_results(results, uninterrupted)
    seen = []
    with pytest.warns(UncheckedFileWarning, match="has no checksums"):
        results = train_batched(configs(), checkpoint_path=legacy, checkpoint_every=7, callback=seen.append)
    assert seen[0] == 15 and all(r.restarts == 0 for r in results)
    assert_equal_results(results, uninterrupted)
