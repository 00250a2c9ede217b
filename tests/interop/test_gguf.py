"""GGUF export and import (llama.cpp's bitnet architecture), checked without llama.cpp: codes, scales and
logits survive the round trip; what llama.cpp cannot hold is refused in one line; damaged files too."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")

from bitscale.interop.gguf_export import write_gguf  # noqa: E402
from bitscale.interop.gguf_import import GGUFError, load_gguf_decoder  # noqa: E402
from bitscale.interop.gguf_layout import PROJECTIONS, byte_to_unicode, scale_of  # noqa: E402
from bitscale.models.decoder import Decoder, DecoderConfig  # noqa: E402
from bitscale.quant.weights import weight_codes  # noqa: E402

CFG = dict(vocab_size=300, n_layer=2, n_head=2, d_model=256, d_ff=512, block_size=64, tie_weights=True)


def decoder(shared_gains: bool = True, **changes) -> Decoder:
    """A decoder with random (not unit) norm gains; equal where llama.cpp shares them when `shared_gains`."""
    model = Decoder(DecoderConfig(**{**CFG, **changes}), seed=0).eval()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        model.norm.weight.copy_(torch.rand(model.cfg.d_model, generator=gen) + 0.5)
        for block in model.blocks:
            for group in (("attn.q_proj", "attn.k_proj", "attn.v_proj"), ("attn.o_proj",),
                          ("mlp.gate_proj", "mlp.up_proj"), ("mlp.down_proj",)):
                gain = torch.rand(block.get_submodule(group[0]).in_features, generator=gen) + 0.5
                for path in group:
                    block.get_submodule(path).norm.weight.copy_(gain if shared_gains else gain * (1 + 0.1 * torch.rand(
                        gain.shape, generator=gen)))
    return model


def codes_and_inverse(layer):
    return weight_codes(layer.weight.detach(), "ternary", "tensor", None, True, layer.config.eps)


@pytest.mark.parametrize("ternary_type, bytes_per_block", [("tq2_0", 66), ("tq1_0", 54)])
def test_codes_scales_and_logits_survive_the_round_trip(tmp_path, ternary_type, bytes_per_block):
    model = decoder()
    path = write_gguf(model, tmp_path / "m.gguf", ternary_type=ternary_type)
    reader = gguf.GGUFReader(path)
    q = next(t for t in reader.tensors if t.name == "blk.0.attn_q.weight")
    assert q.tensor_type.name == ternary_type.upper() and q.n_bytes == 256 * 256 // 256 * bytes_per_block
    back, tokenizer = load_gguf_decoder(path)
    assert back.cfg == model.cfg and type(tokenizer).__name__ == "ByteTokenizer"
    for block, other in zip(model.blocks, back.blocks):
        for ours, _ in PROJECTIONS:
            (c1, i1), (c2, i2) = codes_and_inverse(block.get_submodule(ours)), codes_and_inverse(other.get_submodule(ours))
            assert torch.equal(c1, c2) and torch.equal(i1, i2), ours  # codes and scale exactly
    idx = torch.randint(0, 300, (2, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(back(idx)[0], model(idx)[0], rtol=1e-5, atol=1e-5)


def test_the_block_scales_are_one_and_the_tensor_scale_is_gamma(tmp_path):
    model = decoder()
    reader = gguf.GGUFReader(write_gguf(model, tmp_path / "m.gguf"))
    tensors = {t.name: t for t in reader.tensors}
    values = gguf.quants.dequantize(tensors["blk.1.ffn_down.weight"].data, gguf.GGMLQuantizationType.TQ2_0)
    codes, inv = codes_and_inverse(model.blocks[1].mlp.down_proj)
    assert np.array_equal(values, codes.numpy())  # d = 1 in every block: the values are the codes
    gamma = tensors["blk.1.ffn_down.scale"].data[0]
    assert gamma == scale_of(float(inv)) and np.float32(1) / gamma == np.float32(inv)
    assert abs(gamma * float(inv) - 1) < 1e-6


def test_scale_of_inverts_exactly():
    for inv in np.float32([1.0, 3.0, 62.51044845581055, 125.43145751953125, 1e-3, 7.0e4]):
        assert np.float32(1) / scale_of(float(inv)) == inv


def test_byte_vocabulary_is_gpt2s_byte_alphabet():
    table = byte_to_unicode()
    assert len(set(table.values())) == 256 and table[ord("A")] == "A" and table[ord(" ")] == "\u0120"


def test_a_bpe_tokenizer_round_trips(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")  # noqa: F841
    from bitscale.data.tokenizers import BPETokenizer

    text = "the cat sat on the mat; the dog sat on the log. " * 50
    tok = BPETokenizer.train(text, 280)
    path = write_gguf(decoder(), tmp_path / "bpe.gguf", tok)
    _, back = load_gguf_decoder(path)
    sample = "the dog sat on the cat"
    assert back.encode(sample) == tok.encode(sample) and back.decode(tok.encode(sample)) == sample


@pytest.mark.parametrize("changes, field", [
    ({"tie_weights": False}, "model.tie_weights"),
    ({"mlp": "relu2", "d_ff": 512}, "model.mlp"),
    ({"d_model": 128, "n_head": 2}, "model.d_model"),
    ({"d_ff": 384}, "model.d_ff"),
    ({"quant": "bitnet"}, "quant"),
    ({"quant": "fp32"}, "quant"),
])
def test_what_llama_cpp_cannot_hold_is_refused_in_one_line(tmp_path, changes, field):
    with pytest.raises(ValueError) as err:
        write_gguf(Decoder(DecoderConfig(**{**CFG, **changes}), seed=0), tmp_path / "x.gguf")
    assert str(err.value).startswith(field) and "\n" not in str(err.value)
    assert not (tmp_path / "x.gguf").exists()


def test_unshared_gains_are_refused_unless_merged(tmp_path):
    model = decoder(shared_gains=False)
    with pytest.raises(ValueError, match=r"blocks\.0\.attn\.k_proj\.norm\.weight differs .* --merge-norms"):
        write_gguf(model, tmp_path / "x.gguf")
    back, _ = load_gguf_decoder(write_gguf(model, tmp_path / "x.gguf", merge_norms=True))
    q, k = back.blocks[0].attn.q_proj.norm.weight, back.blocks[0].attn.k_proj.norm.weight
    mean = torch.stack([model.blocks[0].get_submodule(p).norm.weight for p in ("attn.q_proj", "attn.k_proj",
                                                                                 "attn.v_proj")]).mean(0)
    assert torch.equal(q, k) and torch.allclose(q, mean)
    torch.testing.assert_close(back.blocks[0].attn.o_proj.norm.weight, model.blocks[0].attn.o_proj.norm.weight)


def _write_raw(path, arch="bitnet", tensors=(), keys=None):
    writer = gguf.GGUFWriter(path, arch)
    for key, value in (keys or {}).items():
        writer.add_uint32(key, value)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([byte_to_unicode()[b] for b in range(256)])
    for name, array in tensors:
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_bad_files_are_refused_in_one_line_before_any_model_is_built(tmp_path):
    good = write_gguf(decoder(), tmp_path / "good.gguf")
    data = good.read_bytes()
    cases = {
        "truncated": data[: len(data) // 2],
        "header only": data[:100],
        "empty": b"",
        "not gguf": b"GGUX" + data[4:],
    }
    for what, content in cases.items():
        path = tmp_path / f"{what}.gguf"
        path.write_bytes(content)
        with pytest.raises(GGUFError) as err:
            load_gguf_decoder(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value), what
    with pytest.raises(GGUFError, match="general.architecture: expected 'bitnet'.*got 'llama'"):
        load_gguf_decoder(_write_raw(tmp_path / "llama.gguf", arch="llama"))
    keys = {f"bitnet.{k}": v for k, v in (("context_length", 64), ("embedding_length", 256), ("block_count", 1),
                                         ("feed_forward_length", 512), ("attention.head_count", 2))}
    wrong = _write_raw(tmp_path / "shape.gguf", keys=keys,
                       tensors=[("token_embd.weight", np.zeros((256, 128), np.float32))])
    with pytest.raises(GGUFError, match=r"tensor 'token_embd.weight': shape \[256, 128\] disagrees .* \[256, 256\]"):
        load_gguf_decoder(wrong)
    missing = _write_raw(tmp_path / "missing.gguf", keys=keys,
                         tensors=[("token_embd.weight", np.zeros((256, 256), np.float32)),
                                  ("output_norm.weight", np.ones(256, np.float32))])
    with pytest.raises(GGUFError, match="tensor 'blk.0.attn_norm.weight': missing"):
        load_gguf_decoder(missing)


def test_a_projection_with_per_block_scales_or_the_wrong_type_is_refused(tmp_path):
    model = decoder(n_layer=1)
    path = write_gguf(model, tmp_path / "m.gguf")
    reader = gguf.GGUFReader(path)
    tensors = {t.name: t for t in reader.tensors}
    blocks = np.array(tensors["blk.0.attn_q.weight"].data)  # (rows, bytes): 66 bytes per block, d last
    assert blocks.shape[1] % 66 == 0
    # A copy of the file in which one block's fp16 scale is 2 instead of 1 (other producers' layout).
    raw = bytearray(path.read_bytes())
    start = tensors["blk.0.attn_q.weight"].data_offset
    raw[start + 64 : start + 66] = np.float16(2.0).tobytes()
    (tmp_path / "blocks.gguf").write_bytes(bytes(raw))
    with pytest.raises(GGUFError, match="blk.0.attn_q.weight.*2 different scales"):
        load_gguf_decoder(tmp_path / "blocks.gguf")
    meta = json.loads(str(reader.fields["bitscale.decoder"].contents()))
    assert meta["d_model"] == 256


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    """A trained (two steps) LM run that llama.cpp's bitnet graph can hold, written by train_lm."""
    from bitscale.train.lm import train_lm
    from bitscale.train.lm_config import LMRunConfig

    out = tmp_path_factory.mktemp("gguf") / "run"
    cfg = LMRunConfig.model_validate({
        "eval_batches": 1, "model": {"n_layer": 1, "n_head": 2, "d_model": 256, "d_ff": 512, "block_size": 32,
                                     "tie_weights": True},
        "data": {"block_size": 32}, "train": {"steps": 2, "batch_size": 2, "warmup_steps": 0, "eval_every": 2}})
    train_lm(cfg, out)
    return out


