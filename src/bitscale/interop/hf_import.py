"""The import direction: `load_hf_decoder` reads a transformers BitNet Llama directory (as written by
`export_hf`) back into a bitscale `Decoder`, with safetensors and json only (no transformers needed); and
`quantize_hf_` turns the linear layers of a transformers Llama-family model into bitscale BitLinear."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
from torch import Tensor

from ..models.decoder import Decoder, DecoderConfig, rope_tables
from ..nn.bitlinear import quant_argument
from ..nn.quantize import quantize_
from ..quant import QuantConfig, resolve_config
from ..quant.weights import weight_codes
from .hf_layout import (
    BLOCK_GAIN,
    GAIN_SHIFT,
    HF_ACT_EPS,
    INNER_EPS,
    LINEAR_NAMES,
    NORM_EPS,
    RESIDUAL_SHIFT,
    ROPE_ROTATED,
    SHIFTED_GAINS,
    SHIFTED_SCALES,
    rope_permutation,
    unpack_ternary,
)

PRESET = "bitnet-b1.58"


def latent_from_codes(codes: Tensor, weight_scale: float, eps: float = HF_ACT_EPS) -> Tensor:
    """A latent fp32 weight whose absmean ternary quantization gives back exactly `codes` and, bit for
    bit where floating point allows, the inverse scale `weight_scale`.

    code * s (s = 1 / weight_scale) would not do: its absmean is s times the fraction p of nonzero codes,
    not s. W = code * s / p has absmean s and W / s = code / p, which rounds and clips back to code. The
    float32 mean of |W| then misses 1 / weight_scale by a few ulps; it is a non-decreasing function of any
    one |W_j|, so bisecting the magnitude of one nonzero weight (within +-25%, where it still rounds to its
    code) finds a W whose 1 / mean|W| is weight_scale exactly.
    """
    codes = codes.to(torch.float32)
    nonzero = codes.ne(0).nonzero()
    if len(nonzero) == 0:
        return torch.zeros_like(codes)
    target = torch.tensor(weight_scale, dtype=torch.float32)
    magnitude = float((1.0 / target) * (codes.numel() / len(nonzero)))
    w = codes * magnitude
    j = tuple(nonzero[0].tolist())
    sign = float(codes[j])

    def inverse_with(value: float) -> Tensor:
        w[j] = sign * value
        return weight_codes(w, "ternary", "tensor", None, True, eps)[1]

    lo, hi = 0.75 * magnitude, 1.25 * magnitude  # inverse_with is non-increasing in the value
    if inverse_with(magnitude) != target:
        for _ in range(80):
            mid = (lo + hi) / 2
            inv = inverse_with(mid)
            if inv == target:
                break
            lo, hi = (mid, hi) if inv > target else (lo, mid)
        else:
            inverse_with(magnitude)  # not reachable exactly: keep the plain magnitude
    return w


def _read_config(hf_dir: Path) -> dict:
    path = hf_dir / "config.json"
    if not path.is_file():
        raise ValueError(f"{hf_dir}: missing config.json (not a Hugging Face model directory)")
    return json.loads(path.read_text())


def _expect(data: dict, key: str, expected, where: str = "config.json") -> None:
    value = data.get(key)
    if value != expected:
        raise ValueError(f"{where}: {key} is {value!r}; a bitscale Decoder needs {expected!r}")


def decoder_config_from_hf(data: dict) -> DecoderConfig:
    """The DecoderConfig a transformers BitNet Llama config.json describes; ValueError if none can."""
    _expect(data, "model_type", "llama")
    q = data.get("quantization_config") or {}
    _expect(q, "quant_method", "bitnet", "quantization_config")
    _expect(q, "linear_class", "bitlinear", "quantization_config")
    _expect(q, "quantization_mode", "offline", "quantization_config")
    _expect(data, "hidden_act", "silu")
    _expect(data, "num_key_value_heads", data.get("num_attention_heads"))
    for key in ("attention_bias", "mlp_bias"):
        if data.get(key):
            raise ValueError(f"config.json: {key} is true; bitscale's BitLinear layers have no bias")
    if data.get("rms_norm_eps") != NORM_EPS:
        raise ValueError(f"config.json: rms_norm_eps is {data.get('rms_norm_eps')!r}; bitscale's RMSNorm uses {NORM_EPS}")
    if q.get("use_rms_norm") and q.get("rms_norm_eps") != INNER_EPS:
        raise ValueError(
            f"quantization_config: rms_norm_eps is {q.get('rms_norm_eps')!r}; bitscale's recipe layout (see "
            f"docs/interop.md) uses {INNER_EPS}"
        )
    rope = data.get("rope_parameters") or {"rope_type": "default", "rope_theta": data.get("rope_theta", 10000.0)}
    if rope.get("rope_type", "default") != "default":
        raise ValueError(f"config.json: rope_type is {rope.get('rope_type')!r}; bitscale's RoPE is 'default'")
    d, h = data["hidden_size"], data["num_attention_heads"]
    if data.get("head_dim") not in (None, d // h):
        raise ValueError(f"config.json: head_dim is {data['head_dim']}; a bitscale Decoder needs hidden_size / heads = {d // h}")
    fields = dict(
        vocab_size=data["vocab_size"],
        n_layer=data["num_hidden_layers"],
        n_head=h,
        d_model=d,
        block_size=data["max_position_embeddings"],
        mlp="swiglu",
        quant=PRESET,
        norm_in_bitlinear=bool(q.get("use_rms_norm", False)),
        tie_weights=bool(data.get("tie_word_embeddings", False)),
        rope_base=float(rope["rope_theta"]),
    )
    cfg = DecoderConfig(**fields)
    if cfg.ff_dim != data["intermediate_size"]:  # keep d_ff=None when it is the default width
        cfg = DecoderConfig(**fields, d_ff=data["intermediate_size"])
    if cfg.norm_in_bitlinear == DecoderConfig(**{**fields, "norm_in_bitlinear": None}).recipe:
        cfg = DecoderConfig(**{**cfg.model_dump(), "norm_in_bitlinear": None})
    return cfg


def load_hf_decoder(hf_dir: "str | Path") -> Decoder:
    """A bitscale Decoder (eval mode, CPU, fp32) from a transformers BitNet Llama directory with one
    model.safetensors. Packed codes are unpacked (q/k rows un-permuted for RoPE) and become latent
    weights whose re-quantization gives the same codes and scales (see `latent_from_codes`), so the
    Decoder's logits equal those of the model that was exported."""
    from safetensors.torch import load_file

    hf_dir = Path(hf_dir)
    if not hf_dir.is_dir():
        raise ValueError(f"{hf_dir}: no such directory")
    cfg = decoder_config_from_hf(_read_config(hf_dir))
    weights = hf_dir / "model.safetensors"
    if not weights.is_file():
        raise ValueError(f"{hf_dir}: missing model.safetensors (sharded checkpoints are not supported)")
    sd = load_file(str(weights))
    take = lambda key: sd.pop(key).to(torch.float32)  # noqa: E731
    inverse = torch.argsort(rope_permutation(cfg.n_head, cfg.head_dim))
    ours: dict[str, Tensor] = {"tok_emb.weight": take("model.embed_tokens.weight")}
    for i in range(cfg.n_layer):
        prefix = f"model.layers.{i}."
        for name, hf_name in LINEAR_NAMES:
            codes = unpack_ternary(sd.pop(prefix + hf_name + ".weight"))
            if hf_name in ROPE_ROTATED:
                codes = codes[inverse]
            scale = sd.pop(prefix + hf_name + ".weight_scale").to(torch.float32).reshape(-1)[:1]
            if cfg.recipe and hf_name in SHIFTED_SCALES:
                scale = scale * RESIDUAL_SHIFT  # undo the export's exact power-of-two shift
            ours[f"blocks.{i}.{name}.weight"] = latent_from_codes(codes, float(scale), cfg.quant_config.eps)
            if cfg.recipe:
                gain = take(prefix + hf_name + ".rms_norm.weight")
                ours[f"blocks.{i}.{name}.norm.weight"] = gain / GAIN_SHIFT if hf_name in SHIFTED_GAINS else gain
        for hf_norm, our_norm in (("input_layernorm", "attn_norm"), ("post_attention_layernorm", "mlp_norm")):
            gain = take(prefix + hf_norm + ".weight")
            if not cfg.recipe:
                ours[f"blocks.{i}.{our_norm}.weight"] = gain
            elif not bool((gain == torch.tensor(BLOCK_GAIN, dtype=torch.float32)).all()):
                raise ValueError(
                    f"{weights.name}: {prefix}{hf_norm}.weight is not {BLOCK_GAIN} everywhere: not bitscale's recipe "
                    "layout (a recipe-mode Decoder has no block-level norm)"
                )
    ours["norm.weight"] = take("model.norm.weight")
    ours["head.weight"] = ours["tok_emb.weight"] if cfg.tie_weights else take("lm_head.weight")
    if sd:
        raise ValueError(f"{weights.name}: unexpected tensors {', '.join(sorted(sd)[:3])}")
    model = Decoder(cfg, device="meta")  # no init: every tensor is assigned below
    model.load_state_dict(ours, strict=True, assign=True)
    if cfg.tie_weights:
        model.head.weight = model.tok_emb.weight
    model.rope_cos, model.rope_sin = rope_tables(cfg.block_size, cfg.head_dim, cfg.rope_base, device="cpu")
    return model.eval()


