"""The import direction: `load_gguf_decoder` reads a GGUF file of llama.cpp's `bitnet` architecture (as
`write_gguf` writes it, or any file of that layout with one ternary scale per tensor) back into a bitscale
`Decoder` and its tokenizer, with the `gguf` package's reader and dequantizers.

Every check comes before the model is built from the data: the architecture, each tensor's presence,
type and shape against the metadata, codes in {-1, 0, 1} times one magnitude per tensor (a file whose
blocks carry different scales is refused: our layers hold one scale per tensor). Each failure is one
ValueError line naming the tensor or key.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError

from ..models.decoder import Decoder, DecoderConfig
from .gguf_export import DECODER_KEY, _require_gguf
from .gguf_layout import (ARCH, NORMS, PROJECTIONS, ROPE_ROTATED, TOKEN_UNUSED, byte_to_unicode,
                          byte_tokenizer_merges)
from .hf_import import latent_from_codes
from .hf_layout import rope_permutation


class GGUFError(ValueError):
    """A GGUF file that cannot be read as a bitscale decoder; the message is one line."""


def _field(reader, key: str, *, required: bool = True):
    field = reader.fields.get(key)
    if field is None:
        if required:
            raise GGUFError(f"{key}: missing from the file")
        return None
    return field.contents()


def _config(reader, path: Path) -> DecoderConfig:
    """The DecoderConfig: bitscale's own record when present (exact), else the llama.cpp hyperparameters
    with the bitnet-b1.58 recipe; either way checked against the hyperparameters llama.cpp reads."""
    arch = _field(reader, "general.architecture")
    if arch != ARCH:
        raise GGUFError(f"general.architecture: expected {ARCH!r} (llama.cpp's BitNet b1.58 graph), got {arch!r}")
    keys = {name: _field(reader, f"{ARCH}.{key}") for name, key in (
        ("block_size", "context_length"), ("d_model", "embedding_length"), ("n_layer", "block_count"),
        ("d_ff", "feed_forward_length"), ("n_head", "attention.head_count"))}
    kv_heads = _field(reader, f"{ARCH}.attention.head_count_kv", required=False)
    if kv_heads is not None and kv_heads != keys["n_head"]:
        raise GGUFError(f"{ARCH}.attention.head_count_kv: {kv_heads} (grouped-query attention) is not supported; "
                        f"expected {keys['n_head']}")
    tokens = _field(reader, "tokenizer.ggml.tokens")
    rope_base = _field(reader, f"{ARCH}.rope.freq_base", required=False) or 10000.0
    record = _field(reader, DECODER_KEY, required=False)
    try:
        if record is not None:
            cfg = DecoderConfig.model_validate(json.loads(record))
        else:
            cfg = DecoderConfig(vocab_size=len(tokens), tie_weights=True, mlp="swiglu", quant="bitnet-b1.58",
                                rope_base=float(rope_base), **keys)
    except (ValidationError, json.JSONDecodeError, TypeError) as e:
        raise GGUFError(f"{DECODER_KEY}: not a decoder config ({' '.join(str(e).split())[:200]})") from None
    expected = {**keys, "vocab_size": len(tokens)}
    for name, value in expected.items():
        ours = cfg.ff_dim if name == "d_ff" else getattr(cfg, name)
        if ours != value:
            raise GGUFError(f"{DECODER_KEY}: {name} is {ours} but the llama.cpp metadata says {value}")
    return cfg


def _tensor(tensors: dict, name: str, shape: tuple[int, ...], gguf) -> np.ndarray:
    """The float values of tensor `name`, dequantized, checked to have `shape` (ours: rows first)."""
    t = tensors.get(name)
    if t is None:
        raise GGUFError(f"tensor {name!r}: missing from the file")
    logical = tuple(int(s) for s in reversed(t.shape))  # GGUF lists dimensions fastest first
    if logical != shape:
        raise GGUFError(f"tensor {name!r}: shape {list(logical)} disagrees with the metadata's {list(shape)}")
    try:
        values = gguf.quants.dequantize(t.data, t.tensor_type)
    except NotImplementedError:
        raise GGUFError(f"tensor {name!r}: type {t.tensor_type.name} cannot be read (expected F32, F16, TQ1_0 or "
                        "TQ2_0)") from None
    values = np.asarray(values, dtype=np.float32).reshape(shape)
    if not np.isfinite(values).all():
        raise GGUFError(f"tensor {name!r}: holds NaN or infinite values")
    return values


def _codes_and_scale(tensors: dict, name: str, shape: tuple[int, int], gguf) -> tuple[torch.Tensor, float]:
    """(int8 codes, gamma) of a ternary projection: its values are codes times one magnitude c (d = 1 in
    our files) and its optional `.scale` multiplies the matmul, so gamma = c * scale."""
    t = tensors.get(f"{name}.weight")
    if t is not None and t.tensor_type.name not in ("TQ1_0", "TQ2_0"):
        raise GGUFError(f"tensor {name + '.weight'!r}: type {t.tensor_type.name}; a ternary projection is TQ1_0 or TQ2_0")
    values = _tensor(tensors, f"{name}.weight", shape, gguf)
    magnitudes = np.unique(np.abs(values[values != 0]))
    if len(magnitudes) > 1:
        raise GGUFError(f"tensor {name + '.weight'!r}: its blocks carry {len(magnitudes)} different scales; "
                        "bitscale's ternary layers hold one scale per tensor")
    c = float(magnitudes[0]) if len(magnitudes) else 1.0
    scale = 1.0
    if f"{name}.scale" in tensors:
        scale = float(_tensor(tensors, f"{name}.scale", (1,), gguf)[0])
    if not scale > 0:
        raise GGUFError(f"tensor {name + '.scale'!r}: expected a positive scale, got {scale}")
    codes = torch.from_numpy(np.rint(values / c)).to(torch.int8)
    return codes, c * scale


def _tokenizer(reader, cfg: DecoderConfig):
    model = _field(reader, "tokenizer.ggml.model")
    if model != "gpt2":
        raise GGUFError(f"tokenizer.ggml.model: expected 'gpt2' (byte-level BPE), got {model!r}")
    tokens = list(_field(reader, "tokenizer.ggml.tokens"))
    types = list(_field(reader, "tokenizer.ggml.token_type", required=False) or [1] * len(tokens))
    merges = list(_field(reader, "tokenizer.ggml.merges", required=False) or [])
    used = [t for t, kind in zip(tokens, types) if kind != TOKEN_UNUSED]
    table = byte_to_unicode()
    if merges in ([], byte_tokenizer_merges()) and used == [table[b] for b in range(256)]:
        from ..data.tokenizers import ByteTokenizer

        return ByteTokenizer()
    from ..data.tokenizers import BPETokenizer

    try:
        import tokenizers as tk
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise GGUFError(f"tokenizer: a BPE vocabulary needs the tokenizers package ({e})") from None
    bpe = tk.Tokenizer(tk.models.BPE(vocab={t: i for i, t in enumerate(used)},
                                     merges=[tuple(m.split(" ", 1)) for m in merges]))
    bpe.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = tk.decoders.ByteLevel()
    return BPETokenizer(bpe)


def load_gguf_decoder(path: "str | Path") -> "tuple[Decoder, object]":
    """(Decoder in eval mode, tokenizer) of a GGUF file of the `bitnet` architecture. GGUFError (one
    line, naming the tensor or key) for a file that is not one, damaged or truncated."""
    gguf = _require_gguf()
    path = Path(path)
    if not path.is_file():
        raise GGUFError(f"{path}: no such file" if not path.exists() else f"{path}: not a regular file")
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, OSError, IndexError, KeyError, TypeError) as e:  # a truncated or damaged container
        raise GGUFError(f"{path}: not a readable GGUF file ({' '.join(str(e).split())[:200]})") from None
    try:
        cfg = _config(reader, path)
        tensors = {t.name: t for t in reader.tensors}
        d, f = cfg.d_model, cfg.ff_dim
        shapes = {"attn_q": (d, d), "attn_k": (d, d), "attn_v": (d, d), "attn_output": (d, d),
                  "ffn_gate": (f, d), "ffn_up": (f, d), "ffn_down": (d, f)}
        eps = cfg.quant_config.eps
        unpermute = torch.argsort(rope_permutation(cfg.n_head, cfg.head_dim))
        state = {"tok_emb.weight": _tensor(tensors, "token_embd.weight", (cfg.vocab_size, d), gguf),
                 "norm.weight": _tensor(tensors, "output_norm.weight", (d,), gguf)}
        for i in range(cfg.n_layer):
            for norm, layers in NORMS:
                gain = _tensor(tensors, f"blk.{i}.{norm}.weight", (f if norm == "ffn_sub_norm" else d,), gguf)
                for ours in layers:
                    state[f"blocks.{i}.{ours}.norm.weight"] = gain
            for ours, theirs in PROJECTIONS:
                codes, gamma = _codes_and_scale(tensors, f"blk.{i}.{theirs}", shapes[theirs], gguf)
                if theirs in ROPE_ROTATED:
                    codes = codes[unpermute]
                inv = float(np.float32(1) / np.float32(gamma))  # exact for our files (gguf_layout.scale_of)
                state[f"blocks.{i}.{ours}.weight"] = latent_from_codes(codes, inv, eps)
        tokenizer = _tokenizer(reader, cfg)
    except GGUFError as e:
        raise GGUFError(f"{path}: {e}") from None
    model = Decoder(cfg)
    tensors_out = {k: torch.from_numpy(np.array(v)) if isinstance(v, np.ndarray) else v for k, v in state.items()}
    tensors_out["head.weight"] = tensors_out["tok_emb.weight"]
    model.load_state_dict(tensors_out, strict=True)
    return model.eval(), tokenizer
