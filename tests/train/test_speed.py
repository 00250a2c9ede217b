"""The fast path of LM training (bitscale.train.speed): compiled blocks and bf16 autocast, with their
stated exactness, the eager fallback and exact resume."""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bitscale.models.decoder import CausalSelfAttention, DecoderConfig, rope_tables
from bitscale.train.lm import train_lm
from bitscale.train.speed import autocast_context, compile_blocks, first_step_with_fallback, uncompile

from .test_lm import _stop_after, tiny_config


def test_autocast_modes():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_context("auto", cpu) is contextlib.nullcontext  # today's CPU path: fp32
    assert autocast_context("off", cuda) is contextlib.nullcontext
    with autocast_context("bf16", cpu)():
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16 and torch.is_autocast_enabled("cpu")
        assert (torch.ones(4, 4) @ torch.ones(4, 4)).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="autocast: expected one of auto, off, bf16"):
        autocast_context("fp16", cpu)


def test_autocast_is_a_config_field_and_part_of_the_run_id():
    from bitscale.sweep.spec import run_id

    cfg = tiny_config()
    assert cfg.autocast == "auto"
    assert run_id(cfg) != run_id(cfg.model_copy(update={"autocast": "bf16"}))
    with pytest.raises(ValueError, match="autocast"):
        tiny_config().model_validate({**cfg.model_dump(), "autocast": "fp16"})


def test_attention_under_cpu_autocast_is_computed_in_fp32():
    cfg = DecoderConfig(n_layer=1, n_head=2, d_model=32, block_size=16, quant="fp32")
    attn = CausalSelfAttention(cfg)
    cos, sin = rope_tables(16, cfg.head_dim, cfg.rope_base)
    x = torch.randn(2, 16, 32)
    seen = []
    real_sdpa = F.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        seen.append((q.dtype, torch.is_autocast_enabled("cpu")))
        return real_sdpa(q, k, v, **kw)

    F.scaled_dot_product_attention = spy
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = attn(x, cos, sin)
        attn(x, cos, sin)
    finally:
        F.scaled_dot_product_attention = real_sdpa
    assert seen == [(torch.float32, False), (torch.float32, False)]
    assert y.dtype == torch.bfloat16  # handed back in the autocast dtype, for the bf16 output projection


class _Block(nn.Module):
    def forward(self, x):
        return x


class _Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([_Block(), _Block()])


def test_a_failed_compile_falls_back_to_eager_and_retries_the_step():
    model = _Model()
    blocks = compile_blocks(model)
    assert all(b._compiled_call_impl is not None for b in blocks)
    calls = []

    def step():
        calls.append(all(b._compiled_call_impl is None for b in blocks))
        if len(calls) == 1:
            raise torch._inductor.exc.InductorError(RuntimeError("no working C++ compiler\nlong details"), "tb")
        return torch.tensor(1.0)

    with pytest.warns(UserWarning, match="torch.compile failed .*no working C\\+\\+ compiler.*training eagerly"):
        assert first_step_with_fallback(step, blocks).item() == 1.0
    assert calls == [False, True]  # the retry ran with the blocks uncompiled
    with pytest.raises(ValueError, match="a real error"):  # the run's own errors are never swallowed
        first_step_with_fallback(lambda: (_ for _ in ()).throw(ValueError("a real error")), compile_blocks(model))
    uncompile(blocks)


def test_bf16_autocast_curve_stays_near_the_fp32_curve():
    """bf16 rounds every matmul input (relative 2^-9): the curve moves, but by far less than it falls."""
    cfg = tiny_config(steps=20)
    fp32 = train_lm(cfg)
    bf16 = train_lm(cfg.model_copy(update={"autocast": "bf16"}))
    a, b = np.array(fp32.train_losses), np.array(bf16.train_losses)
    assert np.max(np.abs(a - b) / a) < 5e-3
    assert a[0] - a[-1] > 0.5  # while the loss itself falls by more than 0.5 nats
    assert fp32.train_losses != bf16.train_losses  # and autocast really ran


@pytest.mark.parametrize("quant, rtol", [("fp32", 1e-5), ("bitnet-b1.58", 2e-3)])
def test_compiled_blocks_train_the_eager_curve(quant, rtol):
    """fp32: the same curve up to float summation order. Quantized: rounding boundaries (round(x s),
    RoundClip(W / gamma)) turn ulp differences into a few flipped codes, so the curves agree to a
    looser but still tight tolerance."""
    base = tiny_config(steps=20)
    cfg = base.model_copy(update={"model": base.model.model_copy(update={"quant": quant})})
    eager = train_lm(cfg)
    compiled = train_lm(cfg, compile=True)
    np.testing.assert_allclose(compiled.train_losses, eager.train_losses, rtol=rtol)
    np.testing.assert_allclose(compiled.val_curve, eager.val_curve, rtol=rtol)
    assert math.isfinite(compiled.final_val_loss)


@pytest.mark.slow
def test_a_resumed_compiled_run_equals_the_uninterrupted_compiled_run(tmp_path):
    cfg = tiny_config(steps=30).model_copy(update={"autocast": "bf16"})
    full = train_lm(cfg, compile=True)
    state = tmp_path / "state.safetensors"
    with pytest.raises(KeyboardInterrupt):
        train_lm(cfg, checkpoint=state, checkpoint_every=20, callback=_stop_after(20), compile=True)
    resumed = train_lm(cfg, checkpoint=state, checkpoint_every=20, compile=True)
    assert resumed.train_losses == full.train_losses
    assert resumed.val_curve == full.val_curve
