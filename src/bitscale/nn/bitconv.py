"""BitConv1d / BitConv2d: drop-in nn.Conv1d / nn.Conv2d with low-bit weights and activations (STE training).

Forward pass, for an input x of shape (N, C_in, *spatial):

    x_n = RMSNorm_c(x)             (optional) over the C_in channels of each position x[n, :, i]
    x_q = Q_a(x_n)                 per position ("per token" = per spatial position): the quantizer's
                                   channel vector is x_n[n, :, i], all C_in channels even when groups > 1
    W_q = Q_w(W)                   per tensor, per output channel W[o], or per group of W[o]'s flattened
                                   fan-in (C_in / groups * prod(kernel_size) weights)
    y   = conv(x_q, W_q) + b       F.conv1d / F.conv2d with the layer's stride, padding, dilation, groups

The quantizers, STEs and presets are BitLinear's (`bitscale.nn.bitlinear`): BitNet (arXiv 2310.11453) and
BitNet b1.58 (arXiv 2402.17764) for ternary / binary weights and int8 absmax activations, XNOR-Net
(Rastegari et al. 2016, arXiv 1603.05279) for binary weights and inputs in CNNs. XNOR-Net's input scale K
averages A = mean_c |x| over each kernel window; here the scale stays per position (BitNet's per-token
quantizer applied to the channel vector), so x_q does not depend on the kernel and the padded positions
(zeros, or copies of positions for reflect / replicate / circular padding) are quantized positions too.

With the `fp32` preset (and no norm) the forward and backward are exactly nn.Conv1d's / nn.Conv2d's.
Gradients: dL/dx_n = STE_a(x_n) * conv_input_grad(dL/dy, W_q), dL/dW = STE_w(W) * conv_weight_grad(x_q, dL/dy).

Inputs of `buffer_elements` (2^16) elements or more with int8 or binary activations and zero padding go
through `_BufferedQuantizedConv`: x_q is written into a per-thread buffer reused across calls and
recomputed in the backward pass from x_n and the saved per-position scale, so the layer saves x_n, not
x_q, as nn.Conv saves its input, and a step allocates no input-sized tensor for x_q (`release_buffers()`
frees the buffer). The values are those of the plain path (tests/nn/test_bitconv.py).
"""

from __future__ import annotations

import math
import threading
from functools import partial

import torch
import torch.nn as nn
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch.nn.modules.utils import _pair, _single

from ..quant import QuantConfig, fake_quantize_act, fake_quantize_weight, outlier_channels, resolve_config
from ..quant import ste_grad, straight_through
from ..quant.activations import absmax_scale, binary_scale, quantize_act_binary, quantize_act_int8
from .bitlinear import quant_argument

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _positive_int(field: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{field}: expected a positive integer, got {value!r}")
    return value


def _int_tuple(field: str, value, dims: int, minimum: int) -> tuple[int, ...]:
    expand = _single if dims == 1 else _pair
    try:
        t = tuple(expand(value))
    except TypeError:
        t = (value,)
    if len(t) != dims:
        raise ValueError(f"{field}: expected {dims} integer{'s' if dims > 1 else ''}, got {t}")
    if any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in t):
        raise ValueError(f"{field}: expected {'positive' if minimum == 1 else 'non-negative'} integers, got {t}")
    return t


def check_conv_args(dims: int, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                    padding_mode) -> tuple:
    """Validated (kernel_size, stride, padding, dilation) tuples of a `dims`-d convolution (padding may stay
    'same' / 'valid'); a one-line ValueError naming the field otherwise."""
    in_channels = _positive_int("in_channels", in_channels)
    out_channels = _positive_int("out_channels", out_channels)
    groups = _positive_int("groups", groups)
    for field, n in (("in_channels", in_channels), ("out_channels", out_channels)):
        if n % groups:
            raise ValueError(f"{field}: {n} is not divisible by groups={groups}")
    kernel = _int_tuple("kernel_size", kernel_size, dims, 1)
    stride = _int_tuple("stride", stride, dims, 1)
    dilation = _int_tuple("dilation", dilation, dims, 1)
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"padding: expected 'same', 'valid' or non-negative integers, got {padding!r}")
        if padding == "same" and any(s != 1 for s in stride):
            raise ValueError(f"padding: 'same' needs stride 1, got stride {stride}")
    else:
        padding = _int_tuple("padding", padding, dims, 0)
    if padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode: expected one of {', '.join(PADDING_MODES)}, got {padding_mode!r}")
    return kernel, stride, padding, dilation


