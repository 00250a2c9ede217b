"""Weight quantizers: integer codes plus a scale, and the fake-quantized (dequantized) form used in training.

Every scheme maps a latent full-precision weight W to codes C and a scale s with W ~= s * C:

- ``sign``     C = sign(W) in {-1, +1}, s = 1. The plain 1-bit weight of Daliri, Song & Yang 2024
               (arXiv 2411.01663), whose scale lives in the network's kappa instead.
- ``binary``   C = sign(W - mean W), s = mean|W|. BitNet (Wang et al. 2023, arXiv 2310.11453, eq. 1-3):
               centering makes the codes balanced, s = ||W||_1 / (n m) keeps the l1 norm. With
               ``center=False`` and per-channel scales it is XNOR-Net's B = sign(W), alpha = ||W||_1 / n
               (Rastegari et al. 2016, arXiv 1603.05279).
- ``ternary``  C = RoundClip(W / gamma, -1, 1), gamma = mean|W|: the absmean quantizer of BitNet b1.58
               (Ma et al. 2024, arXiv 2402.17764, eq. 1-3), gamma clamped below by eps as in its reference code.
- ``int2`` ``int3`` ``int4`` ``int8``
               symmetric absmax: C = RoundClip(W * q / max|W|, -q, q) with q = 2^(k-1) - 1, s = max|W| / q.

sign(0) is taken as -1 (BitNet's convention: +1 if W > 0, -1 if W <= 0); with continuous weights it never matters.

Scales are computed per tensor, per output channel (row of W), or per group of `group_size`
consecutive input weights within a row. A row whose length is not a multiple of the group size ends in a
shorter group; its statistics use only its real entries.

The fake-quantized weight is computed as C / (1/s), the exact floating-point expression of the reference
implementations, so that BitLinear with a preset reproduces them bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

WEIGHT_SCHEMES = ("fp32", "sign", "binary", "ternary", "int2", "int3", "int4", "int8")
# Precision bits P of each scheme: the information bits of one weight, log2 of its number of code levels
# (sign and binary 2 levels, ternary 3: log2(3) = 1.585). int-k counts its k-bit code width (its symmetric
# codes use 2^k - 1 of the 2^k levels), fp32 its 32 bits. This is the scaling laws' precision variable;
# what a weight takes in storage is a separate figure (`QuantConfig.storage_bits_per_weight`).
PRECISION_BITS: dict[str, float] = {
    "fp32": 32.0, "sign": 1.0, "binary": 1.0, "ternary": math.log2(3),
    "int2": 2.0, "int3": 3.0, "int4": 4.0, "int8": 8.0,
}
assert tuple(PRECISION_BITS) == WEIGHT_SCHEMES
GRANULARITIES = ("tensor", "channel", "group")


@dataclass
class QuantizedWeight:
    """Integer codes (int8, shape of W) and the scale that dequantizes them: W ~= scale * codes.

    `scale` has shape () per tensor, (out,) per channel, (out, n_groups) per group.
    """

    codes: Tensor
    scale: Tensor
    scheme: str
    granularity: str
    group_size: int | None

    def dequantize(self, dtype: torch.dtype = torch.float32) -> Tensor:
        codes = self.codes.to(dtype)
        if self.granularity == "tensor":
            return codes * self.scale.to(dtype)
        rows = codes.reshape(codes.shape[0], -1)
        if self.granularity == "channel":
            out = rows * self.scale.to(dtype)[:, None]
        else:
            per_column = self.scale.to(dtype).repeat_interleave(self.group_size, dim=1)
            out = rows * per_column[:, : rows.shape[1]]
        return out.reshape(codes.shape)


def int_levels(scheme: str) -> int:
    """q = 2^(k-1) - 1, the largest code of the symmetric k-bit scheme ``intk``."""
    return 2 ** (int(scheme[3:]) - 1) - 1


def _grouped(w: Tensor, granularity: str, group_size: int | None) -> tuple[Tensor, Tensor]:
    """View W as (rows, n_groups, group) (zero-padded) and return it with the real count per group."""
    rows = w.reshape(w.shape[0], -1)
    n_in = rows.shape[1]
    if granularity == "channel":
        return rows[:, None, :], torch.tensor([n_in], device=w.device)
    if group_size is None or group_size < 1:
        raise ValueError(f"group_size: expected a positive integer for granularity 'group', got {group_size!r}")
    n_groups = -(-n_in // group_size)
    padded = F.pad(rows, (0, n_groups * group_size - n_in))
    counts = torch.full((n_groups,), group_size, device=w.device)
    counts[-1] = n_in - (n_groups - 1) * group_size
    return padded.reshape(rows.shape[0], n_groups, group_size), counts


def _ungrouped(v: Tensor, like: Tensor) -> Tensor:
    rows = v.reshape(v.shape[0], -1)[:, : like[0].numel()]
    return rows.reshape(like.shape)


def _check(scheme: str, granularity: str) -> None:
    if scheme not in WEIGHT_SCHEMES:
        raise ValueError(f"weight: unknown scheme {scheme!r}; expected one of {', '.join(WEIGHT_SCHEMES)}")
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity: unknown {granularity!r}; expected one of {', '.join(GRANULARITIES)}")


def _codes_and_inverse_scale(
    v: Tensor, scheme: str, per_tensor: bool, counts: Tensor | None, center: bool, eps: float
) -> tuple[Tensor, Tensor]:
    """Codes and 1/s for `v` (the whole tensor when per_tensor, else the (rows, groups, g) view)."""

    def mean_over_last(t: Tensor) -> Tensor:
        if per_tensor:
            return t.mean()
        return t.sum(dim=-1, keepdim=True) / counts[None, :, None]

    def max_over_last(t: Tensor) -> Tensor:
        return t.amax() if per_tensor else t.amax(dim=-1, keepdim=True)

    if scheme == "sign":
        return torch.where(v > 0, 1.0, -1.0).to(v.dtype), torch.ones((), dtype=v.dtype, device=v.device)
    if scheme == "binary":
        centered = v - mean_over_last(v) if center else v
        beta = mean_over_last(v.abs()).clamp(min=eps)
        return torch.where(centered > 0, 1.0, -1.0).to(v.dtype), 1.0 / beta
    if scheme == "ternary":
        inv = 1.0 / mean_over_last(v.abs()).clamp(min=eps)
        return (v * inv).round().clamp(-1, 1), inv
    q = int_levels(scheme)
    inv = q / max_over_last(v.abs()).clamp(min=eps)
    return (v * inv).round().clamp(-q, q), inv


def weight_codes(
    w: Tensor, scheme: str, granularity: str, group_size: int | None, center: bool, eps: float
) -> tuple[Tensor, Tensor]:
    """(codes, 1/s) as float tensors: over the whole tensor when per tensor (1/s a scalar), else over the
    (rows, groups, group) view of `_grouped`. The building block of `quantize_weight` and
    `fake_quantize_weight`, public for code that needs the raw codes and inverse scale (HF interop)."""
    if granularity == "tensor":
        return _codes_and_inverse_scale(w, scheme, True, None, center, eps)
    view, counts = _grouped(w, granularity, group_size)
    return _codes_and_inverse_scale(view, scheme, False, counts, center, eps)


def quantize_weight(
    w: Tensor,
    scheme: str,
    granularity: str = "tensor",
    group_size: int | None = None,
    center: bool = True,
    eps: float = 1e-5,
) -> QuantizedWeight:
    """Quantize W to integer codes and scales (see the module docstring for each scheme's formula)."""
    _check(scheme, granularity)
    if scheme == "fp32":
        raise ValueError("weight: scheme 'fp32' has no integer codes")
    w = w.detach()
    codes, inv = weight_codes(w, scheme, granularity, group_size, center, eps)
    if granularity == "tensor":
        return QuantizedWeight(codes.to(torch.int8), (1.0 / inv).reshape(()), scheme, granularity, None)
    rows, groups = codes.shape[0], codes.shape[1]
    scale = (1.0 / inv).expand(rows, groups, 1).reshape(rows, groups)
    if granularity == "channel":
        scale = scale[:, 0]
    group = group_size if granularity == "group" else None
    return QuantizedWeight(_ungrouped(codes, w).to(torch.int8), scale.contiguous(), scheme, granularity, group)


def fake_quantize_weight(
    w: Tensor,
    scheme: str,
    granularity: str = "tensor",
    group_size: int | None = None,
    center: bool = True,
    eps: float = 1e-5,
) -> Tensor:
    """The dequantized weight codes / (1/s), in W's dtype and shape; no gradient flows (wrap it in an STE)."""
    _check(scheme, granularity)
    if scheme == "fp32":
        return w
    codes, inv = weight_codes(w, scheme, granularity, group_size, center, eps)
    out = codes if scheme == "sign" else codes / inv
    return out if granularity == "tensor" else _ungrouped(out, w)
