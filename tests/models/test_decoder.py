import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from bitscale.models import Decoder, DecoderConfig, count_params, decoder_config_for
from bitscale.nn import BitLinear

TINY = dict(vocab_size=32, n_layer=2, n_head=2, d_model=32, block_size=32)


def bitlinears(model):
    return [m for m in model.modules() if isinstance(m, BitLinear)]


@pytest.mark.parametrize("quant", ["fp32", "bitnet-b1.58"])
@pytest.mark.parametrize("mlp", ["swiglu", "relu2"])
def test_shapes_and_initial_loss(quant, mlp):
    cfg = DecoderConfig(vocab_size=256, n_layer=2, n_head=4, d_model=64, block_size=64, mlp=mlp, quant=quant)
    model = Decoder(cfg, seed=0)
    idx = torch.randint(0, 256, (3, 40), generator=torch.Generator().manual_seed(1))
    logits, loss = model(idx, idx)
    assert logits.shape == (3, 40, 256)
    assert abs(loss.item() - math.log(256)) < 0.1 * math.log(256)
    assert model(idx)[1] is None
    assert len(bitlinears(model)) == 2 * (4 + (3 if mlp == "swiglu" else 2))
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 65, dtype=torch.long))


@pytest.mark.parametrize("quant", ["fp32", "bitnet-b1.58"])
def test_causal(quant):
    model = Decoder(DecoderConfig(**TINY, quant=quant), seed=0)
    idx = torch.randint(0, 32, (2, 20), generator=torch.Generator().manual_seed(0))
    changed = idx.clone()
    t = 11
    changed[:, t] = (changed[:, t] + 1) % 32
    a, b = model(idx)[0], model(changed)[0]
    assert torch.equal(a[:, :t], b[:, :t])
    assert not torch.allclose(a[:, t:], b[:, t:])


def test_recipe_mode_norms():
    model = Decoder(DecoderConfig(**TINY, quant="bitnet-b1.58"))
    assert model.cfg.recipe
    for block in model.blocks:
        assert block.attn_norm is None and block.mlp_norm is None
    layers = bitlinears(model)
    assert layers and all(isinstance(m.norm, nn.RMSNorm) for m in layers)
    assert all(m.config.weight == "ternary" and m.config.act == "int8" for m in layers)
    assert not isinstance(model.head, BitLinear) and isinstance(model.norm, nn.RMSNorm)
    # The recipe's quantizer with the twin's block layout, when asked for.
    twin = Decoder(DecoderConfig(**TINY, quant="bitnet-b1.58", norm_in_bitlinear=False))
    assert all(isinstance(b.attn_norm, nn.RMSNorm) for b in twin.blocks)
    assert all(m.norm is None for m in bitlinears(twin))


def test_fp32_twin_is_plain_linear():
    model = Decoder(DecoderConfig(**TINY, quant="fp32"), seed=0)
    assert not model.cfg.recipe
    for block in model.blocks:
        assert isinstance(block.attn_norm, nn.RMSNorm) and isinstance(block.mlp_norm, nn.RMSNorm)
    for m in bitlinears(model):
        assert m.norm is None and m.config.is_full_precision and m.bias is None
        inp = torch.randn(2, 5, m.in_features)
        assert torch.equal(m(inp), F.linear(inp, m.weight))


def test_tie_weights_and_num_params():
    tied = Decoder(DecoderConfig(**TINY, tie_weights=True))
    assert tied.head.weight is tied.tok_emb.weight
    untied = Decoder(DecoderConfig(**TINY))
    assert untied.head.weight is not untied.tok_emb.weight
    V, d = 32, 32
    for model in (tied, untied):
        unique = sum(p.numel() for p in model.parameters())
        assert model.num_params(non_embedding=False) == unique == count_params(model.cfg, False)
        assert model.num_params() == count_params(model.cfg)
    assert untied.num_params(False) - tied.num_params(False) == V * d
    assert untied.num_params() == tied.num_params()


