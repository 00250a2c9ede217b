"""Packed storage formats for 1-bit, ternary and int8 weight codes (see docs/formats.md, byte by byte).

A weight matrix W (out, in) quantized to integer codes C and a scale s (W ~= s * C, see
`bitscale.quant.weights`) is stored as a uint8 matrix of shape (out, ceil(in / per_byte)): each row is
packed on its own along in_features and padded to whole bytes, so row r starts at byte r * row_bytes.
The unpadded in_features is recorded next to the bytes (`PackedWeight.shape`).

| format       | codes       | per byte | layout within a byte                                           | bits/code |
|--------------|-------------|----------|----------------------------------------------------------------|-----------|
| `binary`     | {-1, +1}    | 8        | weight j of the row -> bit j % 8 (LSB first) of byte j // 8;    | 1         |
|              |             |          | 1 = +1, 0 = -1; padding bits 0                                 |           |
| `ternary2`   | {-1, 0, +1} | 4        | t = code + 1 in {0, 1, 2} -> bits 2(j % 4), 2(j % 4) + 1 of     | 2         |
|              |             |          | byte j // 4 (LSB first); padding t = 1 (code 0); t = 3 invalid  |           |
| `ternary-b3` | {-1, 0, +1} | 5        | byte = sum_i t_i 3^i, t_i = code of weight 5(j // 5) + i, plus 1 | 1.6       |
|              |             |          | (first weight = least significant trit); padding t = 1;        |           |
|              |             |          | bytes 243..255 invalid                                         |           |
| `int8`       | -128..127   | 1        | byte j = code of weight j + 128 (offset binary)                | 8         |

Scales are float32: one (shape ()) per tensor or one per output channel (shape (out,)); they count
32 bits each in `bits_per_weight`. Everything here is vectorized torch on the CPU, processed in blocks of
rows so that the int32 temporaries stay small for large matrices.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

FORMATS = ("binary", "ternary2", "ternary-b3", "int8")
# Codes per byte and the kernel kind (bitscale.kernels.ops.prepare_weights) of each format.
CODES_PER_BYTE = {"binary": 8, "ternary2": 4, "ternary-b3": 5, "int8": 1}
KIND = {"binary": "binary", "ternary2": "ternary", "ternary-b3": "ternary", "int8": "int8"}
# The format each weight scheme packs into by default (base-3 for ternary: the densest).
DEFAULT_FORMAT = {"binary": "binary", "sign": "binary", "ternary": "ternary-b3", "int8": "int8"}
SCALE_DTYPE = torch.float32
SCALE_BITS = 32
GRANULARITIES = ("tensor", "channel")

_ROW_BLOCK_ELEMENTS = 1 << 22  # codes handled per block of rows (int32 temporaries of ~16 MiB)
_POW3 = torch.tensor([1, 3, 9, 27, 81], dtype=torch.int32)
_SHIFT2 = torch.tensor([0, 2, 4, 6], dtype=torch.int32)
_SHIFT1 = torch.arange(8, dtype=torch.int32)


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"format: unknown {fmt!r}; expected one of {', '.join(FORMATS)}")


def row_bytes(in_features: int, fmt: str) -> int:
    """Bytes per packed row: ceil(in_features / codes per byte)."""
    _check_format(fmt)
    return -(-int(in_features) // CODES_PER_BYTE[fmt])


def packed_shape(shape: "tuple[int, int]", fmt: str) -> tuple[int, int]:
    """(out, row_bytes) of a packed (out, in) matrix."""
    out, n_in = shape
    return int(out), row_bytes(n_in, fmt)


def _row_blocks(rows: int, width: int):
    step = max(1, _ROW_BLOCK_ELEMENTS // max(width, 1))
    for start in range(0, rows, step):
        yield start, min(rows, start + step)


def pack_codes(codes: Tensor, fmt: str) -> Tensor:
    """int codes (out, in) -> packed uint8 (out, row_bytes). Raises ValueError on codes outside the
    format's alphabet ({-1, 1} for binary, {-1, 0, 1} for the ternary formats)."""
    _check_format(fmt)
    if codes.dim() != 2:
        raise ValueError(f"pack_codes: expected a 2-d (out, in) code matrix, got shape {tuple(codes.shape)}")
    codes = codes.detach().to("cpu")
    out, n_in = codes.shape
    per = CODES_PER_BYTE[fmt]
    nb = row_bytes(n_in, fmt)
    allowed = (-1, 1) if fmt == "binary" else (-1, 0, 1)
    packed = torch.empty((out, nb), dtype=torch.uint8)
    pad = nb * per - n_in
    for a, b in _row_blocks(out, nb * per):
        c = codes[a:b].to(torch.int32)
        if fmt == "int8":
            if c.numel() and (c.min() < -128 or c.max() > 127):
                raise ValueError("pack_codes: format 'int8' takes codes in -128..127, got others")
            packed[a:b] = (c + 128).to(torch.uint8)
            continue
        if c.numel() and not torch.isin(c, torch.tensor(allowed, dtype=torch.int32)).all():
            raise ValueError(f"pack_codes: format {fmt!r} takes codes in {set(allowed)}, got others")
        if fmt == "binary":
            bits = torch.nn.functional.pad((c > 0).to(torch.int32), (0, pad))  # padding bits 0
            byte = (bits.reshape(b - a, nb, 8) << _SHIFT1).sum(-1)
        else:
            t = torch.nn.functional.pad(c + 1, (0, pad), value=1)  # padding trits: code 0
            t = t.reshape(b - a, nb, per)
            byte = (t << _SHIFT2).sum(-1) if fmt == "ternary2" else (t * _POW3).sum(-1)
        packed[a:b] = byte.to(torch.uint8)
    return packed


