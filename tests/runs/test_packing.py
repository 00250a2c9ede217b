"""bitscale.runs.packing: the skeleton a packed file describes, rebuilt above the layer packages."""

from __future__ import annotations

import copy

import pytest
import torch

from bitscale.kernels.packfile import PackedFileError
from bitscale.models.decoder import Decoder, DecoderConfig
from bitscale.nn import pack, save_packed_model
from bitscale.runs import build_skeleton, load_packed


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
    with pytest.raises(ValueError, match=r"model kind 'vision' unknown \(known: decoder, lm, regression\)"):
        build_skeleton({"kind": "vision"})
    packed = pack(copy.deepcopy(_decoder()))
    path = tmp_path / "bare.packed.safetensors"
    save_packed_model(packed, path, spec={})  # no metadata: nothing says what to rebuild
    with pytest.raises(PackedFileError) as err:
        load_packed(path)
    assert "cannot rebuild the model: model kind None unknown" in str(err.value) and "\n" not in str(err.value)
