"""Run directories (`bitscale train --out`, `bitscale lm --out`): verified weights bound to their config,
written as a unit, and never a user's unrelated folder replaced."""

from __future__ import annotations

import json
import os
import shutil
import warnings

import pytest
import torch
from safetensors.torch import save_file, save_model

from bitscale.data.tokenizers import ByteTokenizer
from bitscale.models.decoder import Decoder, DecoderConfig
from bitscale.runs import load_run_dir
from bitscale.tensorfile import DamagedFileError, UncheckedFileWarning
from bitscale.train import RunConfig, build_model, load_model, save_run
from bitscale.train import checkpoint as checkpoint_module
from bitscale.train import lm_files
from bitscale.train.lm_config import LMDataConfig, LMRunConfig
from bitscale.train.lm_files import load_lm, save_lm
from bitscale.train.loop import RunResult
from tests.damage import flip, tensor_offsets

RESULT = RunResult(status="done", steps_done=0, diverged_at=None)


def regression_config(**model) -> RunConfig:
    return RunConfig.model_validate({"model": {"kind": "mlp", "width": 8, "depth": 2, "quant": "bitnet-b1.58", **model},
                                     "task": {"d": 4, "n_train": 16}})


def regression_run(directory, **model):
    cfg = regression_config(**model)
    net = build_model(cfg.model, cfg.task.d, cfg.train.seed)
    save_run(directory, net, cfg, RESULT)
    return net, cfg


def lm_config(**model) -> LMRunConfig:
    dcfg = DecoderConfig(vocab_size=256, n_layer=1, n_head=2, d_model=32, block_size=16, quant="bitnet-b1.58", **model)
    return LMRunConfig(model=dcfg, data=LMDataConfig(block_size=16))


def lm_run(directory, seed=0, **model):
    cfg = lm_config(**model)
    net = Decoder(cfg.model, seed=seed)
    save_lm(directory, net, ByteTokenizer(), cfg)
    return net, cfg




