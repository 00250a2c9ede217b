"""Export a bitscale `Decoder` (BitNet b1.58, recipe mode) to a GGUF file for llama.cpp, through the
`gguf` package's own writer and quantizers (the format's reference Python code; no hand-written container).

Mapping (ours -> GGUF; docs/interop.md has the table and gguf_layout the reasons):

    tok_emb.weight (tied head)              -> token_embd.weight                  F32
    norm.weight                             -> output_norm.weight                 F32
    blocks.i.attn.{q,k,v}_proj.norm.weight  -> blk.i.attn_norm.weight (shared)    F32
    blocks.i.attn.o_proj.norm.weight        -> blk.i.attn_sub_norm.weight         F32
    blocks.i.mlp.{gate,up}_proj.norm.weight -> blk.i.ffn_norm.weight (shared)     F32
    blocks.i.mlp.down_proj.norm.weight      -> blk.i.ffn_sub_norm.weight          F32
    blocks.i.<proj>.weight                  -> blk.i.<name>.weight  ternary codes, TQ2_0 or TQ1_0 (d = 1;
                                               q and k rows in the NEOX RoPE order)
                                               blk.i.<name>.scale   gamma = mean|W| (F32, shape 1)

The metadata holds the llama.cpp hyperparameters (`bitnet.*`), the tokenizer as a byte-level BPE
vocabulary (`tokenizer.ggml.model = gpt2`; a byte tokenizer is its 256 byte tokens and no merges), and
`bitscale.decoder`, the DecoderConfig as JSON, so that `load_gguf_decoder` rebuilds the model exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_write, check_target
from ..models.decoder import Decoder
from ..quant.weights import weight_codes
from .gguf_layout import (
    ARCH,
    NORM_EPS,
    NORMS,
    PROJECTIONS,
    ROPE_ROTATED,
    TERNARY_TYPES,
    TOKEN_NORMAL,
    TOKEN_UNUSED,
    byte_to_unicode,
    byte_tokenizer_merges,
    check_exportable,
    scale_of,
)
from .hf_layout import rope_permutation

DECODER_KEY = "bitscale.decoder"


def _require_gguf():
    try:
        import gguf
    except ImportError as e:  # pragma: no cover - exercised only without the extra
        raise ImportError(f"the GGUF export needs the gguf package: pip install 'bitscale[gguf]' ({e})") from e
    return gguf


def _f32(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).contiguous().numpy()


def shared_gains(model: Decoder, merge_norms: bool = False) -> dict[tuple[int, str], np.ndarray]:
    """The gain of each GGUF norm of each block, keyed (block, GGUF norm name). Gains llama.cpp shares
    must agree in our model; ValueError (one line) if they do not, unless `merge_norms` (their mean)."""
    gains = {}
    for i, block in enumerate(model.blocks):
        for norm, layers in NORMS:
            values = [_f32(block.get_submodule(path).norm.weight) for path in layers]
            differing = next((p for p, v in zip(layers[1:], values[1:]) if not np.array_equal(values[0], v)), None)
            if differing is not None and not merge_norms:
                raise ValueError(
                    f"blocks.{i}.{differing}.norm.weight differs from blocks.{i}.{layers[0]}.norm.weight; "
                    f"llama.cpp's {norm} is one gain for {', '.join(p.split('.')[-1] for p in layers)}: "
                    "pass --merge-norms to write their mean (an approximation that is measured and reported)")
            gains[(i, norm)] = np.mean(values, axis=0, dtype=np.float64).astype(np.float32)
    return gains


def _vocabulary(tokenizer, vocab_size: int) -> tuple[list[str], list[int], list[str]]:
    """(tokens, token types, merges) of a byte-level BPE vocabulary of `vocab_size` entries; ids the model
    has beyond the tokenizer's are unused padding tokens."""
    if tokenizer is None or not hasattr(tokenizer, "to_json"):  # the byte tokenizer: id b is byte b
        table = byte_to_unicode()
        tokens, merges = [table[b] for b in range(256)], byte_tokenizer_merges()
    else:
        data = json.loads(tokenizer.to_json())
        vocab = data["model"]["vocab"]
        tokens = [None] * len(vocab)
        for token, index in vocab.items():
            tokens[index] = token
        merges = [m if isinstance(m, str) else " ".join(m) for m in data["model"].get("merges", [])]
    if len(tokens) > vocab_size:
        raise ValueError(f"tokenizer: {len(tokens)} tokens do not fit the model's vocab_size {vocab_size}")
    types = [TOKEN_NORMAL] * len(tokens) + [TOKEN_UNUSED] * (vocab_size - len(tokens))
    tokens += [f"<unused{i}>" for i in range(len(tokens), vocab_size)]
    return tokens, types, merges


