"""`quantize_(model, quant)`: swap a model's nn.Linear / nn.Conv1d / nn.Conv2d layers for BitLinear /
BitConv1d / BitConv2d in place, keeping their weights.

This is the torchao-style entry point (`quantize_(model, quant)` mutates and returns the model). The
swapped layers take over the original weight and bias Parameters (tied weights stay tied), so a
pretrained model stays pretrained and `quantize_(model, "fp32")` leaves its outputs unchanged. (Several public BitLinear replacements build the
new layer with a fresh initialization and silently discard the trained weights.)
"""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

from ..quant import QuantConfig, resolve_config
from .bitconv import BIT_CONVS, BitConv1d, BitConv2d
from .bitlinear import BitLinear, quant_argument

# What quantize_ swaps, and for what: the first matching class of each pair.
_SWAPS = ((nn.Linear, BitLinear.from_linear), (nn.Conv1d, BitConv1d.from_conv), (nn.Conv2d, BitConv2d.from_conv))
_SWAPPABLE = tuple(base for base, _ in _SWAPS)
_QUANTIZED = (BitLinear, *BIT_CONVS)


def quantize_(
    model: nn.Module,
    quant: "str | QuantConfig | dict | None" = "bitnet-b1.58",
    filter_fn: Callable[[nn.Module, str], bool] | None = None,
    **deprecated,
) -> nn.Module:
    """Replace every nn.Linear, nn.Conv1d and nn.Conv2d in `model` (including the model itself) by a
    BitLinear, BitConv1d or BitConv2d with `quant`, taking over its Parameters.

    Args:
        model: any module; modified in place and returned.
        quant: a preset name, QuantConfig or dict of its fields (`config=` is its deprecated name).
        filter_fn: `filter_fn(module, fully_qualified_name) -> bool` selects which linear and conv layers
            to swap (default: all). Layers that are already BitLinear / BitConv get the new config,
            keeping their norm. A layer used in several places is swapped once and stays shared.
    """
    config = resolve_config(quant_argument(quant, deprecated, "quantize_"))
    swapped: dict[int, nn.Module] = {}  # a layer used in two places stays one layer

    def convert(module: nn.Module, name: str) -> nn.Module:
        if id(module) in swapped:
            return swapped[id(module)]
        if isinstance(module, _SWAPPABLE) and (filter_fn is None or filter_fn(module, name)):
            if isinstance(module, _QUANTIZED):
                module.config = config
                new = module
            else:
                new = next(swap for base, swap in _SWAPS if isinstance(module, base))(module, config)
            swapped[id(module)] = new
            return new
        for child_name, child in list(module._modules.items()):  # named_children() would skip repeats
            new = convert(child, f"{name}.{child_name}" if name else child_name)
            if new is not child:
                setattr(module, child_name, new)
        return module

    return convert(model, "")


def dequantize_(model: nn.Module) -> nn.Module:
    """In place, the model for plain dense inference: every BitLinear / BitConv holds its dequantized
    weight Q(W) and multiplies with F.linear / F.conv (its RMSNorm kept, activations not quantized).
    Returns it in eval mode."""
    import torch

    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, _QUANTIZED):
                layer.weight.copy_(layer.quantized_weight())
    return quantize_(model, "fp32").eval()


def dequantized_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` for plain dense inference, the baseline a packed model is measured against
    (`dequantize_` on a deep copy). Cast it (`.to(torch.bfloat16)`) for a bf16 baseline."""
    import copy

    return dequantize_(copy.deepcopy(model))