def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def snapshot(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


# -- verified weights ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["regression", "lm"])
def test_a_flipped_bit_in_each_tensor_is_refused_naming_the_file_and_the_tensor(tmp_path, kind):
    run_dir = tmp_path / "run"
    (regression_run if kind == "regression" else lm_run)(run_dir)
    load = load_model if kind == "regression" else load_lm
    weights = run_dir / "model.safetensors"
    pristine = weights.read_bytes()
    offsets = tensor_offsets(weights)
    assert len(offsets) >= 5
    for name, offset in offsets.items():
        weights.write_bytes(pristine)
        flip(weights, offset)
        with pytest.raises(DamagedFileError) as err:
            load(run_dir)
        message = str(err.value)
        assert message.startswith(f"{weights}: tensor '{name}': checksum mismatch") and "\n" not in message, message
        # bitscale pack's loader surfaces it as the same one-line ValueError
        with pytest.raises(ValueError, match=f"tensor '{name}': checksum mismatch"):
            load_run_dir(run_dir)
    weights.write_bytes(pristine)
    load(run_dir)


@pytest.mark.parametrize("kind", ["regression", "lm"])
def test_a_truncated_weights_file_is_one_line_not_a_safetensors_traceback(tmp_path, kind):
    run_dir = tmp_path / "run"
    (regression_run if kind == "regression" else lm_run)(run_dir)
    weights = run_dir / "model.safetensors"
    data = weights.read_bytes()
    for keep in (len(data) - 7, 30, 3):
        weights.write_bytes(data[:keep])
        with pytest.raises(DamagedFileError, match="truncated") as err:
            (load_model if kind == "regression" else load_lm)(run_dir)
        assert "\n" not in str(err.value) and str(weights) in str(err.value)


def test_weights_refuse_a_config_json_they_were_not_saved_with(tmp_path):
    regression_run(tmp_path / "a", width=8)
    regression_run(tmp_path / "b", width=8, kappa=2.0)  # same shapes, another model
    shutil.copy(tmp_path / "b" / "config.json", tmp_path / "a" / "config.json")
    with pytest.raises(DamagedFileError, match=r"a/model.safetensors was saved with a different config.json") as err:
        load_model(tmp_path / "a")
    assert "\n" not in str(err.value)
    lm_run(tmp_path / "c")
    lm_run(tmp_path / "d", rope_base=500.0)
    shutil.copy(tmp_path / "d" / "config.json", tmp_path / "c" / "config.json")
    with pytest.raises(DamagedFileError, match=r"c/model.safetensors was saved with a different config.json"):
        load_lm(tmp_path / "c")


def test_legacy_run_directories_load_with_one_warning(tmp_path):
    # as bitscale wrote them before checksums: plain safetensors, in-place JSON
    cfg = regression_config()
    net = build_model(cfg.model, cfg.task.d, cfg.train.seed)
    reg = tmp_path / "reg"
    reg.mkdir()
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(reg / "model.safetensors"), metadata={"format": "bitscale"})
    (reg / "config.json").write_text(json.dumps(cfg.model_dump(mode="json"), indent=2) + "\n")
    with pytest.warns(UncheckedFileWarning, match="has no checksums") as record:
        loaded, loaded_cfg = load_model(reg)
    assert len(record) == 1 and str(reg / "model.safetensors") in str(record[0].message)
    assert loaded_cfg == cfg and same_weights(loaded, net)

    lcfg = lm_config(tie_weights=True)  # safetensors' save_model stores the tied head once
    dec = Decoder(lcfg.model, seed=0)
    lm = tmp_path / "lm"
    lm.mkdir()
    save_model(dec, str(lm / "model.safetensors"), metadata={"format": "bitscale-lm"})
    (lm / "config.json").write_text(json.dumps(lcfg.model_dump(mode="json"), indent=2) + "\n")
    with pytest.warns(UncheckedFileWarning) as record:
        loaded_lm, _, _ = load_lm(lm)
    assert len(record) == 1
    assert same_weights(loaded_lm, dec) and loaded_lm.head.weight is loaded_lm.tok_emb.weight