@pytest.mark.parametrize("target", [50_000, 50_000_000])
@pytest.mark.parametrize("quant", ["fp32", "bitnet-b1.58"])
def test_sizes_on_meta(target, quant):
    cfg = decoder_config_for(target, quant=quant)
    model = Decoder(cfg, device="meta")
    assert model.num_params() == sum(p.numel() for p in model.parameters()) - 2 * cfg.vocab_size * cfg.d_model
    assert model.num_params() == count_params(cfg)
    assert abs(model.num_params() / target - 1) < 0.2


def test_seed_is_deterministic():
    cfg = DecoderConfig(**TINY)
    a, b, c = Decoder(cfg, seed=3), Decoder(cfg, seed=3), Decoder(cfg, seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["tok_emb.weight"], sc["tok_emb.weight"])
    w = sa["blocks.0.attn.o_proj.weight"]
    assert abs(w.std().item() - 0.02 / math.sqrt(4)) < 0.003
    assert abs(sa["blocks.0.attn.q_proj.weight"].std().item() - 0.02) < 0.003


@pytest.mark.parametrize("quant", ["fp32", "bitnet-b1.58"])
@pytest.mark.parametrize("mlp", ["swiglu", "relu2"])
def test_overfits_repeated_sequence(quant, mlp):
    torch.manual_seed(0)
    model = Decoder(DecoderConfig(**TINY, quant=quant, mlp=mlp), seed=0)
    seq = torch.randint(0, 32, (8,), generator=torch.Generator().manual_seed(0)).repeat(4)
    x, y = seq[:-1].unsqueeze(0).repeat(4, 1), seq[1:].unsqueeze(0).repeat(4, 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = model(x, y)[1].item()
    for _ in range(100):
        loss = model(x, y)[1]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model(x, y)[1].item() < 0.5 * first


def test_generate():
    model = Decoder(DecoderConfig(**TINY), seed=0)
    idx = torch.randint(0, 32, (2, 5), generator=torch.Generator().manual_seed(0))
    out = model.generate(idx, 40, generator=torch.Generator().manual_seed(7))
    assert out.shape == (2, 45) and torch.equal(out[:, :5], idx)  # past block_size: context cropped
    again = model.generate(idx, 40, generator=torch.Generator().manual_seed(7))
    assert torch.equal(out, again)
    # top_k=1 is greedy; top_k=3 only ever samples one of the 3 most likely tokens.
    greedy = model.generate(idx, 6, temperature=0.0)
    assert torch.equal(model.generate(idx, 6, top_k=1, generator=torch.Generator().manual_seed(1)), greedy)
    out = model.generate(idx, 10, temperature=2.0, top_k=3, generator=torch.Generator().manual_seed(2))
    logits = model(out[:, :-1])[0]
    for t in range(5, 15):
        top3 = logits[:, t - 1].topk(3).indices
        assert (top3 == out[:, t : t + 1]).any(-1).all()


def test_dtype_and_config_validation():
    model = Decoder(DecoderConfig(**TINY, quant="fp32"), seed=0).to(torch.float64)
    logits, loss = model(torch.zeros(1, 4, dtype=torch.long), torch.zeros(1, 4, dtype=torch.long))
    assert logits.dtype == torch.float64 and torch.isfinite(loss)
    half = Decoder(DecoderConfig(**TINY), seed=0).to(torch.bfloat16)
    assert half.tok_emb.weight.dtype == torch.bfloat16 and half.rope_cos.dtype == torch.float32
    assert half(torch.zeros(1, 4, dtype=torch.long))[0].dtype == torch.bfloat16
    with pytest.raises(ValueError):
        DecoderConfig(d_model=30, n_head=4)
    with pytest.raises(ValueError):
        DecoderConfig(quant="nope")
    with pytest.raises(ValueError):
        DecoderConfig(bogus=1)
    assert DecoderConfig(d_model=128).ff_dim == 352 and DecoderConfig(mlp="relu2").ff_dim == 512
