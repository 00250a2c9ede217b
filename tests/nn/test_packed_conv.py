"""PackedBitConv and pack(model) on convolutions: the packed forward equals the fake-quant BitConv up to
float rounding; save / load of a packed CNN round-trips."""

import copy

import pytest
import torch
import torch.nn as nn

from bitscale.kernels.packfile import PackedFileError
from bitscale.nn import BitConv1d, BitConv2d, BitLinear, PackedBitLinear, load_packed_model, pack, save_packed_model
from bitscale.nn.packed import PackedBitConv, packed_layers, skipped_layers, unpackable_reason


def close(got, want, rel=1e-5):
    """Within float rounding, relative to the output's scale."""
    scale = want.abs().max().item()
    torch.testing.assert_close(got, want, rtol=rel, atol=rel * scale)


W8A8 = {"weight": "int8", "act": "int8", "granularity": "channel"}
QUANTS = {"ternary": "bitnet-b1.58", "binary-int8": "bitnet", "binary-binary": "xnor", "int8": W8A8}
GEOMETRIES = [
    (1, dict(kernel_size=5, stride=2, padding=3, dilation=2), (2, 8, 29)),
    (1, dict(kernel_size=3, padding="same", padding_mode="circular", groups=2, bias=True), (8, 13)),
    (2, dict(kernel_size=3, stride=(2, 1), padding=(1, 2), dilation=(1, 2), bias=True), (2, 8, 11, 9)),
    (2, dict(kernel_size=(2, 3), padding=1, padding_mode="reflect", groups=4), (2, 8, 6, 7)),
]


# The reference backend (plain torch integer products) keeps these fast on a busy machine, where every
# small numba GEMM pays a parallel launch; test_the_backends_agree covers the numba kernels.
@pytest.mark.parametrize("quant", QUANTS.values(), ids=QUANTS.keys())
@pytest.mark.parametrize("dims, kw, shape", GEOMETRIES)
def test_packed_conv_matches_the_fake_quant_forward(quant, dims, kw, shape, backend="reference"):
    torch.manual_seed(0)
    layer = (BitConv1d if dims == 1 else BitConv2d)(8, 12, **kw, quant=quant, norm=kw.get("bias", False)).eval()
    if layer.norm is not None:
        with torch.no_grad():
            layer.norm.weight.uniform_(0.5, 1.5)
    packed = PackedBitConv.from_bitconv(layer, backend=backend)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1)) * 2
    with torch.no_grad():
        want = layer(x)
        got = packed(x)
    assert got.shape == want.shape and got.dtype == want.dtype
    close(got, want)
    assert (packed.out_features, packed.in_features) == (12, 8 // layer.groups * layer.weight[0, 0].numel())


@pytest.mark.parametrize("quant", ["bitnet-b1.58", "xnor"])
def test_the_backends_agree(quant):
    layer = BitConv2d(8, 6, 3, stride=2, padding=1, groups=2, quant=quant).eval()
    x = torch.randn(2, 8, 7, 7)
    with torch.no_grad():
        want = PackedBitConv.from_bitconv(layer, backend="reference")(x)
        assert torch.equal(PackedBitConv.from_bitconv(layer, backend="auto")(x), want)


def cnn(quant, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        BitConv2d(3, 8, 3, padding=1, bias=True, quant=quant), nn.ReLU(),
        BitConv2d(8, 8, 3, stride=2, groups=2, quant=quant, norm=True), nn.ReLU(), nn.Flatten(),
        BitLinear(8 * 3 * 3, 5, bias=True, quant=quant),
    ).eval()


def test_pack_swaps_convs_and_linears_and_leaves_unpackable_ones():
    model = cnn("bitnet-b1.58")
    model.append(BitConv1d(5, 5, 1, quant="paper-1bit"))  # fp32 activations: no packed kernel
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        want = model[:6](x)
        packed = pack(copy.deepcopy(model), backend="reference")
        got = packed[:6](x)
    assert isinstance(packed[0], PackedBitConv) and isinstance(packed[2], PackedBitConv)
    assert isinstance(packed[5], PackedBitLinear) and type(packed[6]) is BitConv1d
    assert packed[0].format == "ternary-b3" and packed[2].groups == 2 and packed[2].norm is not None
    assert set(packed_layers(packed)) == {"0", "2", "5"}
    assert "'fp32'" in skipped_layers(packed)["6"]
    assert unpackable_reason(packed[0]) == "already packed"
    assert unpackable_reason(nn.Conv2d(2, 2, 1)) == "not a BitLinear or BitConv (Conv2d)"
    close(got, want)


@pytest.mark.parametrize("quant", ["bitnet-b1.58", "xnor"])
def test_save_and_load_a_packed_cnn(tmp_path, quant):
    model = cnn(quant)
    packed = pack(copy.deepcopy(model), backend="reference")
    path = tmp_path / "cnn.packed.safetensors"
    save_packed_model(packed, path)
    with torch.device("meta"):  # a skeleton of plain layers works too: the file has the geometry
        skeleton = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, groups=2),
                                 nn.ReLU(), nn.Flatten(), nn.Linear(8 * 3 * 3, 5))
    loaded = load_packed_model(path, skeleton, backend="reference")
    assert isinstance(loaded[0], PackedBitConv) and isinstance(loaded[2], PackedBitConv)
    assert loaded[2].stride == (2, 2) and loaded[2].groups == 2 and loaded[2].norm is not None
    assert torch.equal(loaded[0].packed, packed[0].packed) and torch.equal(loaded[0].bias, packed[0].bias)
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), packed(x))
        close(loaded(x), model(x))


def test_load_refuses_a_skeleton_with_another_geometry(tmp_path):
    path = tmp_path / "cnn.packed.safetensors"
    save_packed_model(pack(cnn("bitnet-b1.58")), path)
    with torch.device("meta"):
        other = cnn("bitnet-b1.58")
        other[2] = BitConv2d(8, 8, 3, stride=1, groups=2, norm=True)
    with pytest.raises(PackedFileError, match=r"layer '2': stride \[1, 1\] in the model, \[2, 2\] in the file$"):
        load_packed_model(path, other)
    with torch.device("meta"):
        other[2] = BitLinear(72, 8)
    with pytest.raises(PackedFileError, match=r"layer '2': the model has no conv layer there \(BitLinear\)$"):
        load_packed_model(path, other)


def test_state_dict_load_and_move_rebuild_the_kernels():
    a = PackedBitConv.from_bitconv(BitConv1d(4, 6, 3, quant="bitnet-b1.58"), backend="reference")
    b = PackedBitConv.from_bitconv(BitConv1d(4, 6, 3, quant="bitnet-b1.58"), backend="reference")
    x = torch.randn(2, 4, 9)
    a(x)
    a.load_state_dict(b.state_dict())
    assert torch.equal(a(x), b(x))
    a.to("cpu")
    assert a.scale.dtype == torch.float32 and len(a.prepare().kernel_weights) == 1
    with pytest.raises(ValueError, match=r"^kernel_size: \(3,\) with dilation \(1,\) spans \(3,\)"):
        a(torch.randn(1, 4, 2))
    with pytest.raises(ValueError, match="cannot pack"):
        PackedBitConv.from_bitconv(BitConv2d(4, 4, 3, quant="atom-w4a4"))
