"""Quantization of stacked members, with the quantizers BitLinear uses.

The quantizers are `fake_quantize_weight`, `fake_quantize_act` and `straight_through`. A per-tensor weight
scale becomes a per-member one: W [k, out, in] is viewed as [k, out*in] with one "channel" per member
(per-channel and per-group scales view W as [k*out, in]). Members are sorted by quantizer (`weight_key`,
`act_key`) so that each distinct quantizer acts on one contiguous slice, a segment (`segments`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor

from ...quant import QuantConfig, fake_quantize_act, fake_quantize_weight, straight_through

# ATen's internal::GRAIN_SIZE: reductions over more elements may be split between threads.
GRAIN_SIZE = 32768


def quantizer_key(q: QuantConfig) -> str:
    """The whole canonical config (every field, sorted): members share a quantizer only when all of it
    agrees, so a field added to QuantConfig splits them without being listed anywhere here."""
    return json.dumps(q.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def weight_key(q: QuantConfig) -> str:
    """Members with equal keys quantize their weights alike: all fp32 weights (no quantizer at all), or
    the same whole config."""
    return "fp32" if q.weight == "fp32" else quantizer_key(q)


def act_key(q: QuantConfig) -> str:
    """As weight_key, for the activations."""
    return "fp32" if q.act == "fp32" else quantizer_key(q)


def segments(keys: list[str], quants: list[QuantConfig]) -> list[tuple[int, int, QuantConfig]]:
    """Runs of consecutive members with equal key: (start, stop, a config of the run)."""
    out: list[tuple[int, int, QuantConfig]] = []
    start = 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start]:
            out.append((start, i, quants[start]))
            start = i
    return out


def stacked_weight_value(w: Tensor, c: QuantConfig) -> Tensor:
    """Q_w of every member of w [k, out, in] at once, each member with its own scale(s)."""
    k = w.shape[0]
    if c.weight == "sign":  # torch.where(w > 0, 1.0, -1.0), as fake_quantize_weight, in fewer passes
        return torch.gt(w, 0).to(w.dtype).mul_(2).sub_(1)
    if c.granularity == "tensor":
        if w[0].numel() > GRAIN_SIZE:
            # torch splits a reduction over more than GRAIN_SIZE elements between threads, which changes
            # the order of summation; per member, the scale is then computed exactly as the solo layer does.
            members = [fake_quantize_weight(w[j], c.weight, "tensor", None, c.center, c.eps) for j in range(k)]
            return torch.stack(members)
        # one scale per member: a member is one "channel" of [k, out*in]
        v = fake_quantize_weight(w.reshape(k, -1), c.weight, "channel", None, c.center, c.eps)
    else:
        rows = w.reshape(-1, w.shape[-1])
        v = fake_quantize_weight(rows, c.weight, c.granularity, c.group_size, c.center, c.eps)
    return v.reshape(w.shape)


def _act_value(x: Tensor, c: QuantConfig) -> Tensor:
    return fake_quantize_act(x, c.act, c.act_group_size, c.atom_outliers, None, c.eps)


def quant_weight(w: Tensor, c: QuantConfig) -> Tensor:
    """Q_w(w) with the config's weight STE, as `BitLinear.quantized_weight` (value only without grad)."""
    if c.weight == "fp32":
        return w
    return straight_through(w, partial(stacked_weight_value, c=c), c.ste, c.ste_clip)


def quant_act(x: Tensor, c: QuantConfig) -> Tensor:
    """Q_a(x) with the config's activation STE, as `BitLinear.quantized_input` (norm excluded)."""
    if c.act == "fp32":
        return x
    return straight_through(x, partial(_act_value, c=c), c.act_ste, c.ste_clip)


def by_segment(
    t: Tensor,
    segs: list[tuple[int, int, QuantConfig]],
    lo: int,
    hi: int,
    fn: Callable[[Tensor, QuantConfig], Tensor],
) -> Tensor:
    """fn applied to each member slice of t (the members lo..hi) with its segment's config, concatenated."""
    parts = []
    for start, stop, c in segs:
        a, b = max(start, lo), min(stop, hi)
        if a >= b:
            continue
        parts.append(fn(t if (a, b) == (lo, hi) else t[a - lo : b - lo], c))
    return parts[0] if len(parts) == 1 else torch.cat(parts)
