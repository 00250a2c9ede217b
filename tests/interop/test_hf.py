"""Hugging Face interop (bitscale.interop.hf): export to transformers' BitNet Llama layout, read it back,
quantize a transformers Llama in place, and the `bitscale export-hf` command."""

from __future__ import annotations

import copy
import json

import pytest

transformers = pytest.importorskip("transformers")

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from bitscale.interop.hf import (  # noqa: E402
    export_hf,
    load_hf_decoder,
    pack_ternary,
    quantize_hf_,
    rope_permutation,
    ternary_codes_and_scale,
    unpack_ternary,
)
from bitscale.models.decoder import Decoder, DecoderConfig, apply_rope, rope_tables  # noqa: E402
from bitscale.nn import BitLinear  # noqa: E402

transformers.logging.set_verbosity_error()
IDS = torch.randint(0, 256, (4, 64), generator=torch.Generator().manual_seed(1))


@pytest.fixture(autouse=True)
def eager_transformers():
    """transformers' BitLinear is wrapped in torch.compile; compiling C++ kernels would take most of the
    time budget on a small CPU, so the tests run it eagerly (same formulas)."""
    import torch._dynamo

    with torch._dynamo.config.patch(disable=True):
        yield


def _trained(**fields) -> Decoder:
    torch.manual_seed(0)
    cfg = DecoderConfig(vocab_size=256, n_layer=2, n_head=4, d_model=64, block_size=64, **fields)
    model = Decoder(cfg, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(5):  # a few steps, so that the weights and norm gains are not at their init
        idx = torch.randint(0, 256, (4, 32))
        _, loss = model(idx, idx.roll(-1, 1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module", params=["recipe", "twin"])
def exported(request, tmp_path_factory):
    model = _trained(norm_in_bitlinear=None if request.param == "recipe" else False)
    return model, export_hf(model, tmp_path_factory.mktemp("hf") / request.param)


def _compare(ours: torch.Tensor, theirs: torch.Tensor, tol: float) -> tuple[float, float]:
    """(max |diff| / max |logit|, fraction of token positions whose logits all agree to tol * scale)."""
    scale = ours.abs().max().item()
    per_token = (ours - theirs).abs().amax(-1)
    return per_token.max().item() / scale, (per_token <= tol * scale).float().mean().item()


def test_transformers_loads_the_export_and_gives_our_logits(exported):
    pytest.importorskip("accelerate")  # transformers' BitNet quantizer requires it
    from transformers import AutoModelForCausalLM
    from transformers.integrations.bitnet import BitLinear as HFBitLinear

    model, out = exported
    hf64 = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float64)
    assert type(hf64).__name__ == "LlamaForCausalLM"
    assert isinstance(hf64.model.layers[0].self_attn.q_proj, HFBitLinear)
    assert isinstance(hf64.model.layers[1].mlp.down_proj, HFBitLinear)
    assert type(hf64.lm_head) is nn.Linear  # full precision
    with torch.no_grad():
        # float64: the only differences left are float32 steps inside transformers (RoPE angles, RMSNorm),
        # which can flip an int8 activation rounding at the odd token.
        worst, agree = _compare(copy.deepcopy(model).double()(IDS)[0], hf64(IDS).logits, 1e-6)
        assert agree >= 0.97, (worst, agree)
        assert worst < 2e-3
        # float32, as deployed: more rounding differences, so more (isolated) flips.
        hf32 = AutoModelForCausalLM.from_pretrained(out)
        worst32, agree32 = _compare(model(IDS)[0], hf32(IDS).logits, 1e-4)
        assert agree32 >= 0.8, (worst32, agree32)
        assert worst32 < 3e-2
    print(f"\nlogits vs transformers: fp64 max rel {worst:.2e}, {agree:.1%} tokens within 1e-6; fp32 max rel {worst32:.2e}, {agree32:.1%} within 1e-4")


def test_packed_bytes_match_a_hand_example_and_transformers_unpack():
    from transformers.integrations.bitnet import pack_weights, unpack_weights

    # 8 rows: rows r, r+2, r+4, r+6 share the byte of packed row r (bits 0-1, 2-3, 4-5, 6-7), as code + 1.
    codes = torch.tensor([[0, -1], [1, 1], [-1, 0], [1, -1], [1, 0], [0, 0], [-1, 1], [-1, -1]], dtype=torch.int8)
    expected = torch.tensor(
        [
            [0b00_10_00_01, 0b10_01_01_00],  # rows 0, 2, 4, 6 -> fields (1, 0, 2, 0) / (0, 1, 1, 2)
            [0b00_01_10_10, 0b00_01_00_10],  # rows 1, 3, 5, 7 -> fields (2, 2, 1, 0) / (2, 0, 1, 0)
        ],
        dtype=torch.uint8,
    )
    assert torch.equal(pack_ternary(codes), expected)
    assert torch.equal(unpack_ternary(expected), codes)
    assert torch.equal(unpack_weights(expected, dtype=torch.float32), codes.float())
    big = torch.randint(-1, 2, (64, 48), generator=torch.Generator().manual_seed(0), dtype=torch.int8)
    assert torch.equal(pack_ternary(big), pack_weights(big.clone()))
    assert torch.equal(unpack_weights(pack_ternary(big), dtype=torch.float32), big.float())
    with pytest.raises(ValueError, match="multiple of 4"):
        pack_ternary(big[:6])
    with pytest.raises(ValueError, match="not a ternary code"):
        unpack_ternary(torch.full((1, 1), 0b11, dtype=torch.uint8))


def test_rope_permutation_turns_pair_rotation_into_rotate_half():
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    n_head, hd, T = 2, 8, 5
    x = torch.randn(1, n_head, T, hd, dtype=torch.float64)
    cos, sin = rope_tables(T, hd, 10000.0)
    ours = apply_rope(x, cos, sin)
    perm = rope_permutation(n_head, hd).reshape(n_head, hd)[0]  # one head's order
    c2, s2 = torch.cat((cos, cos), -1)[None].double(), torch.cat((sin, sin), -1)[None].double()
    theirs, _ = apply_rotary_pos_emb(x[..., perm], x[..., perm], c2, s2)
    assert torch.allclose(theirs, ours[..., perm], atol=1e-12)


SCALE_RTOL = 4 * torch.finfo(torch.float32).eps


def test_load_hf_decoder_gives_the_same_codes_and_logits(exported, tmp_path):
    model, out = exported
    back = load_hf_decoder(out)
    assert back.cfg == model.cfg
    eps = model.cfg.quant_config.eps
    for (name, a), (_, b) in zip(model.named_modules(), back.named_modules()):
        if isinstance(a, BitLinear):  # re-quantizing the imported latent weight: same codes, same scale
            (ca, sa), (cb, sb) = ternary_codes_and_scale(a.weight, eps), ternary_codes_and_scale(b.weight, eps)
            assert torch.equal(ca, cb), name
            # 1 / mean|W| cannot hit every float32, and the mean over the imported weight is rounded afresh:
            # the scale comes back exact or within a few ulps (2.2 float32 eps measured on one machine).
            assert torch.allclose(sa, sb, rtol=SCALE_RTOL, atol=0), name
    # Re-exporting gives the same packed codes and norms (scales within a few ulps).
    again = export_hf(back, tmp_path / "again")
    first, second = load_file(out / "model.safetensors"), load_file(again / "model.safetensors")
    assert first.keys() == second.keys()
    for key in first:
        if key.endswith("weight_scale"):
            assert torch.allclose(first[key], second[key], rtol=SCALE_RTOL, atol=0), key
        else:
            assert torch.equal(first[key], second[key]), key
    with torch.no_grad():
        # The original's fake-quantized weight is W + (Q(W) - W) (the STE's value), within an ulp of
        # codes / weight_scale, which is what the import reproduces: flips at the odd token only.
        worst, agree = _compare(model(IDS)[0], back(IDS)[0], 1e-4)
        assert agree >= 0.7 and worst < 3e-2, (worst, agree)
        print(f"\nlogits vs re-imported: max rel {worst:.2e}, {agree:.1%} tokens within 1e-4")
        assert torch.equal(back(IDS)[0], load_hf_decoder(out)(IDS)[0])  # deterministic


@pytest.mark.parametrize(
    "fields, match",
    [
        ({"quant": "bitnet"}, "quant.weight is 'binary'"),
        ({"quant": "fp32"}, "quant.weight is 'fp32'"),
        ({"quant": {"preset": "bitnet-b1.58", "granularity": "channel"}}, "quant.granularity"),
        ({"mlp": "relu2"}, "model.mlp is 'relu2'"),
        ({"d_ff": 66}, "model.d_ff is 66"),
    ],
)
def test_unrepresentable_models_are_refused(fields, match, tmp_path):
    model = Decoder(DecoderConfig(vocab_size=32, n_layer=1, n_head=2, d_model=16, block_size=8, **fields))
    with pytest.raises(ValueError, match=match):
        export_hf(model, tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.fixture
def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=32)
    return LlamaForCausalLM(cfg).eval()


def test_quantize_hf_fp32_keeps_weights_and_logits(tiny_llama):
    ids = torch.randint(0, 128, (2, 16))
    with torch.no_grad():
        before = tiny_llama(ids).logits
    weights = {n: p for n, p in tiny_llama.named_parameters()}
    quantize_hf_(tiny_llama, "fp32")
    linears = [n for n, m in tiny_llama.named_modules() if isinstance(m, BitLinear)]
    assert len(linears) == 2 * 7 and all(".layers." in n for n in linears)
    assert type(tiny_llama.lm_head) is nn.Linear and type(tiny_llama.model.embed_tokens) is nn.Embedding
    assert all(p is weights[n] for n, p in tiny_llama.named_parameters())  # the same Parameter objects
    with torch.no_grad():
        assert torch.equal(tiny_llama(ids).logits, before)


def test_quantize_hf_ternary_layers_compute_the_formula(tiny_llama):
    head = tiny_llama.lm_head.weight.detach().clone()
    quantize_hf_(tiny_llama)
    seen = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, (m, i[0], o)))
             for n, m in tiny_llama.named_modules() if isinstance(m, BitLinear)]
    with torch.no_grad():
        tiny_llama(torch.randint(0, 128, (2, 16)))
    for h in hooks:
        h.remove()
    assert len(seen) == 14
    for name, (layer, x, y) in seen.items():
        w = layer.weight
        gamma = w.abs().mean().clamp(min=1e-5)
        w_q = (w / gamma).round().clamp(-1, 1) * gamma
        s = 127 / x.abs().amax(-1, keepdim=True).clamp(min=1e-5)
        x_q = (x * s).round().clamp(-128, 127) / s
        assert torch.allclose(y, F.linear(x_q, w_q), atol=1e-6, rtol=1e-5), name
    assert torch.equal(tiny_llama.lm_head.weight, head)