def _in_decoder_layers(module: nn.Module, name: str) -> bool:
    return ".layers." in f".{name}" and not name.endswith("lm_head")


def quantize_hf_(
    model: nn.Module,
    quant: "str | QuantConfig | dict | None" = PRESET,
    filter_fn: "Callable[[nn.Module, str], bool] | None" = None,
    *,
    norm: bool = False,
    **deprecated,
) -> nn.Module:
    """`quantize_` for a transformers Llama-family model: every nn.Linear inside the decoder layers
    (names containing `.layers.`) becomes a BitLinear that keeps the same weight Parameter; `lm_head`
    and the embeddings stay full precision. `filter_fn(module, name)` replaces that default selection.
    `norm=True` puts an RMSNorm (gain 1, eps 1e-6) inside each converted layer, as the b1.58 recipe
    does; the model's own block norms stay. Returns the model (modified in place)."""
    qc = resolve_config(quant_argument(quant, deprecated, "quantize_hf_"))
    if norm != qc.norm:
        qc = QuantConfig(**{**qc.model_dump(), "norm": norm})
    chosen = filter_fn or _in_decoder_layers
    seen: list[str] = []

    def select(module: nn.Module, name: str) -> bool:
        keep = bool(chosen(module, name))
        if keep:
            seen.append(name)
        return keep

    quantize_(model, qc, select)
    if not seen:
        raise ValueError("quantize_hf_: no nn.Linear matched (expected layers under '.layers.', e.g. model.layers.0.mlp.up_proj)")
    return model
