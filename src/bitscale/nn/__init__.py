"""Modules: BitLinear (the drop-in nn.Linear), `quantize_` to swap layers in place, and `summary`."""

from .bitlinear import BitLinear
from .quantize import quantize_
from .summary import LayerSummary, ModelSummary, summary
from .packed import PackedBitLinear, load_packed_model, pack, save_packed_model

__all__ = ["BitLinear", "LayerSummary", "ModelSummary", "quantize_", "summary"]
__all__ += ["PackedBitLinear", "load_packed_model", "pack", "save_packed_model"]