def test_the_cli_exports_a_trained_run_with_merged_norms_and_imports_it_back(lm_run, tmp_path, capsys, monkeypatch):
    from tests.test_fuzz import assert_refused, invoke

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run.gguf"
    # Training moved the q, k and v gains apart: the plain export is refused, in one line.
    assert_refused(["export-gguf", str(lm_run), str(out)], tmp_path, capsys, "unshared gains")
    code, stdout, stderr = invoke(["export-gguf", str(lm_run), str(out), "--merge-norms", "--type", "tq1_0"], capsys)
    assert code == 0, stderr
    assert "wrote" in stdout and "differ from the run's by at most" in stdout and out.stat().st_size > 0
    code, stdout, stderr = invoke(["import-gguf", str(out), str(tmp_path / "back")], capsys)
    assert code == 0, stderr
    from bitscale.train.lm_files import load_lm

    model, tokenizer, cfg = load_lm(tmp_path / "back")
    assert cfg.model.tie_weights and type(tokenizer).__name__ == "ByteTokenizer"
    assert_refused(["export-gguf", str(lm_run), str(out), "--type", "q4_0"], tmp_path, capsys, "bad type")
    assert_refused(["import-gguf", str(lm_run / "config.json"), str(tmp_path / "x")], tmp_path, capsys, "not gguf")
    assert_refused(["export-gguf", str(lm_run), str(lm_run / "model.safetensors")], tmp_path, capsys, "own input")


