"""Activation quantizers: fake-quantized activations for training, computed per token (the last dimension,
or the channel dimension `dim`: a convolution quantizes per position, over its channels at dim 1).

- ``int8``    per-token absmax (BitNet, arXiv 2310.11453 eq. 4; BitNet b1.58 reference code):
              x_q = RoundClip(x * 127 / max|x|, -128, 127) / (127 / max|x|), max|x| clamped below by eps.
- ``int4``    the same with 7 / max|x| and clip [-8, 7], computed per group of `group_size` channels.
- ``binary``  XNOR-Net (Rastegari et al. 2016, arXiv 1603.05279): x_q = sign(x) * mean|x|, the scale K being
              the mean absolute value over the token's channels. sign(0) = -1, as for weights.
- ``atom``    Atom (Zhao et al. 2023, arXiv 2310.19102): mixed precision. The `n_outliers` channels of
              largest magnitude are kept at int8 (per token), all other channels are quantized to int4 in
              groups of `group_size`. Atom picks the outlier channels offline from calibration data and
              reorders them to the end; here they are the channels with the largest max|x| over the given
              batch unless fixed indices are passed (a layer can calibrate and store them).
- ``fp32``    no quantization.

These are value functions; gradients come from the straight-through estimators in `bitscale.quant.ste`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

ACT_SCHEMES = ("fp32", "int8", "int4", "binary", "atom")


def absmax_scale(x: Tensor, bits: int = 8, eps: float = 1e-5, dim: int = -1) -> Tensor:
    """The per-token scale (2^(b-1) - 1) / max(max|x|, eps) of `quantize_act_absmax` (keepdim along `dim`)."""
    q = 2 ** (bits - 1) - 1
    # max|x| as max(max x, -min x): two cheap reductions instead of materializing |x| (on a CPU, allocating
    # and page-faulting large tensors costs more than the arithmetic here); torch.aminmax and
    # vector_norm(inf) are slower kernels.
    absmax = torch.maximum(x.amax(dim=dim, keepdim=True), x.amin(dim=dim, keepdim=True).neg_())
    return q / absmax.clamp_(min=eps)


def quantize_act_absmax(x: Tensor, bits: int = 8, eps: float = 1e-5, dim: int = -1, out: Tensor | None = None,
                        scale: Tensor | None = None) -> Tensor:
    """Per-token symmetric absmax fake quantization to `bits` bits (codes in [-2^(b-1), 2^(b-1) - 1]), the
    token's channels along `dim`; written into `out` (shaped like x) when given, with the scale of
    `absmax_scale` (computed here unless given)."""
    if scale is None:
        scale = absmax_scale(x, bits, eps, dim)
    # One new tensor (or `out`), then in-place updates. |x * scale| <= q by construction, so the reference's
    # clamp to [-q - 1, q] never binds; skipped.
    q_x = x * scale if out is None else torch.mul(x, scale, out=out)
    return q_x.round_().div_(scale)


def quantize_act_int8(x: Tensor, eps: float = 1e-5, dim: int = -1, out: Tensor | None = None,
                      scale: Tensor | None = None) -> Tensor:
    """Per-token int8 absmax: the BitNet / BitNet b1.58 activation quantizer (channels along `dim`)."""
    return quantize_act_absmax(x, 8, eps, dim, out, scale)


def quantize_act_grouped(x: Tensor, bits: int, group_size: int, eps: float = 1e-5) -> Tensor:
    """Absmax fake quantization with one scale per token and per group of `group_size` channels.

    A last group shorter than `group_size` is zero-padded for the max, which leaves it unchanged.
    """
    if group_size < 1:
        raise ValueError(f"group_size: expected a positive integer, got {group_size}")
    n = x.shape[-1]
    n_groups = -(-n // group_size)
    padded = F.pad(x, (0, n_groups * group_size - n))
    grouped = padded.reshape(*x.shape[:-1], n_groups, group_size)
    out = quantize_act_absmax(grouped, bits, eps)
    return out.reshape(*x.shape[:-1], n_groups * group_size)[..., :n]


def quantize_act_int4(x: Tensor, group_size: int = 128, eps: float = 1e-5) -> Tensor:
    """int4 absmax per token and per group of channels."""
    return quantize_act_grouped(x, 4, group_size, eps)


def binary_scale(x: Tensor, dim: int = -1, out: Tensor | None = None) -> Tensor:
    """The per-token scale K = mean|x| of `quantize_act_binary` (keepdim along `dim`); |x| is held in `out`
    (shaped like x) when given instead of a new tensor."""
    return (x.abs() if out is None else torch.abs(x, out=out)).mean(dim=dim, keepdim=True)


def quantize_act_binary(x: Tensor, dim: int = -1, out: Tensor | None = None, scale: Tensor | None = None) -> Tensor:
    """XNOR-Net binary activation sign(x) * mean|x| per token (channels along `dim`); written into `out`
    (shaped like x) when given, with the scale of `binary_scale` (computed here unless given)."""
    k = binary_scale(x, dim, out) if scale is None else scale
    return torch.where(x > 0, k, -k) if out is None else torch.where(x > 0, k, -k, out=out)


def outlier_channels(x: Tensor, n_outliers: int) -> Tensor:
    """Indices of the `n_outliers` channels with the largest max|x| over all tokens (Atom's outliers)."""
    magnitude = x.detach().abs().reshape(-1, x.shape[-1]).amax(dim=0)
    return torch.topk(magnitude, min(n_outliers, x.shape[-1])).indices.sort().values


def quantize_act_atom(
    x: Tensor,
    group_size: int = 128,
    n_outliers: int = 128,
    outliers: Tensor | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Atom mixed precision: outlier channels at int8 per token, the rest int4 per group."""
    if outliers is None:
        outliers = outlier_channels(x, n_outliers)
    mask = torch.zeros(x.shape[-1], dtype=torch.bool, device=x.device)
    mask[outliers] = True
    out = torch.empty_like(x)
    if mask.any():
        out[..., mask] = quantize_act_absmax(x[..., mask], 8, eps)
    if (~mask).any():
        out[..., ~mask] = quantize_act_grouped(x[..., ~mask], 4, group_size, eps)
    return out


def fake_quantize_act(
    x: Tensor,
    scheme: str,
    group_size: int = 128,
    n_outliers: int = 128,
    outliers: Tensor | None = None,
    eps: float = 1e-5,
    dim: int = -1,
) -> Tensor:
    """Dispatch on the activation scheme name (one of ACT_SCHEMES); a token's channels lie along `dim`.

    int8 and binary reduce along `dim` directly: the values of the same call on `x.movedim(dim, -1)` (a
    max is exact; the mean agrees bit for bit in tests/nn/test_bitconv.py); int4 and atom, whose groups and
    outlier indices run along the last dimension, are computed on that view and moved back (the result
    then has a channels-last layout).
    """
    if scheme == "fp32":
        return x
    if dim % max(x.dim(), 1) != x.dim() - 1 and scheme in ("int4", "atom"):
        moved = fake_quantize_act(x.movedim(dim, -1), scheme, group_size, n_outliers, outliers, eps)
        return moved.movedim(-1, dim)
    if scheme == "int8":
        return quantize_act_int8(x, eps, dim)
    if scheme == "int4":
        return quantize_act_int4(x, group_size, eps)
    if scheme == "binary":
        return quantize_act_binary(x, dim)
    if scheme == "atom":
        return quantize_act_atom(x, group_size, n_outliers, outliers, eps)
    raise ValueError(f"act: unknown scheme {scheme!r}; expected one of {', '.join(ACT_SCHEMES)}")