def test_tied_weights_are_stored_once_and_load_back_tied(tmp_path):
    net, _ = lm_run(tmp_path / "run", tie_weights=True)
    assert set(tensor_offsets(tmp_path / "run" / "model.safetensors")) == set(net.state_dict()) - {"tok_emb.weight"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded, _, _ = load_lm(tmp_path / "run")
    assert same_weights(loaded, net) and loaded.head.weight is loaded.tok_emb.weight


# -- written as a unit ------------------------------------------------------------------------------------


def test_a_new_run_replaces_an_old_one_whole_and_leaves_nothing_behind(tmp_path):
    run_dir = tmp_path / "run"
    lm_run(run_dir, seed=0)
    new, _ = lm_run(run_dir, seed=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no .run.tmp-* / .run.old-*
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json", "model.safetensors"]
    assert same_weights(load_lm(run_dir)[0], new)


def test_without_an_atomic_exchange_the_old_run_is_moved_aside_then_deleted(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint_module, "_exchange", lambda a, b: False)
    run_dir = tmp_path / "run"
    regression_run(run_dir, width=8)
    new, _ = regression_run(run_dir, width=6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert same_weights(load_model(run_dir)[0], new)


class Killed(BaseException):
    pass


@pytest.mark.parametrize("stage", ["config", "weights", "result", "swap"])
def test_a_save_killed_partway_leaves_the_old_run_unchanged(tmp_path, monkeypatch, stage):
    run_dir = tmp_path / "run"
    old, _ = lm_run(run_dir, seed=0)
    before = snapshot(run_dir)
    real_write_text = type(run_dir).write_text

    def write_text(self, text, *args, **kwargs):
        if self.name == f"{stage}.json":
            real_write_text(self, text[: len(text) // 2])  # half a file, then the process dies
            raise Killed
        return real_write_text(self, text, *args, **kwargs)

    def save_weights(path, *args, **kwargs):
        path.write_bytes(b"\0" * 100)
        raise Killed

    def exchange(a, b):
        raise Killed

    monkeypatch.setattr(type(run_dir), "write_text", write_text)
    monkeypatch.setattr(lm_files, "save_weights", save_weights if stage == "weights" else lm_files.save_weights)
    monkeypatch.setattr(checkpoint_module, "_exchange", exchange if stage == "swap" else checkpoint_module._exchange)
    cfg = lm_config()
    with pytest.raises(Killed):
        save_lm(run_dir, Decoder(cfg.model, seed=1), ByteTokenizer(), cfg, RunResult(status="done", steps_done=0, diverged_at=None))
    monkeypatch.undo()
    assert snapshot(run_dir) == before
    assert same_weights(load_lm(run_dir)[0], old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # the half-written new run is cleaned up


def test_a_process_killed_hard_during_the_write_leaves_the_old_run_loadable(tmp_path):
    """A real kill (no cleanup runs): the half-written new run stays in a hidden sibling, DIR is untouched."""
    run_dir = tmp_path / "run"
    old, cfg = lm_run(run_dir, seed=0)
    before = snapshot(run_dir)
    pid = os.fork()
    if pid == 0:  # the child dies in the middle of writing the weights
        try:
            # One thread: OpenMP is not fork-safe, and a pool the parent used (torch's MKL, numba's kernels
            # in earlier tests) hangs the child's first parallel region (here: the RoPE tables' cos).
            torch.set_num_threads(1)

            def save_weights(path, *args, **kwargs):
                path.write_bytes(b"\0" * 100)
                os._exit(0)

            lm_files.save_weights = save_weights
            save_lm(run_dir, Decoder(cfg.model, seed=1), ByteTokenizer(), cfg)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert snapshot(run_dir) == before and same_weights(load_lm(run_dir)[0], old)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "run"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".run.tmp-")
    new, _ = lm_run(run_dir, seed=2)  # the next save is not disturbed by the leftover
    assert same_weights(load_lm(run_dir)[0], new)


# -- never a user's folder -----------------------------------------------------------------------------------


def test_a_folder_that_is_not_a_run_is_refused_and_left_untouched(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty and not a run directory") as err:
        lm_run(folder)
    assert str(folder) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValueError, match="not empty and not a run directory"):
        regression_run(folder)
    assert snapshot(folder) == {"notes.txt": b"keep me"}

    run_dir = tmp_path / "run"
    regression_run(run_dir)
    (run_dir / "model.packed.safetensors").write_bytes(b"packed")  # something the user put in a run directory
    before = snapshot(run_dir)
    with pytest.raises(ValueError, match="holds 'model.packed.safetensors', which is not a run file"):
        regression_run(run_dir)
    assert snapshot(run_dir) == before

    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="is a regular file, expected a directory"):
        lm_run(a_file)
    assert a_file.read_text() == "x"
    link = tmp_path / "link"
    link.symlink_to(run_dir)
    with pytest.raises(ValueError, match="symbolic link"):
        regression_run(link)
    assert snapshot(run_dir) == before and sorted(p.name for p in tmp_path.iterdir()) == ["file", "link", "mine", "run"]


def test_an_empty_directory_takes_a_run(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    net, _ = regression_run(empty)
    assert same_weights(load_model(empty)[0], net)


def test_train_lm_refuses_a_non_run_out_directory_before_training(tmp_path, monkeypatch):
    from bitscale.train import lm

    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    monkeypatch.setattr(lm, "build_data", lambda cfg: pytest.fail("trained before checking --out"))
    with pytest.raises(ValueError, match="not a run directory"):
        lm.train_lm(lm_config(), folder)
