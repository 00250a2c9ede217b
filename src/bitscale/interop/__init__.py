"""Interoperability with other libraries. `bitscale.interop.hf`: Hugging Face transformers (BitNet layout)."""

from .hf import export_hf, export_hf_run, load_hf_decoder, quantize_hf_

__all__ = ["export_hf", "export_hf_run", "load_hf_decoder", "quantize_hf_"]
