"""Hugging Face interop (the `bitscale[hf]` extra): export a BitNet b1.58 Decoder to transformers' BitNet
Llama layout, read such a directory back, and quantize a transformers model in place.

    export_hf(model, out_dir, tokenizer=None) -> Path
    export_hf_run(run_dir, out_dir) -> Path
    load_hf_decoder(hf_dir) -> Decoder
    quantize_hf_(model, quant="bitnet-b1.58", filter_fn=None, *, norm=False) -> model

transformers is imported only by `export_hf` (for its config classes); the import direction needs
safetensors alone. The layout and the measured differences are described in docs/interop.md.
"""

from .hf_export import export_hf, export_hf_run, hf_config_dict, hf_state_dict, ternary_codes_and_scale
from .hf_import import decoder_config_from_hf, latent_from_codes, load_hf_decoder, quantize_hf_
from .hf_layout import check_representable, pack_ternary, rope_permutation, unpack_ternary

__all__ = [
    "check_representable", "decoder_config_from_hf", "export_hf", "export_hf_run", "hf_config_dict",
    "hf_state_dict", "latent_from_codes", "load_hf_decoder", "pack_ternary", "quantize_hf_",
    "rope_permutation", "ternary_codes_and_scale", "unpack_ternary",
]