def pad_amounts(padding, kernel_size: tuple[int, ...], dilation: tuple[int, ...]) -> list[tuple[int, int]]:
    """(before, after) padding per spatial dim: 'valid' none, 'same' d(k - 1) split with the odd one after
    (as nn.Conv), integers on both sides."""
    if padding == "valid":
        return [(0, 0)] * len(kernel_size)
    if padding == "same":
        totals = [d * (k - 1) for k, d in zip(kernel_size, dilation)]
        return [(t // 2, t - t // 2) for t in totals]
    return [(p, p) for p in padding]


def check_conv_input(x: Tensor, dims: int, in_channels: int, kernel_size, padding, dilation) -> int:
    """The channel dim of a batched (N, C, *spatial) or unbatched (C, *spatial) input `x` (1 or 0); a
    one-line ValueError for a wrong shape or a kernel that spans more than the padded input."""
    if not isinstance(x, Tensor) or x.dim() not in (dims + 1, dims + 2):
        names = "(N, C, L) or (C, L)" if dims == 1 else "(N, C, H, W) or (C, H, W)"
        raise ValueError(f"input: expected a {names} tensor, got shape {tuple(getattr(x, 'shape', ()))}")
    cdim = x.dim() - dims - 1
    if x.shape[cdim] != in_channels:
        raise ValueError(f"input: expected {in_channels} channels at dim {cdim}, got shape {tuple(x.shape)}")
    if padding != "same":
        size = tuple(x.shape[cdim + 1 :])
        padded = tuple(n + a + b for n, (a, b) in zip(size, pad_amounts(padding, kernel_size, dilation)))
        span = tuple(d * (k - 1) + 1 for k, d in zip(kernel_size, dilation))
        if any(s > p for s, p in zip(span, padded)):
            raise ValueError(f"kernel_size: {tuple(kernel_size)} with dilation {tuple(dilation)} spans {span}, "
                             f"more than the input's spatial size {size} padded to {padded}")
    return cdim


def _layout(x: Tensor) -> torch.memory_format:
    """x's memory format, for a quantized input handed to the convolution in the same layout as x."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


# Inputs of at least this many elements take the buffered path (`_BufferedQuantizedConv`): Q_a(x) is
# written into a per-thread buffer reused across calls instead of a fresh tensor, since on a CPU
# page-faulting a fresh multi-MiB tensor on every step costs more than quantizing it. The default of
# `BitConv1d/2d.buffer_elements`; None there turns the buffered path off.
BUFFER_ELEMENTS = 1 << 16

_buffers = threading.local()


def _bufferable(x: Tensor) -> bool:
    """Whether x's layout has a buffer view (`_buffer_like`): contiguous or channels-last."""
    return x.is_contiguous() or (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last))


def _buffer_like(x: Tensor) -> Tensor:
    """A tensor with x's shape, dtype and layout (contiguous or channels-last: `_bufferable`) in this
    thread's reused buffer. Its contents are garbage; it is valid until the next call."""
    channels_last = not x.is_contiguous()
    cache = _buffers.__dict__.setdefault("by_kind", {})
    key = (x.dtype, x.device)
    flat = cache.get(key)
    if flat is None or flat.numel() < x.numel():
        with torch.inference_mode(False):  # a normal tensor: an inference tensor could not be written later
            flat = cache[key] = torch.empty(x.numel(), dtype=x.dtype, device=x.device)
    flat = flat[: x.numel()]
    if not channels_last:
        return flat.view(x.shape)
    n, c, h, w = x.shape
    return flat.view(n, h, w, c).permute(0, 3, 1, 2)


def release_buffers() -> None:
    """Free this thread's reused Q_a(x) buffers (they hold the largest BitConv input seen)."""
    _buffers.__dict__.pop("by_kind", None)


def _act_scale(c: QuantConfig, x: Tensor, buffer: Tensor) -> Tensor:
    """The per-position scale of Q_a (int8: 127 / max|x|, binary: mean|x|) of a batched x, keepdim at dim
    1; `buffer` (shaped like x) may be overwritten."""
    return absmax_scale(x, 8, c.eps, 1) if c.act == "int8" else binary_scale(x, 1, buffer)


def _quantize_into(c: QuantConfig, x: Tensor, out: Tensor, scale: Tensor, ste_value: bool = True) -> Tensor:
    """Q_a(x) at `scale` into `out`, with the STE's forward value (x + (q - x) for the identity STE) unless
    `ste_value` is False: then q itself."""
    if c.act == "int8":
        quantize_act_int8(x, c.eps, 1, out=out, scale=scale)
    else:
        quantize_act_binary(x, 1, out=out, scale=scale)
    return out.sub_(x).add_(x) if ste_value and c.act_ste == "identity" else out


class _BufferedQuantizedConv(torch.autograd.Function):
    """y = conv(Q_a(x), W_q) + b with Q_a(x) (and its STE value) written into a reused buffer.

    Forward: the per-position scale s, Q_a(x) into the buffer, then the convolution; it saves x and s (one
    value per position), not Q_a(x), so a training step holds no more activations than nn.Conv and
    allocates no new input-sized tensor. Backward: dL/dx = STE_a(x) * conv_input_grad(dL/dy, W_q);
    dL/dW_q = conv_weight_grad(Q_a(x), dL/dy) with Q_a(x) recomputed from x and s into the buffer;
    dL/db = sum of dL/dy. The same aten calls on the same values as F.conv's autograd, so the outputs and
    gradients equal the unbuffered path's (bit for bit, but for the sign of an exact zero in dL/dW_q,
    see backward). Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: "Tensor | None", config: QuantConfig, geometry) -> Tensor:
        stride, padding, dilation, groups = geometry
        conv = torch.conv1d if x.dim() == 3 else torch.conv2d
        buffer = _buffer_like(x)
        scale = _act_scale(config, x, buffer)
        y = conv(_quantize_into(config, x, buffer, scale), weight, bias, stride, padding, dilation, groups)
        ctx.save_for_backward(x, weight, scale)
        ctx.config, ctx.geometry, ctx.has_bias = config, geometry, bias is not None
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x, weight, scale = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.geometry
        need_x, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]
        # Q_a(x) again, from the saved scale; x only lends its shape when dW is not needed. For dW the
        # identity STE's value x + (q - x) is taken as q: for int8 absmax they are the same numbers (q - x
        # is exact by Sterbenz' lemma, as x/2 <= q <= 2x for every q != 0), so dW can differ at most in
        # the sign of an exact zero, and the two passes are saved.
        x_q = _quantize_into(ctx.config, x, _buffer_like(x), scale, ste_value=ctx.config.act != "int8") if need_w else x
        grad_q, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad, x_q, weight, [weight.shape[0]] if ctx.has_bias else None, stride, padding, dilation, False,
            [0] * len(stride), groups, [need_x, need_w, need_b])
        rule, clip = ctx.config.act_ste, ctx.config.ste_clip
        grad_x = None
        if need_x and rule == "clipped":  # grad * 1{|x| <= clip}, the mask built in the buffer
            grad_x = grad_q.mul_(torch.abs(x, out=_buffer_like(x)).le_(clip))
        elif need_x:
            grad_x = ste_grad(x, grad_q, rule, clip)
        return grad_x, grad_w, grad_b if need_b else None, None, None, None


class _BitConv:
    """What BitConv1d and BitConv2d share (they differ in their nn.Conv base only)."""

    _dims: int
    _base: type
    buffer_elements: "int | None" = BUFFER_ELEMENTS

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = False, padding_mode: str = "zeros", device=None, dtype=None, *,
                 quant: "str | QuantConfig | dict | None" = "bitnet-b1.58", norm: bool | None = None,
                 **deprecated) -> None:
        check_conv_args(self._dims, in_channels, out_channels, kernel_size, stride, padding, dilation,
                        groups, padding_mode)
        self._base.__init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                            padding_mode, device, dtype)
        self.config = resolve_config(quant_argument(quant, deprecated, type(self).__name__))
        use_norm = self.config.norm if norm is None else norm
        self.norm = nn.RMSNorm(self.in_channels, eps=1e-6, device=device, dtype=dtype) if use_norm else None
        # Atom's outlier channels, fixed once calibrated (see `calibrate_outliers`); None = chosen per batch.
        self.register_buffer("outliers", None)

    def _weight_value(self, w: Tensor) -> Tensor:
        c = self.config
        # fake_quantize_weight quantizes per output channel / group over W.reshape(out, -1): the flattened
        # fan-in (C_in / groups * prod(kernel_size)) is a BitLinear row.
        return fake_quantize_weight(w, c.weight, c.granularity, c.group_size, c.center, c.eps)

    def _act_value(self, x: Tensor, dim: int) -> Tensor:
        c = self.config
        q = fake_quantize_act(x, c.act, c.act_group_size, c.atom_outliers, self.outliers, c.eps, dim=dim)
        # int4 / atom work on a channels-last view: hand the convolution x's own layout.
        return q.contiguous(memory_format=_layout(x))

    def quantized_weight(self) -> Tensor:
        """Q_w(W) with the weight STE attached (the tensor the convolution uses)."""
        c = self.config
        if c.weight == "fp32":
            return self.weight
        return straight_through(self.weight, self._weight_value, c.ste, c.ste_clip)

    def _normed(self, x: Tensor, cdim: int) -> Tensor:
        if self.norm is None:
            return x
        dtype = self.norm.weight.dtype  # under autocast x can arrive in bf16, as in BitLinear
        x = x.to(dtype) if x.dtype.itemsize < dtype.itemsize else x
        return self.norm(x.movedim(cdim, -1)).movedim(-1, cdim).contiguous(memory_format=_layout(x))

    def quantized_input(self, x: Tensor) -> Tensor:
        """Q_a(RMSNorm(x)) per position, with the activation STE attached; x is (N, C, *spatial) or (C, *spatial)."""
        c = self.config
        cdim = x.dim() - self._dims - 1
        x = self._normed(x, cdim)
        if c.act == "fp32":
            return x
        return straight_through(x, partial(self._act_value, dim=cdim), c.act_ste, c.ste_clip)

    def _buffered_geometry(self, x: Tensor) -> "tuple | None":
        """(stride, padding, dilation, groups) for the buffered path, or None when x takes the plain one:
        int8 / binary activations, zeros padding (symmetric), no autocast, a large enough x."""
        c = self.config
        if (self.buffer_elements is None or x.numel() < self.buffer_elements or c.act not in ("int8", "binary")
                or self.padding_mode != "zeros" or torch.is_autocast_enabled(x.device.type)):
            return None
        padding = self.padding
        if isinstance(padding, str):
            pads = pad_amounts(padding, self.kernel_size, self.dilation)
            if any(a != b for a, b in pads):
                return None
            padding = tuple(a for a, _ in pads)
        return tuple(self.stride), tuple(padding), tuple(self.dilation), self.groups

    def forward(self, x: Tensor) -> Tensor:
        cdim = check_conv_input(x, self._dims, self.in_channels, self.kernel_size, self.padding, self.dilation)
        geometry = self._buffered_geometry(x) if cdim == 1 else None
        if geometry is not None and _bufferable(x):
            return _BufferedQuantizedConv.apply(self._normed(x, 1), self.quantized_weight(), self.bias, self.config,
                                                geometry)
        return self._conv_forward(self.quantized_input(x), self.quantized_weight(), self.bias)

    @torch.no_grad()
    def calibrate_outliers(self, x: Tensor) -> Tensor:
        """Fix Atom's int8 outlier channels from calibration inputs `x` (largest max|x| per channel over
        every position)."""
        cdim = check_conv_input(x, self._dims, self.in_channels, self.kernel_size, self.padding, self.dilation)
        self.outliers = outlier_channels(self._normed(x, cdim).movedim(cdim, -1), self.config.atom_outliers)
        return self.outliers

    @property
    def macs_per_position(self) -> int:
        """Multiply-accumulates per output position: out_channels * in_channels / groups * prod(kernel_size)."""
        return self.out_channels * (self.in_channels // self.groups) * math.prod(self.kernel_size)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, config={self.config.label}"

    @classmethod
    def from_conv(cls, conv: nn.Module, quant: "str | QuantConfig | dict | None" = "bitnet-b1.58",
                  norm: bool | None = None, **deprecated):
        """A BitConv that takes over `conv`'s weight and bias Parameters (the same objects: tied weights
        stay tied, nothing is re-initialized or copied), with its stride, padding, dilation, groups and
        padding mode."""
        quant = quant_argument(quant, deprecated, f"{cls.__name__}.from_conv")
        if not isinstance(conv, cls._base):
            raise ValueError(f"conv: expected an nn.{cls._base.__name__}, got {type(conv).__name__}")
        w = conv.weight
        # Built on the meta device: its own weight would be thrown away at once.
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                    conv.groups, False, conv.padding_mode, device="meta", quant=quant, norm=norm)
        layer.weight = w
        layer.bias = conv.bias
        if layer.norm is not None:
            layer.norm = nn.RMSNorm(conv.in_channels, eps=1e-6, device=w.device, dtype=w.dtype)
        return layer


class BitConv1d(_BitConv, nn.Conv1d):
    """nn.Conv1d with quantized weights and activations in the forward pass (see the module docstring).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode,
            device, dtype: as nn.Conv1d (bias defaults to False, as BitLinear's).
        quant: a preset name (`fp32`, `paper-1bit`, `bitnet`, `bitnet-b1.58`, `xnor`, `atom-w4a4`), a
            QuantConfig, or a dict of its fields (`config=` is its deprecated name); the resolved
            QuantConfig is the layer's `config`.
        norm: an RMSNorm (learnable gain) over the channels of each position before the activation
            quantizer; defaults to the config's `norm`.
    """

    _dims, _base = 1, nn.Conv1d


class BitConv2d(_BitConv, nn.Conv2d):
    """nn.Conv2d with quantized weights and activations in the forward pass (see the module docstring).

    Args: as BitConv1d, with nn.Conv2d's (int or (h, w)) kernel_size, stride, padding and dilation.
    """

    _dims, _base = 2, nn.Conv2d


BIT_CONVS = (BitConv1d, BitConv2d)

__all__ = ["BIT_CONVS", "BitConv1d", "BitConv2d", "check_conv_args", "check_conv_input", "pad_amounts", "release_buffers"]
