"""A decoder-only transformer in the BitNet b1.58 style (arXiv 2402.17764; BitNet b1.58 2B4T, arXiv 2504.12285).

    h_0     = E[idx]                                          (token embedding, full precision)
    h'_l    = h_{l-1} + W_o Attn(RoPE(W_q n(h)), RoPE(W_k n(h)), W_v n(h))     (causal)
    h_l     = h'_l + W_down MLP(n(h'_l))
    logits  = W_head RMSNorm(h_L)                             (head full precision, or tied: W_head = E)

    MLP(x)  = silu(W_gate x) * (W_up x)     ("swiglu", LLaMA)      or  relu(W_up x)^2   ("relu2")

Every W_q, W_k, W_v, W_o, W_gate, W_up, W_down is a BitLinear with the config's quantizer and no bias.
`n` depends on the mode:

- recipe mode (`norm_in_bitlinear=True`, the default for any quantized config): each BitLinear carries its
  own RMSNorm before its activation quantizer, and the block-level pre-attention / pre-MLP RMSNorms are
  removed (`n` = identity at block level), as in Microsoft's BitNet b1.58 training FAQ.
- twin mode (`norm_in_bitlinear=False`, the default for `fp32`): the usual LLaMA-style pre-norm block
  (`n` = RMSNorm) and BitLinear(norm=False); with `fp32` every projection is exactly F.linear.

The final RMSNorm and the embedding / head stay in full precision. RoPE (Su et al., arXiv 2104.09864)
rotates consecutive pairs (x_{2i}, x_{2i+1}) of each head by angle t * base^(-2i/head_dim).
Init (nanoGPT): N(0, 0.02) for linear and embedding weights, N(0, 0.02 / sqrt(2 n_layer)) for the
residual projections W_o and W_down; RMSNorm gains 1.

Hidden width d_ff default: swiglu -> 8/3 d_model rounded up to a multiple of 32 (same MLP parameter
count as a 4 d_model ungated MLP, kept small-model friendly); relu2 -> 4 d_model. Note that BitNet b1.58
2B4T uses ReLU^2 inside a gated unit; "relu2" here is the ungated (Primer-style) variant.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import BaseModel, Field, model_validator
from torch import Tensor

from ..limits import MAX_DEPTH, MAX_SAMPLES, MAX_WIDTH, STRICT

from ..nn import BitLinear
from ..quant import QuantConfig, resolve_config
from . import fast_decode


class DecoderConfig(BaseModel):
    """Shape and precision of a Decoder. `norm_in_bitlinear=None` picks the recipe (True) for quantized
    configs and the LLaMA-style twin (False) for `fp32`."""

    model_config = STRICT

    vocab_size: int = Field(256, le=MAX_WIDTH)
    n_layer: int = Field(4, le=MAX_DEPTH)
    n_head: int = Field(4, le=MAX_WIDTH)
    d_model: int = Field(128, le=MAX_WIDTH)
    d_ff: int | None = Field(None, le=MAX_WIDTH)
    block_size: int = Field(256, le=MAX_SAMPLES)
    mlp: Literal["swiglu", "relu2"] = "swiglu"
    quant: str | QuantConfig | dict = "bitnet-b1.58"
    norm_in_bitlinear: bool | None = None
    tie_weights: bool = False
    rope_base: float = Field(10000.0, gt=1.0, description="RoPE wavelength base (> 1)")

    @model_validator(mode="after")
    def _check(self) -> "DecoderConfig":
        for name in ("vocab_size", "n_layer", "n_head", "d_model", "block_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.d_model % self.n_head or (self.d_model // self.n_head) % 2:
            raise ValueError(f"d_model ({self.d_model}) / n_head ({self.n_head}) must be an even integer (RoPE)")
        if self.d_ff is not None and self.d_ff < 1:
            raise ValueError(f"d_ff must be positive, got {self.d_ff}")
        resolve_config(self.quant)  # fail early on a bad preset name
        return self

    @property
    def quant_config(self) -> QuantConfig:
        return resolve_config(self.quant)

    @property
    def recipe(self) -> bool:
        """Whether RMSNorm lives inside BitLinear (and the block-level norms are dropped)."""
        if self.norm_in_bitlinear is None:
            return not self.quant_config.is_full_precision
        return self.norm_in_bitlinear

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def ff_dim(self) -> int:
        if self.d_ff is not None:
            return self.d_ff
        if self.mlp == "relu2":
            return 4 * self.d_model
        return 32 * math.ceil(8 * self.d_model / 3 / 32)


def rope_tables(block_size: int, head_dim: int, base: float, device=None) -> tuple[Tensor, Tensor]:
    """cos, sin of t * base^(-2i/head_dim), each of shape (block_size, head_dim // 2), in fp32."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.outer(torch.arange(block_size, device=device, dtype=torch.float32), inv_freq)
    return angles.cos(), angles.sin()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the pairs (x_{2i}, x_{2i+1}) of x (..., T, head_dim) by the angles of cos/sin (T, head_dim/2)."""
    dtype = torch.promote_types(x.dtype, torch.float32)  # rotate in at least fp32
    x1, x2, cos, sin = x[..., 0::2].to(dtype), x[..., 1::2].to(dtype), cos.to(dtype), sin.to(dtype)
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2).type_as(x)


# The BitLinear projections of a Block, by their path in it: attention's four, then the MLP's three
# (`gate_proj` is None with relu2). The fast decode step's plan arrays follow this order.
BLOCK_PROJECTIONS = ("attn.q_proj", "attn.k_proj", "attn.v_proj", "attn.o_proj",
                     "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: DecoderConfig, **kw) -> None:
        super().__init__()
        d, self.n_head = cfg.d_model, cfg.n_head
        lin = lambda: BitLinear(d, d, bias=False, quant=cfg.quant_config, norm=cfg.recipe, **kw)  # noqa: E731
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = lin(), lin(), lin(), lin()

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, cache: "KVCache | None" = None, layer: int = 0) -> Tensor:
        B, T, C = x.shape
        heads = lambda t: t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # noqa: E731
        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:  # attend over every position cached so far plus these T
            start = cache.length
            k, v = cache.append(layer, k, v)
            # Query t (at position start + t) sees keys 0 .. start + t: causal within the new block only.
            mask = None if T == 1 else torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(start)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            return self.o_proj(y.transpose(1, 2).reshape(B, T, C))
        if q.device.type == "cpu" and q.dtype.itemsize < 4:
            # Under CPU autocast: attention in fp32, whose backward is faster than bf16's on a CPU
            # (benchmarks/lm_throughput.py); the result goes back to the autocast dtype.
            with torch.autocast("cpu", enabled=False):
                y = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True).to(q.dtype)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, C))


class FeedForward(nn.Module):
    def __init__(self, cfg: DecoderConfig, **kw) -> None:
        super().__init__()
        d, f, q, n = cfg.d_model, cfg.ff_dim, cfg.quant_config, cfg.recipe
        self.gate_proj = BitLinear(d, f, quant=q, norm=n, **kw) if cfg.mlp == "swiglu" else None
        self.up_proj = BitLinear(d, f, quant=q, norm=n, **kw)
        self.down_proj = BitLinear(f, d, quant=q, norm=n, **kw)

    def forward(self, x: Tensor) -> Tensor:
        if self.gate_proj is not None:
            return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))
        return self.down_proj(F.relu(self.up_proj(x)).square())


class Block(nn.Module):
    def __init__(self, cfg: DecoderConfig, **kw) -> None:
        super().__init__()
        # Recipe mode: the norms live inside each BitLinear, so the block has none of its own.
        make_norm = lambda: None if cfg.recipe else nn.RMSNorm(cfg.d_model, eps=1e-6, **kw)  # noqa: E731
        self.attn_norm, self.attn = make_norm(), CausalSelfAttention(cfg, **kw)
        self.mlp_norm, self.mlp = make_norm(), FeedForward(cfg, **kw)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, cache: "KVCache | None" = None, layer: int = 0) -> Tensor:
        x = x + self.attn(self.attn_norm(x) if self.attn_norm is not None else x, cos, sin, cache, layer)
        return x + self.mlp(self.mlp_norm(x) if self.mlp_norm is not None else x)


class KVCache:
    """Keys and values of every layer for the positions seen so far, preallocated to `max_len`:
    `Decoder.step` appends the new positions' and attends over all of them, so a decode step costs one
    token's projections instead of the whole context's (the llama.cpp-style loop)."""

    def __init__(self, cfg: DecoderConfig, batch: int, max_len: int, *, device=None, dtype=torch.float32) -> None:
        if not 1 <= max_len <= cfg.block_size:
            raise ValueError(f"max_len must be in [1, block_size = {cfg.block_size}], got {max_len}")
        shape = (cfg.n_layer, batch, cfg.n_head, max_len, cfg.head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.length, self.max_len = 0, max_len  # `length`: positions of every layer stored so far

    def append(self, layer: int, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Store k, v (B, H, T, hd) after the cached positions; return the keys and values so far.
        `Decoder.step` advances `length` once all layers have appended."""
        end = self.length + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache full: {end} positions > max_len {self.max_len}")
        self.k[layer, :, :, self.length : end] = k
        self.v[layer, :, :, self.length : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


class Decoder(nn.Module):
    """Token ids (B, T) -> logits (B, T, vocab_size); see the module docstring for the formula."""

    def __init__(self, cfg: DecoderConfig, *, seed: int | None = None, device=None, dtype=None) -> None:
        super().__init__()
        self.cfg = cfg
        kw = {"device": device, "dtype": dtype}
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model, **kw)
        self.blocks = nn.ModuleList(Block(cfg, **kw) for _ in range(cfg.n_layer))
        self.norm = nn.RMSNorm(cfg.d_model, eps=1e-6, **kw)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False, **kw)
        if cfg.tie_weights:
            self.head.weight = self.tok_emb.weight
        cos, sin = rope_tables(cfg.block_size, cfg.head_dim, cfg.rope_base, device=device)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.register_load_state_dict_post_hook(Decoder._rope_after_load)
        self._init_weights(seed)

    def _rebuild_rope(self, device) -> None:
        cfg = self.cfg
        self.rope_cos, self.rope_sin = rope_tables(cfg.block_size, cfg.head_dim, cfg.rope_base, device)

    @staticmethod
    def _rope_after_load(module: "Decoder", incompatible_keys) -> None:
        # A model built on the meta device and filled by load_state_dict(assign=True) still has meta
        # RoPE tables (they are not in any state dict): rebuild them where the embedding now lives.
        if module.rope_cos.is_meta and not module.tok_emb.weight.is_meta:
            module._rebuild_rope(module.tok_emb.weight.device)

    def packed_spec(self) -> dict:
        """The metadata a packed file stores to rebuild this model (`bitscale.runs.build_skeleton`)."""
        return {"kind": "decoder", "config": self.cfg.model_dump(mode="json")}

    def _apply(self, fn, recurse=True):
        # .to(dtype) / .half() would round the RoPE tables: rebuild them in fp32 on the new device.
        super()._apply(fn, recurse)
        self._rebuild_rope(self.rope_cos.device)
        return self

    @torch.no_grad()
    def _init_weights(self, seed: int | None) -> None:
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        residual_std = 0.02 / math.sqrt(2 * self.cfg.n_layer)
        seen: set[int] = set()
        for name, module in self.named_modules():
            if not isinstance(module, (nn.Linear, nn.Embedding)) or id(module.weight) in seen:
                continue
            seen.add(id(module.weight))
            w = module.weight
            std = residual_std if name.endswith(("o_proj", "down_proj")) else 0.02
            if w.is_meta:
                continue
            if gen is None:
                w.normal_(0.0, std)
            else:  # drawn on the CPU so that a seed gives the same weights on every device
                w.copy_(torch.randn(w.shape, generator=gen, dtype=torch.float32).mul_(std))

    def forward(self, idx: Tensor, targets: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Logits (B, T, V) and, with `targets` (B, T), the mean cross-entropy over tokens
        (targets equal to -100 are ignored)."""
        T = idx.shape[1]
        if T > self.cfg.block_size:
            raise ValueError(f"sequence length {T} exceeds block_size {self.cfg.block_size}")
        cos, sin = self.rope_cos[:T], self.rope_sin[:T]
        x = self.tok_emb(idx)
        for block in self.blocks:
            x = block(x, cos, sin)
        logits = self.head(self.norm(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        return logits, loss

    def new_cache(self, batch: int, max_len: int | None = None) -> KVCache:
        """An empty KV cache for `batch` sequences of up to `max_len` (default block_size) positions."""
        w = self.tok_emb.weight
        return KVCache(self.cfg, batch, max_len or self.cfg.block_size, device=w.device, dtype=w.dtype)

    def step(self, idx: Tensor, cache: KVCache) -> Tensor:
        """Logits (B, T, vocab) of the tokens idx (B, T) at positions cache.length ..., attending over the
        cache, which they are appended to. A prompt is one step of its length (prefill), then one token
        per step (decode); the logits equal the full forward pass's at those positions up to float
        summation order. A one-token step of a packed model under no_grad runs its blocks in one numba
        call (`bitscale.models.fast_decode`)."""
        T, start = idx.shape[1], cache.length
        if start + T > cache.max_len:
            raise ValueError(f"KV cache full: {start + T} positions > max_len {cache.max_len}")
        x = self.tok_emb(idx)
        engine = None
        if T == 1 and not torch.is_grad_enabled() and cache.k.dtype == torch.float32 and cache.k.is_cpu:
            engine = fast_decode.engine_for(self)
        if engine is not None:  # a packed model's decode step: every block in one numba call
            logits = engine.step(self, x[:, 0], cache)
            cache.length = start + T
            return logits
        cos, sin = self.rope_cos[start : start + T], self.rope_sin[start : start + T]
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, cache, i)
        cache.length = start + T
        return self.head(self.norm(x))

    @torch.no_grad()
    def generate(
        self,
        idx: Tensor,
        max_new_tokens: int,
        *,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        use_cache: bool = False,
    ) -> Tensor:
        """Append `max_new_tokens` sampled tokens to idx (B, T); the context is cropped to block_size.
        temperature <= 0 picks the argmax; top_k keeps the k most likely tokens. `use_cache`: prefill the
        prompt once and decode one token per step with a KV cache (`step`), while the whole sequence
        fits in block_size (the cache cannot slide: past it, each step recomputes the cropped context)."""
        cache = self.new_cache(idx.shape[0]) if use_cache and idx.shape[1] < self.cfg.block_size else None
        pending = idx
        for _ in range(max_new_tokens):
            if cache is not None and cache.length + pending.shape[1] > cache.max_len:
                cache = None
            if cache is not None:
                logits = self.step(pending, cache)
            else:
                logits, _ = self(idx[:, -self.cfg.block_size :])
            logits = logits[:, -1, :].float()
            if temperature <= 0:
                nxt = logits.argmax(-1, keepdim=True)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                nxt = torch.multinomial(F.softmax(logits, dim=-1), 1, generator=generator)
            pending = nxt.to(idx.dtype)
            idx = torch.cat((idx, pending), dim=1)
        return idx

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count (shared Parameters counted once). `non_embedding` follows Kaplan et al. 2020
        (arXiv 2001.08361): it excludes the embedding matrices, i.e. the token embedding and an untied
        output head (a tied head is the embedding, so excluded once)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.tok_emb.weight.numel()
            if self.head.weight is not self.tok_emb.weight:
                n -= self.head.weight.numel()
        return n


def count_params(cfg: DecoderConfig, non_embedding: bool = True) -> int:
    """Decoder(cfg).num_params(non_embedding), computed analytically (no model built)."""
    d, f, L, V = cfg.d_model, cfg.ff_dim, cfg.n_layer, cfg.vocab_size
    n_in = 3 if cfg.mlp == "swiglu" else 2  # MLP matrices
    per_layer = 4 * d * d + n_in * d * f
    # RMSNorm gains: one per BitLinear input (recipe) or two block-level norms (twin).
    per_layer += (4 * d + (n_in - 1) * d + f) if cfg.recipe else 2 * d
    n = L * per_layer + d  # + the final norm
    if not non_embedding:
        n += V * d * (1 if cfg.tie_weights else 2)
    return n


def decoder_config_for(
    params_target: int,
    *,
    aspect: float = 32.0,
    head_dim: int = 32,
    non_embedding: bool = True,
    **fields,
) -> DecoderConfig:
    """A DecoderConfig whose parameter count (Kaplan non-embedding by default) is close to params_target.

    n_layer is the rounded cube root that gives d_model / n_layer ~ `aspect` (about 12 n_layer d_model^2
    parameters); d_model (a multiple of 16) is then chosen for the closest count, and n_head =
    round(d_model / head_dim), lowered until it divides d_model into even head sizes. Other
    DecoderConfig fields pass through `fields`.
    """
    if params_target < 1:
        raise ValueError(f"params_target must be positive, got {params_target}")
    n_layer = max(1, round((params_target / (12 * aspect**2)) ** (1 / 3)))
    best, best_err = None, math.inf
    for d_model in range(16, 16 * 1024 + 1, 16):
        n_head = max(1, round(d_model / head_dim))
        while d_model % n_head or (d_model // n_head) % 2:
            n_head -= 1
        cfg = DecoderConfig(**{**fields, "n_layer": n_layer, "n_head": n_head, "d_model": d_model})
        err = abs(math.log(count_params(cfg, non_embedding) / params_target))
        if err > best_err:
            break  # the count grows with d_model: past the minimum
        best, best_err = cfg, err
    assert best is not None
    return best
