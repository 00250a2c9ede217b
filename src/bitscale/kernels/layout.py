"""The compute kernels' weight layouts: "plane-split" rows of 2-bit (ternary), 1-bit (binary) or 8-bit
(int8) codes.

Every layout stores one row of W (one output feature) as `row_bytes` bytes, a multiple of ALIGN = 64, and
split the row's (zero-padded) in_features into P equal *planes* of `row_bytes` weights each: byte j of a
row holds weight j of every plane, i.e. the weights k = j, Q + j, 2Q + j, ... (Q = row_bytes). So a
64-byte load of the row, shifted and masked P times, gives 64 codes of each plane, and each plane lines up
with 64 *consecutive* activations x[t Q + j .. t Q + j + 63]: no shuffle of weights or activations is
needed, and the activation row is only zero-padded to P * Q.

ternary (P = 4, 2 bits per weight)
    byte j of row o, bits 2t and 2t+1 (t = 0..3, LSB first) = W[o, t Q + j] + 1, in {0, 1, 2}; 3 is invalid.
    Padding weights (k >= in_features) are stored as 1 (code 0).
    Q = roundup(ceil(in / 4), 64); padded in_features = 4 Q.

int8 (P = 1, 8 bits per weight)
    byte j of row o = W[o, j] + 128, W in [-128, 127] (an int8 code offset to unsigned). Padding 128
    (code 0). Q = roundup(in, 64); padded in_features = Q. For full-precision-ish layers (a W8A8 output
    head) that run through the same int8 kernels.

binary (P = 8, 1 bit per weight)
    byte j of row o, bit t (t = 0..7, LSB first) = 1 if W[o, t Q + j] = +1, 0 if it is -1.
    Padding bits are 0. Q = roundup(ceil(in / 8), 64); padded in_features = 8 Q.
    Viewed as little-endian uint64 words, the same bytes are the operand of the XNOR-popcount kernel; the
    activation signs are packed into the identical arrangement (`pack_signs`).

Why offset codes W + 1 rather than a sign plane and a nonzero plane: x . W = x . (W + 1) - sum(x), and
(W + 1) in {0, 1, 2} is an unsigned byte after one shift and one mask, which is exactly the unsigned operand
of the int8 dot-product instruction (AVX-512 VNNI vpdpbusd: 64 u8 x s8 products summed into 16 int32 per
instruction). The correction sum(x) is computed once per activation row. The binary layout uses the same
trick with 2 x . b - sum(x), b = (W + 1) / 2 in {0, 1}.
"""

from __future__ import annotations

import torch
from torch import Tensor

ALIGN = 64  # bytes: row_bytes is a multiple of this (one 512-bit vector)
KINDS = ("ternary", "binary", "int8")
PLANES = {"ternary": 4, "binary": 8, "int8": 1}  # codes per byte
BITS = {"ternary": 2, "binary": 1, "int8": 8}  # bits per code
OFFSET = {"ternary": 1, "int8": 128}  # stored code = W + offset (binary: (W + 1) / 2)
# Most rows of codes packed at once (keeps the uint8 temporaries of a 16384 x 16384 matrix small).
_BLOCK_ELEMENTS = 1 << 24


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")


def row_bytes(in_features: int, kind: str) -> int:
    """Bytes per packed row (= Q, the plane length): ceil(in / P) rounded up to a multiple of ALIGN."""
    _check_kind(kind)
    per = -(-int(in_features) // PLANES[kind])
    return max(ALIGN, -(-per // ALIGN) * ALIGN)


def padded_in_features(in_features: int, kind: str) -> int:
    """in_features rounded up to P * row_bytes: the length the activation rows are zero-padded to."""
    return PLANES[kind] * row_bytes(in_features, kind)


def _planes(codes: Tensor, kind: str, fill: int) -> Tensor:
    """(rows, P, Q) uint8 view of `codes` transformed by the caller, zero-padded with `fill`."""
    rows, n_in = codes.shape
    q = row_bytes(n_in, kind)
    p = PLANES[kind]
    out = torch.full((rows, p * q), fill, dtype=torch.uint8)
    out[:, :n_in] = codes
    return out.view(rows, p, q)


def pack(codes: Tensor, kind: str) -> Tensor:
    """Pack int8 codes (out, in) (already validated: {-1, 0, 1} for ternary, {-1, 1} for binary, any int8
    for int8) into the kernel layout: a contiguous uint8 tensor (out, row_bytes)."""
    _check_kind(kind)
    codes = codes.detach().to("cpu")
    out_f, n_in = codes.shape
    q = row_bytes(n_in, kind)
    packed = torch.empty((out_f, q), dtype=torch.uint8)
    step = max(1, _BLOCK_ELEMENTS // max(1, PLANES[kind] * q))
    for start in range(0, out_f, step):
        block = codes[start : start + step]
        if kind == "ternary":
            planes = _planes((block + 1).to(torch.uint8), kind, 1)
            packed[start : start + step] = planes[:, 0] | (planes[:, 1] << 2) | (planes[:, 2] << 4) | (planes[:, 3] << 6)
        elif kind == "int8":
            packed[start : start + step] = _planes((block.to(torch.int16) + 128).to(torch.uint8), kind, 128)[:, 0]
        else:
            planes = _planes((block > 0).to(torch.uint8), kind, 0)
            acc = planes[:, 0].clone()
            for t in range(1, 8):
                acc |= planes[:, t] << t
            packed[start : start + step] = acc
    return packed


def unpack(packed: Tensor, kind: str, in_features: int) -> Tensor:
    """The int8 codes (out, in_features) of a packed (out, row_bytes) layout: the inverse of `pack`."""
    _check_kind(kind)
    p, bits = PLANES[kind], BITS[kind]
    mask = (1 << bits) - 1
    planes = torch.stack([(packed >> (t * bits)) & mask for t in range(p)], dim=1)  # (out, P, Q)
    flat = planes.reshape(packed.shape[0], -1)[:, :in_features]
    if kind == "int8":
        return (flat.to(torch.int16) - 128).to(torch.int8)
    flat = flat.to(torch.int8)
    return flat - 1 if kind == "ternary" else flat * 2 - 1


def pack_signs(x: Tensor) -> Tensor:
    """Sign bits of float activations (rows, in) in the binary layout: bit t of byte j of a row is 1 when
    x[row, t Q + j] > 0 (sign(0) = -1, as the `binary` quantizer), padding bits 0. Returns (rows, Q) uint8."""
    rows, n_in = x.shape
    planes = _planes((x > 0).to(torch.uint8), "binary", 0)
    acc = planes[:, 0].clone()
    for t in range(1, 8):
        acc |= planes[:, t] << t
    return acc.reshape(rows, row_bytes(n_in, "binary"))


def pad_activations(codes: Tensor, kind: str) -> Tensor:
    """int8 activation codes (rows, in) zero-padded to (rows, padded_in_features), contiguous."""
    rows, n_in = codes.shape
    width = padded_in_features(n_in, kind)
    if width == n_in and codes.is_contiguous():
        return codes
    out = torch.zeros((rows, width), dtype=torch.int8)
    out[:, :n_in] = codes
    return out
