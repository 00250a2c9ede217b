"""Plain PyTorch reference kernels: unpack the layout to integer codes and multiply exactly.

The products run in float64 on blocks of weight rows. That is exact: every code is an integer with
|x| <= 128 and |w| <= 1, so every partial sum of any summation order is an integer of magnitude at most
128 * in_features < 2^53, which float64 represents exactly (BLAS reordering or FMA cannot change it).
These are the ground truth of the tests and the fallback of `ops` without numba; they are slow (they unpack
the whole weight matrix on every call).
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import layout

_BLOCK_ELEMENTS = 1 << 22  # weight codes unpacked per block (32 MiB as float64)


def _blocks(packed: Tensor, kind: str, in_features: int):
    rows = max(1, _BLOCK_ELEMENTS // max(1, in_features))
    for start in range(0, packed.shape[0], rows):
        yield start, layout.unpack(packed[start : start + rows], kind, in_features)


def int8_matmul(x_codes: Tensor, packed: Tensor, kind: str, in_features: int) -> Tensor:
    """int32 (rows, out) = x_codes (rows, in) int8 @ codes^T, codes unpacked from `packed` (out, row_bytes)."""
    x = x_codes.to(torch.float64)
    out = torch.empty((x.shape[0], packed.shape[0]), dtype=torch.int32, device=x.device)
    for start, codes in _blocks(packed.to(x.device), kind, in_features):
        out[:, start : start + codes.shape[0]] = (x @ codes.to(torch.float64).T).to(torch.int32)
    return out


def xnor_matmul(x: Tensor, packed: Tensor, in_features: int) -> Tensor:
    """int32 (rows, out) = sign(x) @ codes^T with sign(0) = -1 and binary codes unpacked from `packed`."""
    signs = torch.where(x > 0, 1.0, -1.0).to(torch.float64)
    return int8_matmul(signs, packed, "binary", in_features)
