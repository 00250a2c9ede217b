"""The numba decode step of a packed Decoder against the torch path, and when it steps aside."""

from __future__ import annotations

import pytest
import torch

from bitscale.models import fast_decode
from bitscale.models.decoder import Decoder, DecoderConfig
from bitscale.nn import pack

pytest.importorskip("numba")


def _packed(**kw) -> Decoder:
    cfg = DecoderConfig(vocab_size=97, n_layer=2, n_head=4, d_model=128, block_size=48, quant="bitnet-b1.58", **kw)
    return pack(Decoder(cfg, seed=0).eval())


def _decode(model, idx, fast: bool):
    """Logits of a 10-token prefill and then one token per step, with or without the engine."""
    cache = model.new_cache(idx.shape[0])
    with torch.no_grad():
        steps = [model.step(idx[:, :10], cache)]
        for t in range(10, idx.shape[1]):
            with torch.enable_grad() if not fast else torch.no_grad():  # grad mode keeps the torch path
                steps.append(model.step(idx[:, t : t + 1], cache))
    return torch.cat(steps, dim=1), cache


@pytest.mark.parametrize("kw", [{}, {"mlp": "relu2"}, {"norm_in_bitlinear": False}, {"tie_weights": True}])
def test_the_engine_decodes_what_the_torch_path_decodes(kw):
    model = _packed(**kw)
    assert fast_decode.unfit_reason(model) is None
    idx = torch.randint(0, 97, (2, 24), generator=torch.Generator().manual_seed(0))
    fast, fast_cache = _decode(model, idx, fast=True)
    slow, slow_cache = _decode(model, idx, fast=False)
    assert model.__dict__["_fast_decode"] is not None
    assert fast_cache.length == slow_cache.length == 24
    slow = slow.detach()
    # Sums in another order than torch's: mostly an ulp, but an ulp can flip an int8 activation code at a
    # rounding tie and that moves a logit by up to a few 1e-3 (the same bound as tests/models/test_kv_cache).
    diff = (fast - slow).abs()
    assert diff.max() <= 5e-3 * slow.abs().max()
    assert diff.median() <= 1e-5 * slow.abs().max()
    for a, b in ((fast_cache.k, slow_cache.k), (fast_cache.v, slow_cache.v)):
        assert (a - b).abs().max() <= 5e-3 * b.abs().max() and (a - b).abs().median() <= 1e-6


def test_generation_with_the_engine_matches_the_full_forward_pass():
    model = _packed()
    prompt = torch.randint(0, 97, (1, 6), generator=torch.Generator().manual_seed(2))
    cached = model.generate(prompt, 20, temperature=0, use_cache=True)
    assert torch.equal(cached, model.generate(prompt, 20, temperature=0))


def test_the_engine_is_rebuilt_after_a_change_and_steps_aside_when_it_cannot_run():
    model = _packed()
    engine = fast_decode.engine_for(model)
    assert engine is not None and fast_decode.engine_for(model) is engine
    model.load_state_dict(model.state_dict())  # re-prepares every packed layer
    rebuilt = fast_decode.engine_for(model)
    assert rebuilt is not None and rebuilt is not engine
    model.blocks[1].mlp.up_proj = torch.nn.Linear(128, model.cfg.ff_dim, bias=False)
    assert "blocks.1 up_proj is a Linear" in fast_decode.unfit_reason(model)
    assert fast_decode.engine_for(model) is None
    assert "not a PackedBitLinear" in fast_decode.unfit_reason(Decoder(DecoderConfig(n_layer=1, quant="fp32")))
    assert "bfloat16" in fast_decode.unfit_reason(_packed().to(torch.bfloat16))


def test_the_thread_chooser_follows_the_faster_count_and_keeps_exploring():
    chooser = fast_decode.ThreadChooser(2, explore=4, window=3, max_explore=16)
    cost = {1: 3.0, 2: 1.0}  # an idle machine: 2 threads are faster

    def run(steps):
        picks = []
        for _ in range(steps):
            n = chooser.pick()
            picks.append(n)
            chooser.record(n, cost[n])
        return picks

    picks = run(60)
    assert picks[:2] == [2, 1]  # each count timed once first
    # then 1 thread only when exploring, at intervals that double while the choice holds: 4, 8, 16, 16
    assert [i + 1 for i, n in enumerate(picks) if n == 1] == [2, 4, 12, 28, 44, 60] and chooser.current == 2
    cost = {1: 3.0, 2: 20.0}  # a competing process arrives: 2 threads now stall, noticed without exploring
    picks = run(3)
    assert picks[:2] == [2, 2] and chooser.current == 1
    cost = {1: 3.0, 2: 1.0}  # it leaves: the next exploration, 4 steps after the switch, finds 2 threads again
    picks = run(12)
    assert chooser.current == 2 and picks.count(1) >= 3
    assert fast_decode.ThreadChooser(1).options == [1]
