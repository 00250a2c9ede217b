"""The GGUF layout shared by `export_gguf` and `load_gguf_decoder`: llama.cpp's `bitnet` architecture,
tensor names, ternary tensor types, the byte-level vocabulary, and what a Decoder must be to fit.

Why `bitnet` and not `llama`: our recipe-mode block normalizes the input of every BitLinear (BitNet
b1.58's training recipe). llama.cpp's `bitnet` graph (src/models/bitnet.cpp) has exactly the norms that
gives o_proj and down_proj, `attn_sub_norm` before the attention output and `ffn_sub_norm` before the
down projection, and a `.scale` tensor per projection that multiplies its matmul; `llama` has neither.
Its other norms are shared: `attn_norm` feeds q, k and v, `ffn_norm` feeds gate and up, where our
layers each carry their own gain. A model whose shared gains agree maps exactly; otherwise the export
refuses, or with `merge_norms` writes their mean (an approximation it measures and reports). The graph
takes `token_embd` as the output head, so the head must be tied, and its FFN is gated (SwiGLU).

RoPE: llama.cpp's `bitnet` uses the NEOX rope type (llama_model_rope_type: "the pairs of head values are
offset by n_rot/2"), which rotates the pairs (i, i + head_dim/2), where our decoder rotates consecutive
pairs (2i, 2i + 1). The rows of q and k are therefore stored in the order the HF layout uses
(`hf_layout.rope_permutation`), with the same angles, and put back on import.

Ternary tensors: TQ2_0 (2 bits per code, 2.06 bits per weight with its fp16 block scale) or TQ1_0
(base-3, 1.69 bits per weight). Each block of 256 codes along a row carries an fp16 scale d; we store
the codes with d = 1 (exact in fp16) and our per-tensor scale, in fp32, in the projection's `.scale`
tensor, so the per-block scales are computed from our per-tensor scale exactly: d * scale = gamma.
"""

from __future__ import annotations

import numpy as np

from ..models.decoder import BLOCK_PROJECTIONS, DecoderConfig

ARCH = "bitnet"
BLOCK = 256  # codes per TQ1_0 / TQ2_0 block (ggml's QK_K): rows must be a multiple of it
NORM_EPS = 1e-6  # every RMSNorm of our decoder; llama.cpp has one eps for all of them

# --type names and ggml's ternary tensor types (gguf.GGMLQuantizationType member names).
TERNARY_TYPES = {"tq2_0": "TQ2_0", "tq1_0": "TQ1_0"}

# Our BitLinear (path in a Block) -> the GGUF tensor base name (blk.{i}.<name>.weight / .scale).
ROPE_ROTATED = ("attn_q", "attn_k")  # rows permuted for the NEOX pairs
PROJECTIONS = tuple(zip(BLOCK_PROJECTIONS, ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")))
# GGUF norm -> the BitLinears whose in-layer RMSNorm gain it carries (shared when there are several).
NORMS = (
    ("attn_norm", ("attn.q_proj", "attn.k_proj", "attn.v_proj")),
    ("attn_sub_norm", ("attn.o_proj",)),
    ("ffn_norm", ("mlp.gate_proj", "mlp.up_proj")),
    ("ffn_sub_norm", ("mlp.down_proj",)),
)

TOKEN_NORMAL, TOKEN_UNUSED = 1, 5  # llama.cpp token types


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in for each byte, the alphabet of byte-level BPE vocabularies (what the
    `tokenizers` ByteLevel pre-tokenizer emits and llama.cpp's `gpt2` tokenizer model reads): printable
    Latin-1 bytes stand for themselves; the other 68 bytes map, in order, to code points 256, 257, ..."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def scale_of(inverse_scale: float) -> np.float32:
    """gamma for the `.scale` tensor: the float32 nearest 1 / inverse_scale whose own float32 reciprocal is
    exactly `inverse_scale` (our layers divide by 1/gamma, llama.cpp multiplies by gamma; with this choice
    the file gives back our inverse scale bit for bit, and llama.cpp's gamma is within an ulp of ours)."""
    inv = np.float32(inverse_scale)
    s = np.float32(1) / inv
    for _ in range(16):
        back = np.float32(1) / s
        if back == inv:
            break
        s = np.nextafter(s, np.float32(np.inf) if back > inv else np.float32(0))
    return s


def byte_tokenizer_merges() -> list[str]:
    """The merges of the byte tokenizer's vocabulary. It has none, but GGUF has no empty arrays and
    llama.cpp's `gpt2` tokenizer needs the key, so it gets one merge that can never apply: bytes 0xC0 and
    0xC1 occur nowhere in UTF-8 text (and the merged token is not in the vocabulary)."""
    table = byte_to_unicode()
    return [f"{table[0xC0]} {table[0xC1]}"]


def check_exportable(cfg: DecoderConfig) -> None:
    """ValueError (one line, naming the field) for a Decoder llama.cpp's `bitnet` graph cannot hold."""
    q = cfg.quant_config
    if q.weight != "ternary" or q.granularity != "tensor":
        raise ValueError(f"quant: a GGUF ternary export needs ternary weights with one scale per tensor "
                         f"(preset bitnet-b1.58), got weight {q.weight!r}, granularity {q.granularity!r}")
    if q.act != "int8":
        raise ValueError(f"quant.act is {q.act!r}; llama.cpp quantizes activations to 8 bits (Q8_K) for ternary "
                         "tensors, so the export needs an int8 model")
    if not cfg.recipe:
        raise ValueError("model.norm_in_bitlinear is false; llama.cpp's bitnet graph normalizes the input of "
                         "every projection, which is the recipe mode (norm_in_bitlinear true)")
    if cfg.mlp != "swiglu":
        raise ValueError(f"model.mlp is {cfg.mlp!r}; llama.cpp's bitnet graph has a gated FFN (swiglu)")
    if not cfg.tie_weights:
        raise ValueError("model.tie_weights is false; llama.cpp's bitnet graph uses token_embd as the output "
                         "head, so the model must be trained with tie_weights = true")
    for name, value in (("d_model", cfg.d_model), ("d_ff", cfg.ff_dim)):
        if value % BLOCK:
            raise ValueError(f"model.{name} is {value}; TQ1_0 / TQ2_0 store rows in blocks of {BLOCK} weights, "
                             f"so it must be a multiple of {BLOCK}")
