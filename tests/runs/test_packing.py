"""bitscale.runs.packing: the skeleton a packed file describes, rebuilt above the layer packages."""

from __future__ import annotations

import copy

import pytest
import torch

from bitscale.kernels.packfile import PackedFileError
from bitscale.models.decoder import Decoder, DecoderConfig
from bitscale.nn import pack, save_packed_model
from bitscale.runs import build_skeleton, load_packed, load_run_dir
from bitscale.train import RunConfig, build_model, save_run
from bitscale.train.loop import RunResult


def _decoder() -> Decoder:
    cfg = DecoderConfig(vocab_size=97, n_layer=1, n_head=2, d_model=32, block_size=16, quant="bitnet-b1.58")
    return Decoder(cfg, seed=0).eval()


def test_a_packed_decoder_is_rebuilt_from_its_own_metadata(tmp_path):
    model = _decoder()
    packed = pack(copy.deepcopy(model))
    assert packed.packed_spec() == {"kind": "decoder", "config": model.cfg.model_dump(mode="json")}
    path = tmp_path / "d.packed.safetensors"
    save_packed_model(packed, path)  # the spec comes from the Decoder itself
    loaded = load_packed(path)
    assert isinstance(loaded, Decoder) and not loaded.rope_cos.is_meta  # the Decoder rebuilt its RoPE tables
    assert torch.equal(loaded.rope_cos, model.rope_cos)
    idx = torch.randint(0, 97, (1, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(loaded(idx)[0], packed(idx)[0], rtol=1e-6, atol=1e-6)


def test_unknown_or_missing_kinds_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match=r"model kind 'vision' unknown \(known: decoder, regression, lm, classification\)"):
        build_skeleton({"kind": "vision"})
    packed = pack(copy.deepcopy(_decoder()))
    path = tmp_path / "bare.packed.safetensors"
    save_packed_model(packed, path, spec={})  # no metadata: nothing says what to rebuild
    with pytest.raises(PackedFileError) as err:
        load_packed(path)
    assert "cannot rebuild the model: model kind None unknown" in str(err.value) and "\n" not in str(err.value)


def test_a_run_directory_of_an_unknown_kind_is_one_line_naming_the_kinds(tmp_path):
    (tmp_path / "config.json").write_text('{"kind": "vision", "model": {}}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ValueError) as err:
        load_run_dir(tmp_path)
    message = str(err.value)
    assert "config.json" in message and "'vision'" in message and "regression, lm" in message and "\n" not in message


def test_a_regression_run_directory_is_loaded_through_its_kind_record(tmp_path):
    cfg = RunConfig.model_validate({"model": {"width": 8, "quant": "bitnet-b1.58"}, "task": {"d": 4, "n_train": 16}})
    model = build_model(cfg.model, cfg.task.d, cfg.train.seed)
    save_run(tmp_path, model, cfg, RunResult(status="done", steps_done=0, diverged_at=None))
    loaded, spec = load_run_dir(tmp_path)
    assert spec == {"kind": "regression", "run_config": cfg.model_dump(mode="json")}
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert not loaded.training
