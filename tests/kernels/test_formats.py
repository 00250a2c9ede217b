"""Packed storage formats: round trips, byte layouts, invalid input, bits per weight."""

import pytest
import torch

from bitscale.kernels import formats
from bitscale.kernels.formats import (
    FORMATS,
    PackedWeight,
    bits_per_weight,
    pack_codes,
    pack_quantized,
    pack_weight,
    packed_shape,
    unpack_codes,
)
from bitscale.quant import quantize_weight


def random_codes(fmt, out, n_in, seed=0):
    gen = torch.Generator().manual_seed(seed)
    if fmt == "int8":
        return torch.randint(-128, 128, (out, n_in), generator=gen).to(torch.int8)
    if fmt == "binary":
        return (torch.randint(0, 2, (out, n_in), generator=gen) * 2 - 1).to(torch.int8)
    return (torch.randint(0, 3, (out, n_in), generator=gen) - 1).to(torch.int8)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("out", [1, 3])
@pytest.mark.parametrize("n_in", [1, 4, 5, 7, 8, 33, 100])
def test_round_trip(fmt, out, n_in):
    codes = random_codes(fmt, out, n_in, seed=n_in)
    packed = pack_codes(codes, fmt)
    assert packed.dtype == torch.uint8 and tuple(packed.shape) == packed_shape((out, n_in), fmt)
    assert torch.equal(unpack_codes(packed, fmt, n_in), codes)


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_across_row_blocks(fmt, monkeypatch):
    monkeypatch.setattr(formats, "_ROW_BLOCK_ELEMENTS", 64)  # many blocks of rows
    codes = random_codes(fmt, 37, 41, seed=1)
    packed = pack_codes(codes, fmt)
    assert torch.equal(unpack_codes(packed, fmt, 41), codes)
    monkeypatch.setattr(formats, "_ROW_BLOCK_ELEMENTS", 1 << 22)
    assert torch.equal(pack_codes(codes, fmt), packed)


def test_byte_layouts():
    # binary: weight j -> bit j % 8 of byte j // 8, LSB first, 1 = +1; padding bits 0
    c = torch.tensor([[1, -1, -1, -1, -1, -1, -1, 1, -1, 1]], dtype=torch.int8)
    assert pack_codes(c, "binary").tolist() == [[0b10000001, 0b00000010]]
    # ternary2: t = code + 1 at bits 2(j % 4), LSB first; padding t = 1
    c = torch.tensor([[-1, 0, 1, 1, 1]], dtype=torch.int8)
    assert pack_codes(c, "ternary2").tolist() == [[0 | 1 << 2 | 2 << 4 | 2 << 6, 2 | 1 << 2 | 1 << 4 | 1 << 6]]
    # ternary-b3: byte = sum t_i 3^i, first weight least significant; padding t = 1
    c = torch.tensor([[1, 1, 1, 1, 1, -1]], dtype=torch.int8)
    assert pack_codes(c, "ternary-b3").tolist() == [[242, 0 + 3 + 9 + 27 + 81]]
    c = torch.tensor([[-1, 0, 1, -1, -1]], dtype=torch.int8)
    assert pack_codes(c, "ternary-b3").tolist() == [[0 + 1 * 3 + 2 * 9]]
    # int8: byte = code + 128
    c = torch.tensor([[-128, -1, 0, 1, 127]], dtype=torch.int8)
    assert pack_codes(c, "int8").tolist() == [[0, 127, 128, 129, 255]]


@pytest.mark.parametrize("fmt,bad", [("binary", 0), ("binary", 2), ("ternary2", 2), ("ternary-b3", -2), ("int8", 128)])
def test_codes_outside_the_alphabet_are_rejected(fmt, bad):
    with pytest.raises(ValueError, match="codes"):
        pack_codes(torch.tensor([[1, bad]], dtype=torch.int16), fmt)


def test_invalid_bytes_are_rejected():
    with pytest.raises(ValueError, match="invalid 2-bit"):
        unpack_codes(torch.tensor([[3]], dtype=torch.uint8), "ternary2", 4)
    with pytest.raises(ValueError, match="242"):
        unpack_codes(torch.tensor([[243]], dtype=torch.uint8), "ternary-b3", 5)
    with pytest.raises(ValueError, match="bytes per row"):
        unpack_codes(torch.zeros(2, 3, dtype=torch.uint8), "binary", 30)
    with pytest.raises(ValueError, match="unknown"):
        pack_codes(torch.zeros(1, 1, dtype=torch.int8), "ternary4")


@pytest.mark.parametrize("scheme,granularity,center", [("ternary", "tensor", True), ("binary", "tensor", True),
                                                       ("binary", "channel", False), ("ternary", "channel", True),
                                                       ("int8", "channel", True)])
def test_pack_quantized_dequantizes_like_the_quantizer(scheme, granularity, center):
    w = torch.randn(6, 19, generator=torch.Generator().manual_seed(2))
    q = quantize_weight(w, scheme, granularity, center=center)
    pw = pack_quantized(q)
    assert pw.format == {"binary": "binary", "ternary": "ternary-b3", "int8": "int8"}[scheme]
    assert pw.granularity == granularity and pw.scale.dtype == torch.float32
    assert torch.equal(pw.unpack(), q.codes)
    torch.testing.assert_close(pw.dequantize(), q.dequantize())
    with pytest.raises(ValueError, match="group"):
        pack_quantized(quantize_weight(w, scheme, "group", group_size=8))
    with pytest.raises(ValueError, match="int4"):
        pack_quantized(quantize_weight(w, "int4"))
    other = "int8" if scheme != "int8" else "ternary2"
    with pytest.raises(ValueError, match=f"codes do not fit format '{other}'"):
        pack_quantized(q, other)


def test_packed_weight_checks_shapes():
    pw = pack_weight(random_codes("ternary-b3", 4, 9), torch.tensor(0.5), "ternary-b3")
    assert pw.nbytes == 4 * 2 + 4
    with pytest.raises(ValueError, match="packed data"):
        PackedWeight(pw.data[:, :1], (4, 9), pw.scale, "ternary-b3")
    with pytest.raises(ValueError, match="scale"):
        PackedWeight(pw.data, (4, 9), torch.ones(3), "ternary-b3")


def test_bits_per_weight():
    n = 16384
    assert bits_per_weight((n, n), "ternary-b3") == pytest.approx(1.6, abs=1e-3)
    # 16384 is not a multiple of 5: each row pads 1 trit-slot -> ceil(16384 / 5) = 3277 bytes
    assert bits_per_weight((n, n), "ternary-b3") == (n * 3277 * 8 + 32) / n**2
    assert bits_per_weight((n, n), "ternary2") == 2 + 32 / n**2
    assert bits_per_weight((n, n), "binary", "channel") == 1 + 32 / n
    assert bits_per_weight((4, 10), "ternary-b3") == (4 * 2 * 8 + 32) / 40
    assert bits_per_weight((n, n), "int8", "channel") == 8 + 32 / n
