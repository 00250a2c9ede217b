"""A small 1-D convolutional classifier, the CNN of MNIST-1D (Greydanus 2020, arXiv 2011.14439) built
from BitConv1d layers:

    x (n, length) -> (n, 1, length)
      -> [BitConv1d(c -> width, kernel_size, stride, padding = kernel_size // 2) -> sigma] * depth
      -> flatten (width * L_depth) -> head (a BitLinear to n_classes) -> logits

with L_0 = length and L_k = floor((L_{k-1} + 2 * padding - kernel_size) / stride) + 1 positions after
layer k. The MNIST-1D paper's CNN is width 25, depth 3, kernel 5, stride 2 (about 94% test accuracy).

As XNOR-Net (arXiv 1603.05279) and BitNet keep them, the first convolution (one input channel) and the
head stay full precision unless `quantize_ends=True`; the other convolutions use `quant`.
"""

from __future__ import annotations

import torch.nn as nn
from torch import Tensor

from ..nn import BitConv1d, BitLinear
from ..quant import QuantConfig
from .activations import get_activation


def conv_lengths(length: int, depth: int, kernel_size: int, stride: int) -> list[int]:
    """Positions after each of the `depth` convolutions (padding kernel_size // 2); ValueError naming
    the field when a kernel is longer than its layer's input (the padding aside: such a kernel would
    mostly read zeros)."""
    padding, lengths = kernel_size // 2, []
    for layer in range(depth):
        if kernel_size > length:
            raise ValueError(f"kernel_size: {kernel_size} is larger than the input of convolution {layer + 1} "
                             f"({length} positions)")
        length = (length + 2 * padding - kernel_size) // stride + 1
        lengths.append(length)
    return lengths


class CNN1d(nn.Module):
    """The 1-D CNN of the module docstring; `forward` takes (n, length) or (n, 1, length) inputs."""

    def __init__(
        self,
        length: int,
        width: int,
        depth: int = 3,
        n_classes: int = 10,
        kernel_size: int = 5,
        stride: int = 2,
        groups: int = 1,
        quant: "str | QuantConfig | dict | None" = "bitnet-b1.58",
        activation: str = "relu",
        quantize_ends: bool = False,
        bias: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        for name, value in (("length", length), ("width", width), ("depth", depth), ("n_classes", n_classes),
                            ("kernel_size", kernel_size), ("stride", stride), ("groups", groups)):
            if value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value}")
        if width % groups:
            raise ValueError(f"width: {width} channels are not divisible by groups = {groups}")
        self.lengths = conv_lengths(length, depth, kernel_size, stride)
        self.length, self.width, self.activation = length, width, activation
        self.sigma = get_activation(activation)
        end_quant = quant if quantize_ends else "fp32"
        layers = []
        for k in range(depth):
            first = k == 0
            layers.append(BitConv1d(
                1 if first else width, width, kernel_size, stride=stride, padding=kernel_size // 2,
                groups=1 if first else groups, bias=bias, quant=end_quant if first else quant,
                device=device, dtype=dtype,
            ))
        self.convs = nn.ModuleList(layers)
        self.head = BitLinear(width * self.lengths[-1], n_classes, bias=bias, quant=end_quant, device=device, dtype=dtype)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim == 2:
            x = x.unsqueeze(1)
        for conv in self.convs:
            x = self.sigma(conv(x))
        return self.head(x.flatten(1))

    def macs_per_sample(self) -> int:
        """Multiply-accumulates of one example's forward pass: out * in/groups * kernel per output position
        of each convolution, plus the head's in * out."""
        total = 0
        for conv, positions in zip(self.convs, self.lengths):
            total += conv.out_channels * (conv.in_channels // conv.groups) * conv.kernel_size[0] * positions
        return total + self.head.in_features * self.head.out_features
