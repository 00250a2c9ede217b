"""Modules: BitLinear (the drop-in nn.Linear), BitConv1d / BitConv2d (the drop-in nn.Conv1d / nn.Conv2d),
`quantize_` to swap layers in place, and `summary`."""

from .bitlinear import BitLinear
from .bitconv import BitConv1d, BitConv2d
from .quantize import quantize_
from .summary import LayerSummary, ModelSummary, summary
from .packed import PackedBitConv, PackedBitLinear, load_packed_model, pack, save_packed_model

__all__ = ["BitConv1d", "BitConv2d", "BitLinear", "LayerSummary", "ModelSummary", "quantize_", "summary"]
__all__ += ["PackedBitConv", "PackedBitLinear", "load_packed_model", "pack", "save_packed_model"]