def unpack_codes(packed: Tensor, fmt: str, in_features: int) -> Tensor:
    """packed uint8 (out, row_bytes) -> int8 codes (out, in_features). Raises ValueError on a byte
    that no codes pack to (a 2-bit field of 3 in `ternary2`, a byte above 242 in `ternary-b3`) or on a
    packed width that does not match in_features."""
    _check_format(fmt)
    if packed.dim() != 2 or packed.dtype != torch.uint8:
        raise ValueError(f"unpack_codes: expected a 2-d uint8 tensor, got {packed.dtype} of shape {tuple(packed.shape)}")
    out, nb = packed.shape
    if nb != row_bytes(in_features, fmt):
        raise ValueError(
            f"unpack_codes: {nb} bytes per row do not hold {in_features} codes in format {fmt!r} "
            f"(expected {row_bytes(in_features, fmt)})"
        )
    per = CODES_PER_BYTE[fmt]
    codes = torch.empty((out, in_features), dtype=torch.int8)
    for a, b in _row_blocks(out, nb * per):
        byte = packed[a:b].to(torch.int32)
        if fmt == "int8":  # every byte is a code
            codes[a:b] = (byte - 128).to(torch.int8)
            continue
        if fmt == "binary":
            c = ((byte[..., None] >> _SHIFT1) & 1) * 2 - 1
        elif fmt == "ternary2":
            t = (byte[..., None] >> _SHIFT2) & 3
            if (t == 3).any():
                raise ValueError("unpack_codes: invalid 2-bit field 3 in a ternary2 tensor")
            c = t - 1
        else:
            if (byte > 242).any():
                raise ValueError("unpack_codes: invalid byte > 242 in a ternary-b3 tensor")
            c = (byte[..., None] // _POW3) % 3 - 1
        codes[a:b] = c.reshape(b - a, nb * per)[:, :in_features].to(torch.int8)
    return codes


def granularity_of(scale: Tensor, out_features: int) -> str:
    """'tensor' for a scale of shape (), 'channel' for shape (out,); ValueError otherwise."""
    if scale.dim() == 0:
        return "tensor"
    if tuple(scale.shape) == (out_features,):
        return "channel"
    raise ValueError(f"scale: expected shape () or ({out_features},), got {tuple(scale.shape)}")


def scale_numel(out_features: int, granularity: str) -> int:
    return 1 if granularity == "tensor" else int(out_features)


def bits_per_weight(shape: "tuple[int, int]", fmt: str, granularity: str = "tensor") -> float:
    """Stored bits per weight: the packed bytes (padding included) plus the float32 scales."""
    out, n_in = shape
    data_bits = 8 * out * row_bytes(n_in, fmt)
    return (data_bits + SCALE_BITS * scale_numel(out, granularity)) / (out * n_in)


@dataclass
class PackedWeight:
    """One packed weight matrix: `data` uint8 (out, row_bytes), `shape` (out, in) unpadded, `scale`
    float32 () or (out,), and its `format`. W ~= scale * unpack()."""

    data: Tensor
    shape: tuple[int, int]
    scale: Tensor
    format: str

    def __post_init__(self) -> None:
        _check_format(self.format)
        self.shape = (int(self.shape[0]), int(self.shape[1]))
        if self.data.dtype != torch.uint8 or tuple(self.data.shape) != packed_shape(self.shape, self.format):
            raise ValueError(
                f"packed data: expected uint8 {packed_shape(self.shape, self.format)} for shape {self.shape} "
                f"in format {self.format!r}, got {self.data.dtype} {tuple(self.data.shape)}"
            )
        granularity_of(self.scale, self.shape[0])
        if self.scale.dtype != SCALE_DTYPE:
            raise ValueError(f"scale: expected float32, got {self.scale.dtype}")

    @property
    def granularity(self) -> str:
        return granularity_of(self.scale, self.shape[0])

    @property
    def kind(self) -> str:
        """'binary', 'ternary' or 'int8': the kernel kind of the codes."""
        return KIND[self.format]

    @property
    def nbytes(self) -> int:
        """Stored bytes: packed codes plus scales."""
        return self.data.numel() + self.scale.numel() * self.scale.element_size()

    @property
    def bits_per_weight(self) -> float:
        return bits_per_weight(self.shape, self.format, self.granularity)

    def unpack(self) -> Tensor:
        """The int8 codes (out, in)."""
        return unpack_codes(self.data, self.format, self.shape[1])

    def dequantize(self, dtype: torch.dtype = torch.float32) -> Tensor:
        """scale * codes as a dense (out, in) matrix (for tests and inspection; the packed path never
        builds it)."""
        codes = self.unpack().to(dtype)
        scale = self.scale.to(dtype)
        return codes * (scale if scale.dim() == 0 else scale[:, None])


def pack_weight(codes: Tensor, scale: Tensor, fmt: str) -> PackedWeight:
    """Pack int codes (out, in) with their scale (() or (out,), stored as float32)."""
    if codes.dim() != 2:
        raise ValueError(f"pack_weight: expected a 2-d (out, in) code matrix, got shape {tuple(codes.shape)}")
    scale = scale.detach().to("cpu", SCALE_DTYPE).contiguous()
    granularity_of(scale, codes.shape[0])
    return PackedWeight(pack_codes(codes, fmt), tuple(codes.shape), scale, fmt)


def pack_quantized(q, fmt: "str | None" = None) -> PackedWeight:
    """Pack a `bitscale.quant.QuantizedWeight` (binary / sign / ternary / int8, per tensor or per channel).
    `fmt` defaults to DEFAULT_FORMAT[q.scheme]."""
    if q.scheme not in DEFAULT_FORMAT:
        raise ValueError(f"pack: weight scheme {q.scheme!r} has no packed format (binary, sign and ternary do)")
    if q.granularity not in GRANULARITIES:
        raise ValueError(f"pack: granularity {q.granularity!r} has no packed format (tensor and channel do)")
    fmt = fmt or DEFAULT_FORMAT[q.scheme]
    if KIND[fmt] == "binary" and q.scheme == "ternary" or (KIND[fmt] == "int8") != (q.scheme == "int8"):
        raise ValueError(f"pack: {q.scheme} codes do not fit format {fmt!r}")
    return pack_weight(q.codes.reshape(q.codes.shape[0], -1), q.scale, fmt)


def ideal_bits(fmt: str) -> float:
    """Bits per code without padding: 1, 2, 8/5 = 1.6 (log2(3) = 1.585 is the entropy bound), or 8."""
    _check_format(fmt)
    return 8 / CODES_PER_BYTE[fmt]


__all__ = [
    "CODES_PER_BYTE",
    "DEFAULT_FORMAT",
    "FORMATS",
    "KIND",
    "PackedWeight",
    "SCALE_DTYPE",
    "bits_per_weight",
    "granularity_of",
    "ideal_bits",
    "pack_codes",
    "pack_quantized",
    "pack_weight",
    "packed_shape",
    "row_bytes",
    "unpack_codes",
]
