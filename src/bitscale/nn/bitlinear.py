"""BitLinear: a drop-in nn.Linear that trains low-bit weights and activations with straight-through estimators.

Forward pass (BitNet, arXiv 2310.11453; BitNet b1.58, arXiv 2402.17764):

    x_n = RMSNorm(x)                  (optional, in-layer, as in Microsoft's b1.58 training recipe)
    x_q = Q_a(x_n)                    (activation quantizer, STE `act_ste`)
    W_q = Q_w(W)                      (weight quantizer, STE `ste`)
    y   = x_q W_q^T + b

The latent full-precision weight W is what the optimizer updates; W_q is recomputed every forward.
With the `fp32` preset (and no norm) the forward is exactly F.linear(x, W, b): the full-precision twin.

Gradients: dL/dx_n = STE_a(x_n) * (dL/dy W_q), dL/dW = STE_w(W) * (dL/dy^T x_q). With identity STEs this
is the "detach trick" of the reference code, with the same values, computed without its extra allocations.
"""

from __future__ import annotations

import warnings
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..quant import (
    QuantConfig,
    fake_quantize_act,
    fake_quantize_weight,
    outlier_channels,
    resolve_config,
    straight_through,
)


# Large inputs are quantized and multiplied in blocks of about this many elements (8 MiB at fp32), so
# that Q_a(x) is never held whole: fresh multi-MiB tensors cost page faults on every step on a CPU.
# The default of `BitLinear.block_elements`; None there turns blocking off.
BLOCK_ELEMENTS = 1 << 21


