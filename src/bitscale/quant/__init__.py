"""Tensor-level quantization math: weight and activation quantizers, straight-through estimators, and
the `QuantConfig` registry of named presets. No nn.Module lives here."""

from .activations import (
    ACT_SCHEMES,
    fake_quantize_act,
    outlier_channels,
    quantize_act_atom,
    quantize_act_binary,
    quantize_act_int4,
    quantize_act_int8,
)
from .config import PRESETS, QuantConfig, preset_name, preset_names, resolve_config
from .ste import STE_NAMES, ste_grad, straight_through
from .weights import GRANULARITIES, PRECISION_BITS, WEIGHT_SCHEMES, QuantizedWeight, fake_quantize_weight, quantize_weight

__all__ = [
    "ACT_SCHEMES", "GRANULARITIES", "PRECISION_BITS", "PRESETS", "STE_NAMES", "WEIGHT_SCHEMES",
    "QuantConfig", "QuantizedWeight", "fake_quantize_act", "fake_quantize_weight", "outlier_channels",
    "preset_name", "preset_names", "quantize_act_atom", "quantize_act_binary", "quantize_act_int4",
    "quantize_act_int8", "quantize_weight", "resolve_config", "ste_grad", "straight_through",
]
