"""The on-disk layout shared by `export_hf` and `load_hf_decoder`: transformers' BitNet packing of ternary
codes into uint8, the RoPE row permutation between our decoder and Llama, and the checks of what can be
represented. See docs/interop.md for the byte-by-byte description.

Source of the layout: transformers 5.23, `transformers/integrations/bitnet.py` (`pack_weights`,
`unpack_weights`, `BitLinear`). This module is written from that description, not copied.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..models.decoder import BLOCK_PROJECTIONS, DecoderConfig

# Four 2-bit codes per byte; code c in {-1, 0, 1} is stored as c + 1 in {0, 1, 2}.
CODES_PER_BYTE = 4
CODE_OFFSET = 1
# transformers' BitLinear clamps max|x| of the activations at this value (fixed in its code), and
# its RMSNorm / LlamaRMSNorm use the config's eps; ours are fixed at these values.
HF_ACT_EPS = 1e-5
NORM_EPS = 1e-6

# Our Decoder's BitLinear names -> Llama's, per block: (our attribute path, HF suffix).
LINEAR_NAMES = tuple(zip(BLOCK_PROJECTIONS, ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                            "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")))
ROPE_ROTATED = ("self_attn.q_proj", "self_attn.k_proj")

# Recipe mode (RMSNorm inside every BitLinear, no block-level norm) on Llama, which always applies
# input_layernorm / post_attention_layernorm before q,k,v / gate,up. RMSNorm(RMSNorm(x)) is not
# RMSNorm(x) (the first eps is lost: a per-token factor sqrt((m + eps) / (m (1 + eps) + eps^2)), m the
# mean square of x), which costs ~1% of the logits when the residual stream is small. An exact
# reparametrization avoids it:
#   - the block norms get gain BLOCK_GAIN (~6e-5), so their output y = BLOCK_GAIN * n(x) has a mean square
#     (<= 4e-9) far below the in-BitLinear eps INNER_EPS (~1.05): in fp32, mean(y^2) + INNER_EPS == INNER_EPS
#     and the in-BitLinear norm of q,k,v,gate,up is linear, y * rsqrt(INNER_EPS) * gain;
#     their gains are stored times GAIN_SHIFT (2^14, exact), so the product is g * n(x) as in our layer;
#   - v_proj and up_proj are stored with weight_scale / RESIDUAL_SHIFT (2^10, exact): their outputs, and so
#     the inputs of o_proj and down_proj, are 1024 times ours, and the in-BitLinear norm of o_proj/down_proj
#     with eps INNER_EPS = 1024^2 * 1e-6 computes exactly our RMSNorm with eps 1e-6 of the unscaled input.
RESIDUAL_SHIFT = 2.0**10
GAIN_SHIFT = 2.0**14
INNER_EPS = NORM_EPS * RESIDUAL_SHIFT**2
BLOCK_GAIN = INNER_EPS**0.5 / GAIN_SHIFT
SHIFTED_GAINS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj")
SHIFTED_SCALES = ("self_attn.v_proj", "mlp.up_proj")


def pack_ternary(codes: Tensor) -> Tensor:
    """Pack ternary codes (out, in) with values in {-1, 0, 1} into uint8 (out / 4, in).

    Rows are split into 4 consecutive bands of R = out / 4 rows; byte [r, c] holds the codes of rows
    r, R + r, 2R + r, 3R + r (column c) in bits 0-1, 2-3, 4-5, 6-7, each stored as code + 1.
    """
    if codes.dim() != 2:
        raise ValueError(f"codes: expected a 2-d (out, in) tensor, got shape {tuple(codes.shape)}")
    out = codes.shape[0]
    if out % CODES_PER_BYTE:
        raise ValueError(f"codes: out_features ({out}) must be a multiple of {CODES_PER_BYTE} to pack")
    c = codes.to(torch.int16)
    if bool(((c < -1) | (c > 1)).any()):
        raise ValueError("codes: expected values in {-1, 0, 1}")
    stored = (c + CODE_OFFSET).to(torch.uint8).reshape(CODES_PER_BYTE, out // CODES_PER_BYTE, -1)
    packed = torch.zeros_like(stored[0])
    for i in range(CODES_PER_BYTE):
        packed |= stored[i] << (2 * i)
    return packed


def unpack_ternary(packed: Tensor) -> Tensor:
    """The inverse of `pack_ternary`: uint8 (R, in) -> int8 codes (4R, in). A 2-bit field of 3 is invalid."""
    if packed.dtype != torch.uint8 or packed.dim() != 2:
        raise ValueError(f"packed: expected a 2-d uint8 tensor, got {packed.dtype} of shape {tuple(packed.shape)}")
    fields = torch.stack([(packed >> (2 * i)) & 3 for i in range(CODES_PER_BYTE)])
    if bool((fields == 3).any()):
        raise ValueError("packed: a 2-bit field holds 3, which is not a ternary code (expected 0, 1 or 2)")
    return (fields.to(torch.int8) - CODE_OFFSET).reshape(-1, packed.shape[1])


def rope_permutation(n_head: int, head_dim: int) -> Tensor:
    """Row order that turns our q/k projection (RoPE on consecutive pairs (2i, 2i+1)) into Llama's
    (rotate_half: pairs (i, i + head_dim/2)): W_hf = W_ours[perm]. Within each head, HF row j < head_dim/2
    is our row 2j and HF row head_dim/2 + j is our row 2j + 1; both rotate by t * base^(-2j/head_dim)."""
    per_head = torch.cat((torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)))
    return (torch.arange(n_head)[:, None] * head_dim + per_head[None, :]).reshape(-1)


def check_representable(cfg: DecoderConfig) -> None:
    """Raise a one-line ValueError naming the first field that transformers' BitNet Llama cannot hold."""
    q = cfg.quant_config
    if q.weight != "ternary":
        raise ValueError(
            f"quant.weight is {q.weight!r}; a transformers BitNet export needs 'ternary' weights (preset bitnet-b1.58)"
        )
    if q.act != "int8":
        raise ValueError(f"quant.act is {q.act!r}; transformers' BitNet layers quantize activations to 'int8' per token")
    if q.granularity != "tensor":
        raise ValueError(
            f"quant.granularity is {q.granularity!r}; transformers' BitNet layers hold one 'tensor' scale per weight"
        )
    if q.eps != HF_ACT_EPS:
        raise ValueError(f"quant.eps is {q.eps}; transformers' BitNet activation quantizer fixes it at {HF_ACT_EPS}")
    if cfg.mlp != "swiglu":
        raise ValueError(f"model.mlp is {cfg.mlp!r}; the Llama architecture needs 'swiglu' (gate/up/down)")
    for name, value in (("d_model", cfg.d_model), ("d_ff", cfg.ff_dim)):
        if value % CODES_PER_BYTE:
            raise ValueError(f"model.{name} is {value}; packed BitNet weights need a multiple of {CODES_PER_BYTE}")