class _BlockQuantizedLinear(torch.autograd.Function):
    """y = Q_a(x) W_q^T + b with Q_a applied to blocks of rows (Q_a per token, identity STE).

    Backward: dL/dx = dL/dy W_q; dL/dW_q = sum over blocks of dL/dy_b^T Q_a(x_b), Q_a(x_b) recomputed;
    dL/db = sum of dL/dy over rows. It saves x instead of Q_a(x), so quantization-aware training holds no
    more activations than nn.Linear. The forward values equal the unblocked F.linear(Q_a(x), W_q, b).
    """

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, quantize, block: int) -> Tensor:
        rows = x.reshape(-1, x.shape[-1])
        out = rows.new_empty(rows.shape[0], weight.shape[0])
        for start in range(0, rows.shape[0], block):
            x_q = quantize(rows[start : start + block])
            if bias is None:
                torch.mm(x_q, weight.t(), out=out[start : start + block])
            else:
                torch.addmm(bias, x_q, weight.t(), out=out[start : start + block])
        ctx.save_for_backward(x, weight)
        ctx.quantize, ctx.block, ctx.has_bias = quantize, block, bias is not None
        return out.reshape(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, weight = ctx.saved_tensors
        g = grad.reshape(-1, grad.shape[-1])
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = (g @ weight).reshape(x.shape)
        if ctx.needs_input_grad[1]:
            rows = x.reshape(-1, x.shape[-1])
            grad_w = torch.zeros_like(weight)
            for start in range(0, rows.shape[0], ctx.block):
                grad_w.addmm_(g[start : start + ctx.block].t(), ctx.quantize(rows[start : start + ctx.block]))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g.sum(0)
        return grad_x, grad_w, grad_b, None, None


def quant_argument(quant, deprecated: dict, owner: str):
    """The quantizer argument `quant`, or the value of the deprecated `config=` spelling of it (with a
    DeprecationWarning; it goes in the release after 0.x). Any other unexpected keyword is a TypeError."""
    unknown = set(deprecated) - {"config"}
    if unknown:
        raise TypeError(f"{owner}: unexpected keyword argument {sorted(unknown)[0]!r}")
    if "config" in deprecated:
        warnings.warn(f"{owner}: 'config=' is deprecated; the quantizer argument is 'quant='",
                      DeprecationWarning, stacklevel=3)
        return deprecated["config"]
    return quant


class BitLinear(nn.Linear):
    """nn.Linear with quantized weights and activations in the forward pass.

    Args:
        in_features, out_features, bias, device, dtype: as nn.Linear (note bias defaults to False, as in
            BitNet's bias-free layers).
        quant: a preset name (`fp32`, `paper-1bit`, `bitnet`, `bitnet-b1.58`, `xnor`, `atom-w4a4`),
            a QuantConfig, or a dict of QuantConfig fields (`config=` is its deprecated name). The
            resolved QuantConfig is the layer's `config` attribute.
        norm: put an RMSNorm (with learnable gain) before the activation quantizer; defaults to the
            config's `norm` field.
    """

    block_elements: int | None = BLOCK_ELEMENTS

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        quant: "str | QuantConfig | dict | None" = "bitnet-b1.58",
        norm: bool | None = None,
        device=None,
        dtype=None,
        **deprecated,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.config = resolve_config(quant_argument(quant, deprecated, "BitLinear"))
        use_norm = self.config.norm if norm is None else norm
        self.norm = nn.RMSNorm(in_features, eps=1e-6, device=device, dtype=dtype) if use_norm else None
        # Atom's outlier channels, fixed once calibrated (see `calibrate_outliers`); None = chosen per batch.
        self.register_buffer("outliers", None)

    def _weight_value(self, w: Tensor) -> Tensor:
        c = self.config
        return fake_quantize_weight(w, c.weight, c.granularity, c.group_size, c.center, c.eps)

    def _act_value(self, x: Tensor) -> Tensor:
        c = self.config
        return fake_quantize_act(x, c.act, c.act_group_size, c.atom_outliers, self.outliers, c.eps)

    def quantized_weight(self) -> Tensor:
        """Q_w(W) with the weight STE attached (the tensor the forward pass multiplies by)."""
        c = self.config
        if c.weight == "fp32":
            return self.weight
        return straight_through(self.weight, self._weight_value, c.ste, c.ste_clip)

    def _normed(self, x: Tensor) -> Tensor:
        if self.norm is None:
            return x
        # Under autocast x can arrive in bf16 (a matmul's output); normalize and quantize it in the
        # norm's wider dtype, as nn.RMSNorm's fused kernel wants matching dtypes.
        dtype = self.norm.weight.dtype
        return self.norm(x.to(dtype) if x.dtype.itemsize < dtype.itemsize else x)

    def quantized_input(self, x: Tensor) -> Tensor:
        """Q_a(RMSNorm(x)) with the activation STE attached."""
        c = self.config
        x = self._normed(x)
        if c.act == "fp32":
            return x
        return straight_through(x, self._act_value, c.act_ste, c.ste_clip)

    def _block_rows(self, x: Tensor) -> int | None:
        """Rows per block when `x` takes the blocked path, else None. Blocking needs a per-token
        activation quantizer with the identity STE, and pays off from two blocks on."""
        c = self.config
        if self.block_elements is None or c.act == "fp32" or c.act_ste != "identity":
            return None
        if c.act == "atom" and self.outliers is None:  # outliers chosen over the whole batch
            return None
        block = max(1, self.block_elements // max(self.in_features, 1))
        return block if x.numel() // max(self.in_features, 1) >= 2 * block else None

    def forward(self, x: Tensor) -> Tensor:
        block = self._block_rows(x)
        if block is not None:
            x_n = self._normed(x)
            quantize_rows = partial(straight_through, quantize=self._act_value)  # identity STE's value
            return _BlockQuantizedLinear.apply(x_n, self.quantized_weight(), self.bias, quantize_rows, block)
        return F.linear(self.quantized_input(x), self.quantized_weight(), self.bias)

    @torch.no_grad()
    def calibrate_outliers(self, x: Tensor) -> Tensor:
        """Fix Atom's int8 outlier channels from calibration inputs `x` (largest max|x| per channel)."""
        if self.norm is not None:
            x = self.norm(x)
        self.outliers = outlier_channels(x, self.config.atom_outliers)
        return self.outliers

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, config={self.config.label}"

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, quant: "str | QuantConfig | dict | None" = "bitnet-b1.58",
        norm: bool | None = None, **deprecated
    ) -> "BitLinear":
        """A BitLinear that takes over `linear`'s weight and bias Parameters (the same objects, so tied
        weights stay tied and nothing is re-initialized or copied)."""
        quant = quant_argument(quant, deprecated, "BitLinear.from_linear")
        w = linear.weight
        # Built on the meta device: its own weight would be thrown away at once.
        layer = cls(linear.in_features, linear.out_features, bias=False, quant=quant, norm=norm, device="meta")
        layer.weight = w
        layer.bias = linear.bias
        if layer.norm is not None:
            layer.norm = nn.RMSNorm(linear.in_features, eps=1e-6, device=w.device, dtype=w.dtype)
        return layer