@pytest.mark.slow
def test_llama_cpp_loads_the_export_and_its_logits_agree(tmp_path):
    """llama.cpp itself (through llama-cpp-python, which builds it from its bundled source) runs the file.
    Its logits cannot equal ours bit for bit: it quantizes activations per block of 256 (Q8_K) where
    we quantize per token, and sums in another order; the agreement is measured (docs/interop.md)."""
    llama_cpp = pytest.importorskip(
        "llama_cpp", reason="llama-cpp-python is not installed (pip install llama-cpp-python builds llama.cpp)")
    model = decoder()
    ids = torch.randint(0, 256, (48,), generator=torch.Generator().manual_seed(5)).tolist()
    with torch.no_grad():
        ours = model(torch.tensor([ids]))[0][0].numpy()
    for ternary_type in ("tq2_0", "tq1_0"):
        path = write_gguf(model, tmp_path / f"{ternary_type}.gguf", ternary_type=ternary_type)
        llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, logits_all=True, verbose=False, n_threads=2)
        llm.eval(ids)
        theirs = np.asarray(llm.scores[: len(ids)], dtype=np.float32)[:, : model.cfg.vocab_size]
        error = float(np.abs(theirs - ours).max() / np.abs(ours).max())
        agree = float((theirs.argmax(-1) == ours.argmax(-1)).mean())
        print(f"llama.cpp {ternary_type}: max |dlogit| / max |logit| = {error:.4f}, argmax agreement {agree:.3f}")
        assert error < 0.05 and agree > 0.9
