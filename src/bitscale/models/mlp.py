"""A multilayer perceptron built from BitLinear layers."""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from ..nn import BitLinear
from ..nn.bitlinear import quant_argument
from ..quant import QuantConfig
from .activations import get_activation


class MLP(nn.Module):
    """x -> [BitLinear(quant) -> sigma] * len(widths) -> head -> y.

    Hidden layers are BitLinear with `quant` (`config=` is its deprecated name); the output head stays full precision unless
    `quantize_head=True`, as low-bit recipes (BitNet, XNOR-Net) keep the first/last layers precise.
    The output is squeezed to shape (n,) when d_out == 1.
    """

    def __init__(
        self,
        d_in: int,
        widths: "list[int] | tuple[int, ...]",
        d_out: int = 1,
        quant: "str | QuantConfig | dict | None" = "bitnet-b1.58",
        activation: str = "relu",
        bias: bool = True,
        quantize_head: bool = False,
        device=None,
        dtype=None,
        **deprecated,
    ) -> None:
        super().__init__()
        config = quant_argument(quant, deprecated, "MLP")
        self.sigma = get_activation(activation)
        if not widths or any(w < 1 for w in widths):
            raise ValueError(f"widths: expected a non-empty list of positive integers, got {list(widths)}")
        self.activation = activation
        dims = [d_in, *widths]
        self.layers = nn.ModuleList(
            BitLinear(i, o, bias=bias, quant=config, device=device, dtype=dtype) for i, o in zip(dims, dims[1:])
        )
        head_config = config if quantize_head else "fp32"
        self.head = BitLinear(dims[-1], d_out, bias=bias, quant=head_config, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = self.sigma(layer(x))
        y = self.head(x)
        return y.squeeze(-1) if y.shape[-1] == 1 else y
