"""Straight-through estimators (STEs): the backward rule used in place of a quantizer's zero gradient.

A quantizer q(x) is piecewise constant, so dq/dx = 0 almost everywhere and training would never move.
An STE runs q in the forward pass and substitutes a surrogate derivative g'(x) in the backward pass:

    forward:  y = q(x)
    backward: dL/dx = dL/dy * g'(x)

The rules here (names are the ones used by `QuantConfig.ste` / `QuantConfig.act_ste`):

- ``identity``     g'(x) = 1. The "detach trick" y = x + (q(x) - x).detach() of BitNet's reference code.
                   Its forward value is computed exactly as written, x + (q(x) - x), which can differ from
                   q(x) in the last bit when |x| is far from q(x); doing so keeps a layer bit-identical to
                   the reference. The two operations run in place on q(x), so they add no allocation.
- ``clipped``      g'(x) = 1{|x| <= c}: BinaryConnect (Courbariaux et al. 2015) / Larq ``ste_sign``, the
                   derivative of hard-tanh. c = ``clip`` (default 1).
- ``approx_sign``  g'(x) = (2 - 2|x|) 1{|x| <= 1}: Bi-Real Net (Liu et al. 2018), the derivative of the
                   piecewise-quadratic approximation of sign.
- ``relu``         g'(x) = 1{x > 0}: the ReLU STE for a binary activation 1{x > 0} (Yin et al. 2019).
- ``clipped_relu`` g'(x) = 1{0 < x < c}: the clipped-ReLU STE (Yin et al. 2019), which they prove gives a
                   descent direction where the identity STE can fail to.

`x` is the quantizer's input as the caller defines it: for sign-type weight quantizers it is the
(centered) latent weight, so the clip acts on the weights themselves as in BinaryConnect.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

STE_NAMES = ("identity", "clipped", "approx_sign", "relu", "clipped_relu")


def ste_grad(x: Tensor, grad: Tensor, rule: str, clip: float = 1.0) -> Tensor:
    """dL/dx = dL/dy * g'(x) for the surrogate derivative g' named by `rule` (see module docstring)."""
    if rule == "identity":
        return grad
    if rule == "clipped":
        return grad * (x.abs() <= clip).to(grad.dtype)
    if rule == "approx_sign":
        return grad * (2.0 - 2.0 * x.abs()).clamp_(min=0.0).to(grad.dtype)
    if rule == "relu":
        return grad * (x > 0).to(grad.dtype)
    if rule == "clipped_relu":
        return grad * ((x > 0) & (x < clip)).to(grad.dtype)
    raise ValueError(f"ste: unknown rule {rule!r}; expected one of {', '.join(STE_NAMES)}")


def _forward_value(x: Tensor, quantize: Callable[[Tensor], Tensor], rule: str) -> Tensor:
    q = quantize(x)
    if rule == "identity" and q is not x:
        return q.sub_(x).add_(x)  # x + (q - x), the detach trick's value
    return q


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, quantize: Callable[[Tensor], Tensor], rule: str, clip: float) -> Tensor:
        ctx.rule, ctx.clip = rule, clip
        if rule != "identity":  # identity needs nothing saved: no extra memory on the hot path
            ctx.save_for_backward(x)
        return _forward_value(x, quantize, rule)

    @staticmethod
    def backward(ctx, grad: Tensor):
        if ctx.rule == "identity":
            return grad, None, None, None
        (x,) = ctx.saved_tensors
        return ste_grad(x, grad, ctx.rule, ctx.clip), None, None, None


def straight_through(x: Tensor, quantize: Callable[[Tensor], Tensor], rule: str = "identity", clip: float = 1.0) -> Tensor:
    """Return quantize(x) in the forward pass, with the surrogate gradient `rule` in the backward pass.

    `quantize` must be a differentiation-free tensor function returning a new tensor (it runs under
    autograd's no-grad forward). When no gradient is needed no graph is built; the value is the same.
    """
    if rule not in STE_NAMES:
        raise ValueError(f"ste: unknown rule {rule!r}; expected one of {', '.join(STE_NAMES)}")
    if not (torch.is_grad_enabled() and x.requires_grad):
        with torch.no_grad():
            return _forward_value(x, quantize, rule)
    return _StraightThrough.apply(x, quantize, rule, clip)
