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
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn as nn
from torch import Tensor
from torch.nn.modules.utils import _pair, _single

from ..quant import QuantConfig, fake_quantize_act, fake_quantize_weight, outlier_channels, resolve_config, straight_through
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


class _BitConv:
    """What BitConv1d and BitConv2d share (they differ in their nn.Conv base only)."""

    _dims: int
    _base: type

    def _init_quant(self, quant, norm, deprecated, device, dtype) -> None:
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

    def forward(self, x: Tensor) -> Tensor:
        check_conv_input(x, self._dims, self.in_channels, self.kernel_size, self.padding, self.dilation)
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

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = False, padding_mode: str = "zeros", device=None, dtype=None, *,
                 quant: "str | QuantConfig | dict | None" = "bitnet-b1.58", norm: bool | None = None,
                 **deprecated) -> None:
        check_conv_args(1, in_channels, out_channels, kernel_size, stride, padding, dilation,
                        groups, padding_mode)
        nn.Conv1d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                           padding_mode, device, dtype)
        self._init_quant(quant, norm, deprecated, device, dtype)


class BitConv2d(_BitConv, nn.Conv2d):
    """nn.Conv2d with quantized weights and activations in the forward pass (see the module docstring).

    Args: as BitConv1d, with nn.Conv2d's (int or (h, w)) kernel_size, stride, padding and dilation.
    """

    _dims, _base = 2, nn.Conv2d

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 groups: int = 1, bias: bool = False, padding_mode: str = "zeros", device=None, dtype=None, *,
                 quant: "str | QuantConfig | dict | None" = "bitnet-b1.58", norm: bool | None = None,
                 **deprecated) -> None:
        check_conv_args(2, in_channels, out_channels, kernel_size, stride, padding, dilation,
                        groups, padding_mode)
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                           padding_mode, device, dtype)
        self._init_quant(quant, norm, deprecated, device, dtype)


BIT_CONVS = (BitConv1d, BitConv2d)

__all__ = ["BIT_CONVS", "BitConv1d", "BitConv2d", "check_conv_args", "check_conv_input", "pad_amounts"]