def write_gguf(model: Decoder, path: "str | Path", tokenizer=None, *, ternary_type: str = "tq2_0",
               merge_norms: bool = False) -> Path:
    """Write `model` (and its tokenizer) as a GGUF file at `path`, atomically; returns the path.
    ValueError (one line, naming the field) for a model llama.cpp's bitnet graph cannot hold."""
    gguf = _require_gguf()
    if not isinstance(model, Decoder):
        raise ValueError(f"model: expected a bitscale Decoder, got {type(model).__name__}")
    if ternary_type not in TERNARY_TYPES:
        raise ValueError(f"--type: expected one of {', '.join(TERNARY_TYPES)}, got {ternary_type!r}")
    cfg = model.cfg
    check_exportable(cfg)
    path = check_target(path)
    qtype = getattr(gguf.GGMLQuantizationType, TERNARY_TYPES[ternary_type])
    gains = shared_gains(model, merge_norms)
    tokens, types, merges = _vocabulary(tokenizer, cfg.vocab_size)
    eps = cfg.quant_config.eps

    tensors: list[tuple[str, np.ndarray, object]] = [
        ("token_embd.weight", _f32(model.tok_emb.weight), None),
        ("output_norm.weight", _f32(model.norm.weight), None),
    ]
    perm = rope_permutation(cfg.n_head, cfg.head_dim)
    for i, block in enumerate(model.blocks):
        for norm, _ in NORMS:
            tensors.append((f"blk.{i}.{norm}.weight", gains[(i, norm)], None))
        for ours, theirs in PROJECTIONS:
            codes, inv = weight_codes(block.get_submodule(ours).weight.detach().float(), "ternary", "tensor", None,
                                      True, eps)
            if theirs in ROPE_ROTATED:
                codes = codes[perm]
            tensors.append((f"blk.{i}.{theirs}.weight", gguf.quants.quantize(codes.numpy(), qtype), qtype))
            tensors.append((f"blk.{i}.{theirs}.scale", np.array([scale_of(float(inv))], dtype=np.float32), None))

    def write(tmp: str) -> None:
        writer = gguf.GGUFWriter(tmp, ARCH)
        writer.add_name("bitscale decoder")
        writer.add_file_type(getattr(gguf.LlamaFileType, f"MOSTLY_{TERNARY_TYPES[ternary_type]}"))
        writer.add_context_length(cfg.block_size)
        writer.add_embedding_length(cfg.d_model)
        writer.add_block_count(cfg.n_layer)
        writer.add_feed_forward_length(cfg.ff_dim)
        writer.add_head_count(cfg.n_head)
        writer.add_head_count_kv(cfg.n_head)
        writer.add_rope_dimension_count(cfg.head_dim)
        writer.add_rope_freq_base(float(cfg.rope_base))
        writer.add_layer_norm_rms_eps(NORM_EPS)
        writer.add_vocab_size(cfg.vocab_size)
        writer.add_tokenizer_model("gpt2")
        writer.add_tokenizer_pre("gpt-2")
        writer.add_token_list(tokens)
        writer.add_token_types(types)
        writer.add_token_merges(merges)
        writer.add_add_bos_token(False)
        writer.add_add_eos_token(False)
        writer.add_string(DECODER_KEY, json.dumps(cfg.model_dump(mode="json")))
        for name, array, raw_dtype in tensors:
            writer.add_tensor(name, array, raw_dtype=raw_dtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    atomic_write(path, write)
    return path
