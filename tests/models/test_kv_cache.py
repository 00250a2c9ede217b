"""Decoder.step with a KVCache: prefill then decode gives the full forward pass's logits."""

from __future__ import annotations

import pytest
import torch

from bitscale.models.decoder import Decoder, DecoderConfig, KVCache


def _model(quant: str) -> Decoder:
    return Decoder(DecoderConfig(vocab_size=97, n_layer=2, n_head=2, d_model=64, block_size=32, quant=quant),
                   seed=0).eval()


@pytest.mark.parametrize("quant, tol", [("fp32", 1e-6), ("bitnet-b1.58", 3e-3)])
def test_prefill_then_decode_equals_the_full_forward_pass(quant, tol):
    # Ternary: an ulp from another summation order can flip an int8 activation code, hence the looser bound.
    model = _model(quant)
    idx = torch.randint(0, 97, (2, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(idx)[0]
        cache = model.new_cache(2)
        steps = [model.step(idx[:, :12], cache)] + [model.step(idx[:, t : t + 1], cache) for t in range(12, 16)]
        steps.append(model.step(idx[:, 16:], cache))  # a block of 4 after cached positions: causal within it
    assert cache.length == 20
    incremental = torch.cat(steps, dim=1)
    assert (incremental - full).abs().max() <= tol * full.abs().max()


def test_cached_generation_matches_uncached_and_falls_back_past_the_block():
    model = _model("fp32")
    prompt = torch.randint(0, 97, (1, 5), generator=torch.Generator().manual_seed(1))
    assert torch.equal(model.generate(prompt, 12, temperature=0), model.generate(prompt, 12, temperature=0, use_cache=True))
    long = model.generate(prompt, 40, temperature=0, use_cache=True)  # past block_size 32: recomputes, cropped
    assert long.shape == (1, 45) and torch.equal(long, model.generate(prompt, 40, temperature=0))


def test_a_full_cache_is_refused():
    model = _model("fp32")
    cache = model.new_cache(1, max_len=4)
    model.step(torch.zeros(1, 4, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="KV cache full: 5 positions > max_len 4"):
        model.step(torch.zeros(1, 1, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="max_len must be in"):
        KVCache(model.cfg, 1, 33)