def test_quantize_hf_norm_puts_an_rmsnorm_in_each_layer(tiny_llama):
    quantize_hf_(tiny_llama, norm=True)
    layer = tiny_llama.model.layers[0].mlp.down_proj
    assert isinstance(layer, BitLinear) and isinstance(layer.norm, nn.RMSNorm)
    with pytest.raises(ValueError, match="no nn.Linear matched"):
        quantize_hf_(nn.Sequential(nn.Linear(2, 2)))


def _run_dir(tmp_path, quant="bitnet-b1.58"):
    from bitscale.data.tokenizers import ByteTokenizer
    from bitscale.train.lm import LMRunConfig, save_lm

    cfg = LMRunConfig.model_validate({
        "model": {"n_layer": 2, "n_head": 2, "d_model": 32, "block_size": 32, "quant": quant},
        "data": {"block_size": 32},
        "train": {"steps": 10, "batch_size": 2, "warmup_steps": 1},
    })
    return save_lm(tmp_path / f"run-{quant}", Decoder(cfg.model, seed=0), ByteTokenizer(), cfg)


def test_cli_export_hf(tmp_path, cli):
    run = _run_dir(tmp_path)
    code, out, err = cli("export-hf", run, tmp_path / "hf")
    assert code == 0, err
    assert "config.json" in out and "model.safetensors" in out and "ternary weights" in out
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["quantization_config"]["quant_method"] == "bitnet"
    assert config["architectures"] == ["LlamaForCausalLM"]
    back = load_hf_decoder(tmp_path / "hf")
    assert back.cfg == Decoder(back.cfg).cfg and back.cfg.d_model == 32

    code, out, err = cli("export-hf", _run_dir(tmp_path, "bitnet"), tmp_path / "hf2")
    assert code == 2 and "quant.weight" in err and len(err.strip().splitlines()) == 1
    code, out, err = cli("export-hf", tmp_path / "hf", tmp_path / "hf3")  # an HF dir is not a run dir
    assert code == 2 and err.startswith("error:") and len(err.strip().splitlines()) == 1
    code, out, err = cli("export-hf", tmp_path / "missing", tmp_path / "hf4")
    assert code == 2 and "no such directory" in err
