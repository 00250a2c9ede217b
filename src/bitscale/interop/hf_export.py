"""Export a bitscale `Decoder` (BitNet b1.58) to a Hugging Face directory that
`transformers.AutoModelForCausalLM.from_pretrained` loads as a `LlamaForCausalLM` with transformers'
BitNet quantization (`quant_method: "bitnet"`, `linear_class: "bitlinear"`, offline packed weights).

Mapping (our name -> HF name, per block i; see docs/interop.md):

    tok_emb.weight                     -> model.embed_tokens.weight           (full precision)
    blocks.i.attn.{q,k,v,o}_proj       -> model.layers.i.self_attn.{q,k,v,o}_proj
    blocks.i.mlp.{gate,up,down}_proj   -> model.layers.i.mlp.{gate,up,down}_proj
        .weight      -> .weight        (ternary codes packed 4 per uint8; q/k rows permuted for RoPE)
                        .weight_scale  (1 / absmean scale: transformers divides by it)
        .norm.weight -> .rms_norm.weight (recipe mode: `use_rms_norm: true`)
    blocks.i.attn_norm / mlp_norm      -> input_layernorm / post_attention_layernorm (twin mode)

Recipe mode has no block-level norms but Llama does: it is exported with the exact reparametrization
described in hf_layout (tiny block-norm gains, in-BitLinear eps 1.048576, gains of q,k,v,gate,up times
2^14, weight_scale of v_proj and up_proj divided by 2^10), so that transformers computes our forward.
    norm.weight                        -> model.norm.weight
    head.weight                        -> lm_head.weight (full precision; absent when tied)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..atomic import atomic_write, atomic_write_json
from ..models.decoder import Decoder
from ..quant.weights import weight_codes
from .hf_layout import (
    BLOCK_GAIN,
    GAIN_SHIFT,
    INNER_EPS,
    LINEAR_NAMES,
    NORM_EPS,
    RESIDUAL_SHIFT,
    ROPE_ROTATED,
    SHIFTED_GAINS,
    SHIFTED_SCALES,
    check_representable,
    pack_ternary,
    rope_permutation,
)

WEIGHTS_NAME = "model.safetensors"


def _require_hf():
    try:
        import safetensors.torch  # noqa: F401
        import transformers
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError(f"the Hugging Face export needs transformers and safetensors: pip install 'bitscale[hf]' ({e})") from e
    return transformers


def _fp32(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", torch.float32).contiguous()


def ternary_codes_and_scale(weight: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 codes, fp32 weight_scale of shape (1,)) with exactly the arithmetic of our BitLinear:
    codes = RoundClip(W / gamma, -1, 1), weight_scale = 1 / gamma, so that codes / weight_scale is
    the fake-quantized weight our forward pass multiplies by (and transformers divides by weight_scale)."""
    codes, inv = weight_codes(weight.detach(), "ternary", "tensor", None, True, eps)
    return codes.to("cpu", torch.int8), inv.reshape(1).to("cpu", torch.float32)


def hf_state_dict(model: Decoder) -> dict[str, torch.Tensor]:
    """The tensors of the HF checkpoint, keyed by Llama parameter / buffer names."""
    cfg = model.cfg
    check_representable(cfg)
    eps = cfg.quant_config.eps
    perm = rope_permutation(cfg.n_head, cfg.head_dim)
    sd: dict[str, torch.Tensor] = {"model.embed_tokens.weight": _fp32(model.tok_emb.weight)}
    recipe = cfg.recipe
    for i, block in enumerate(model.blocks):
        prefix = f"model.layers.{i}."
        for ours, theirs in LINEAR_NAMES:
            layer = block.get_submodule(ours)
            codes, scale = ternary_codes_and_scale(layer.weight, eps)
            if theirs in ROPE_ROTATED:
                codes = codes[perm]
            if recipe and theirs in SHIFTED_SCALES:
                scale = scale / RESIDUAL_SHIFT  # exact: a power of two
            sd[prefix + theirs + ".weight"] = pack_ternary(codes)
            sd[prefix + theirs + ".weight_scale"] = scale
            if recipe:
                gain = _fp32(layer.norm.weight)
                sd[prefix + theirs + ".rms_norm.weight"] = gain * GAIN_SHIFT if theirs in SHIFTED_GAINS else gain
        for norm, theirs in ((block.attn_norm, "input_layernorm"), (block.mlp_norm, "post_attention_layernorm")):
            sd[prefix + theirs + ".weight"] = torch.full((cfg.d_model,), BLOCK_GAIN) if recipe else _fp32(norm.weight)
    sd["model.norm.weight"] = _fp32(model.norm.weight)
    if not cfg.tie_weights:
        sd["lm_head.weight"] = _fp32(model.head.weight)
    return sd


