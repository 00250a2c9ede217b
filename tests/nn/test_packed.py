"""PackedBitLinear and pack(model): outputs match the fake-quant model; save / load without fp32 weights."""

import copy

import pytest
import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

from bitscale.models.decoder import Decoder, DecoderConfig
from bitscale.nn import BitLinear, PackedBitLinear, load_packed_model, pack, save_packed_model
from bitscale.nn.packed import skipped_layers, unpackable_reason


def mlp(config, norm=False, bias=True, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(BitLinear(24, 40, bias=bias, quant=config, norm=norm), nn.ReLU(), BitLinear(40, 7, bias=bias, quant=config, norm=norm))


def close(got, want, rel=1e-4):
    scale = want.abs().max().item()
    torch.testing.assert_close(got, want, rtol=rel, atol=rel * scale)


W8A8 = {"weight": "int8", "act": "int8", "granularity": "channel"}


@pytest.mark.parametrize("preset", ["bitnet-b1.58", "bitnet", "xnor", {"weight": "sign", "act": "int8"}, W8A8])
@pytest.mark.parametrize("norm", [False, True])
def test_packed_mlp_matches_fake_quant(preset, norm):
    model = mlp(preset, norm=norm).eval()
    x = torch.randn(5, 3, 24)
    with torch.no_grad():
        want = model(x)
        packed = pack(copy.deepcopy(model))
        got = packed(x)
    assert all(isinstance(packed[i], PackedBitLinear) for i in (0, 2))
    assert packed[0].format == ("ternary-b3" if preset == "bitnet-b1.58" else "int8" if preset is W8A8 else "binary")
    assert packed[2].scale.shape == ((7,) if preset == "xnor" or preset is W8A8 else ())
    close(got, want)


def test_ternary2_format_and_filter():
    model = mlp("bitnet-b1.58").eval()
    x = torch.randn(4, 24)
    packed = pack(copy.deepcopy(model), "ternary2", filter_fn=lambda m, name: name == "0")
    assert isinstance(packed[0], PackedBitLinear) and packed[0].format == "ternary2"
    assert isinstance(packed[2], BitLinear)
    with torch.no_grad():
        close(packed(x), model(x))


def test_unpackable_layers_are_left_alone():
    model = nn.Sequential(BitLinear(8, 8, quant="fp32"), BitLinear(8, 8, quant="atom-w4a4"), BitLinear(8, 8, quant="paper-1bit"))
    model.append(BitLinear(8, 8, quant={"preset": "bitnet-b1.58", "granularity": "group", "group_size": 4}))
    pack(model)
    assert all(type(m) is BitLinear for m in model)
    reasons = skipped_layers(model)
    assert "fp32" in reasons["0"] and "int4" in reasons["1"] and "'fp32'" in reasons["2"] and "group" in reasons["3"]
    assert unpackable_reason(nn.Linear(2, 2)).startswith("not a BitLinear")


def test_from_bitlinear_keeps_norm_and_bias():
    layer = BitLinear(16, 9, bias=True, quant="bitnet-b1.58", norm=True)
    with torch.no_grad():
        layer.norm.weight.uniform_(0.5, 1.5)
        layer.bias.normal_()
    p = PackedBitLinear.from_bitlinear(layer)
    assert torch.equal(p.norm.weight, layer.norm.weight) and torch.equal(p.bias, layer.bias)
    assert p.packed.dtype == torch.uint8 and tuple(p.packed.shape) == (9, 4)
    assert p.bits_per_weight == pytest.approx((9 * 4 * 8 + 32) / (16 * 9))
    x = torch.randn(3, 16)
    with torch.no_grad():
        close(p(x), layer(x))


def tiny_decoder(seed=0, **kw):
    cfg = DecoderConfig(vocab_size=97, n_layer=2, n_head=2, d_model=32, block_size=16, quant="bitnet-b1.58", **kw)
    return Decoder(cfg, seed=seed).eval()


def test_packed_decoder_logits_match():
    model = tiny_decoder()
    idx = torch.randint(0, 97, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want, _ = model(idx)
        packed = pack(copy.deepcopy(model))
        got, _ = packed(idx)
    assert len([m for m in packed.modules() if isinstance(m, PackedBitLinear)]) == 2 * 7
    assert isinstance(packed.head, nn.Linear) and not isinstance(packed.head, PackedBitLinear)
    close(got, want)


class AllocationRecorder(TorchDispatchMode):
    """Records the shape of every floating-point tensor an ATen op produces off the meta device."""

    def __init__(self):
        super().__init__()
        self.shapes = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and t.is_floating_point() and not t.is_meta:
                self.shapes.add(tuple(t.shape))
        return out


@pytest.mark.parametrize("tie", [False, True])
def test_save_and_load_packed_decoder_without_fp32_weights(tmp_path, tie):
    model = tiny_decoder(tie_weights=tie)
    packed = pack(copy.deepcopy(model))
    path = tmp_path / "m.packed.safetensors"
    save_packed_model(packed, path)
    weight_shapes = {(m.out_features, m.in_features) for m in packed.modules() if isinstance(m, PackedBitLinear)}
    assert weight_shapes == {(32, 32), (96, 32), (32, 96)}
    with AllocationRecorder() as rec:
        loaded = load_packed_model(path, Decoder(model.cfg, device="meta"))
    assert not (rec.shapes & weight_shapes), "a full-precision weight of a packed layer was allocated"
    for name, m in loaded.named_modules():
        if isinstance(m, PackedBitLinear):
            for t in list(m.parameters()) + list(m.buffers()):
                assert not (t.is_floating_point() and t.dim() == 2), name
    if tie:
        assert torch.equal(loaded.head.weight, loaded.tok_emb.weight)
    idx = torch.randint(0, 97, (1, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        close(loaded(idx)[0], packed(idx)[0], rel=1e-6)
        close(loaded(idx)[0], model(idx)[0])


def test_load_into_a_meta_skeleton(tmp_path):
    model = mlp("xnor").eval()
    path = tmp_path / "mlp.safetensors"
    save_packed_model(pack(copy.deepcopy(model)), path)
    with torch.device("meta"):
        skeleton = mlp("xnor")
    loaded = load_packed_model(path, skeleton)
    x = torch.randn(4, 24)
    with torch.no_grad():
        close(loaded(x), model(x))
    with pytest.raises(ValueError, match="pass the model skeleton to fill"):
        load_packed_model(path, None)


def test_save_needs_a_packed_model(tmp_path):
    with pytest.raises(ValueError, match="pack"):
        save_packed_model(mlp("bitnet"), tmp_path / "x.safetensors")


def test_state_dict_load_and_move_rebuild_the_kernel():
    layer = PackedBitLinear.from_bitlinear(BitLinear(8, 4, quant="bitnet-b1.58"))
    other = PackedBitLinear.from_bitlinear(BitLinear(8, 4, quant="bitnet-b1.58"))
    x = torch.randn(2, 8)
    layer(x)
    layer.load_state_dict(other.state_dict())
    torch.testing.assert_close(layer(x), other(x))
    layer.to("cpu")
    assert layer.scale.dtype == torch.float32


def test_a_decoder_with_an_int8_head_packs_saves_and_loads(tmp_path):
    """The full-precision head quantized W8A8 (per-row int8 codes) packs at 8 bits per weight, runs the int8
    kernels, and comes back from a packed file into a skeleton whose head is a plain nn.Linear."""
    from bitscale.nn import quantize_
    from bitscale.runs import load_packed

    model = tiny_decoder()
    quantize_(model, W8A8, filter_fn=lambda m, name: name == "head")
    idx = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = model(idx)[0]
        pack(model)
        got = model(idx)[0]
    assert isinstance(model.head, PackedBitLinear) and model.head.format == "int8"
    assert model.head.bits_per_weight == pytest.approx(8 + 32 / 32)
    close(got, want, rel=1e-3)
    save_packed_model(model, tmp_path / "m.packed.safetensors")
    loaded = load_packed(tmp_path / "m.packed.safetensors")
    assert isinstance(loaded.head, PackedBitLinear) and loaded.head.format == "int8"
    with torch.no_grad():
        assert torch.equal(loaded(idx)[0], got)