def hf_config_dict(model: Decoder, tokenizer=None) -> dict:
    """config.json: a LlamaConfig with transformers' BitNet quantization_config, plus a `bitscale` record."""
    transformers = _require_hf()
    cfg = model.cfg
    check_representable(cfg)
    quant = transformers.BitNetQuantConfig(
        modules_to_not_convert=["lm_head"],
        linear_class="bitlinear",
        quantization_mode="offline",
        use_rms_norm=cfg.recipe,
        rms_norm_eps=INNER_EPS if cfg.recipe else NORM_EPS,
    )
    llama = transformers.LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.ff_dim,
        num_hidden_layers=cfg.n_layer,
        num_attention_heads=cfg.n_head,
        num_key_value_heads=cfg.n_head,
        head_dim=cfg.head_dim,
        hidden_act="silu",
        max_position_embeddings=cfg.block_size,
        rms_norm_eps=NORM_EPS,
        rope_parameters={"rope_type": "default", "rope_theta": float(cfg.rope_base)},
        attention_bias=False,
        mlp_bias=False,
        tie_word_embeddings=cfg.tie_weights,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        architectures=["LlamaForCausalLM"],
        dtype="float32",
    )
    data = json.loads(llama.to_json_string(use_diff=False))
    data["quantization_config"] = quant.to_dict()
    data["bitscale"] = {
        "format": "bitscale-hf-bitnet",
        "decoder": cfg.model_dump(mode="json"),
        "tokenizer": _tokenizer_kind(tokenizer),
    }
    return data


def _tokenizer_kind(tokenizer) -> "str | None":
    if tokenizer is None:
        return None
    return "bpe" if hasattr(tokenizer, "to_json") else "byte"


def export_hf(model: Decoder, out_dir: "str | Path", tokenizer=None) -> Path:
    """Write config.json and model.safetensors (and, for a BPE tokenizer, tokenizer.json +
    tokenizer_config.json) to `out_dir`; returns it. Every file is written atomically.

    Raises ValueError (one line, naming the field) for a model transformers' BitNet Llama cannot
    represent: non-ternary weights, non-int8 activations, non per-tensor scales, a relu2 MLP, widths
    that are not multiples of 4. A byte tokenizer is not saved (ids are UTF-8 bytes; recorded in
    config.json under `bitscale.tokenizer`).
    """
    _require_hf()
    from safetensors.torch import save_file

    if not isinstance(model, Decoder):
        raise ValueError(f"model: expected a bitscale Decoder, got {type(model).__name__}")
    config = hf_config_dict(model, tokenizer)  # validates before anything is written
    tensors = hf_state_dict(model)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    if _tokenizer_kind(tokenizer) == "bpe":
        tokenizer.save(out_dir / "tokenizer.json")
        atomic_write_json(out_dir / "tokenizer_config.json", {"tokenizer_class": "PreTrainedTokenizerFast"})
    atomic_write_json(out_dir / "config.json", config)  # last: a directory with config.json is complete
    return out_dir


def export_hf_run(run_dir: "str | Path", out_dir: "str | Path") -> Path:
    """`export_hf` of the model and tokenizer saved in an LM run directory (see `bitscale.train.lm_files`)."""
    from ..train.lm_files import load_lm

    model, tokenizer, _ = load_lm(run_dir)
    return export_hf(model, out_dir, tokenizer)
