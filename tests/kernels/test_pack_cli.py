"""`bitscale pack` and `bitscale generate --packed`, in process."""

import re

import pytest
import torch

from bitscale.data.tokenizers import ByteTokenizer
from bitscale.kernels.packfile import file_metadata
from bitscale.models.decoder import Decoder, DecoderConfig
from bitscale.nn import PackedBitLinear
from bitscale.runs import load_packed, load_packed_lm


def lm_run(tmp_path, quant="bitnet-b1.58"):
    from bitscale.train.lm_config import LMDataConfig, LMRunConfig
    from bitscale.train.lm_files import save_lm

    cfg = DecoderConfig(vocab_size=256, n_layer=1, n_head=2, d_model=32, block_size=32, quant=quant)
    run = LMRunConfig(model=cfg, data=LMDataConfig(block_size=32))
    return save_lm(tmp_path / f"lm-{quant}", Decoder(cfg, seed=0), ByteTokenizer(), run)


def regression_run(tmp_path, quant="bitnet-b1.58"):
    from bitscale.train import ModelSpec, RunConfig, RunResult, TaskSpec, build_model, save_run

    cfg = RunConfig(model=ModelSpec(kind="mlp", width=16, depth=2, quant=quant), task=TaskSpec(d=8))
    model = build_model(cfg.model, cfg.task.d, cfg.train.seed)
    return save_run(tmp_path / f"reg-{quant}", model, cfg, RunResult(status="done", steps_done=0, diverged_at=None))


def test_pack_lm_run(cli, tmp_path):
    run = lm_run(tmp_path)
    out = tmp_path / "lm.packed.safetensors"
    code, stdout, err = cli("pack", run, out)
    assert code == 0, err
    assert "packed 7 layers (ternary-b3)" in stdout
    m = re.search(r"fp32 ([\d,]+) B -> packed ([\d,]+) B \(([\d.]+) storage bits/weight", stdout)
    assert m and int(m[1].replace(",", "")) == 4 * (4 * 32 * 32 + 3 * 32 * 96)
    assert 1.6 <= float(m[3]) < 1.8  # rows of 32 codes take 7 bytes: 1.75 bits + scale
    assert "whole model: fp32" in stdout and out.is_file()
    assert file_metadata(out)["model"]["kind"] == "lm"
    model, tokenizer, cfg = load_packed_lm(out)
    assert sum(isinstance(x, PackedBitLinear) for x in model.modules()) == 7
    assert cfg.model.d_model == 32 and isinstance(tokenizer, ByteTokenizer)


def test_pack_regression_run_into_a_directory(cli, tmp_path):
    run = regression_run(tmp_path, "bitnet")
    out = tmp_path / "outdir"
    out.mkdir()
    code, stdout, err = cli("pack", run, out, "--format", "ternary2")
    assert code == 0, err
    assert "packed 2 layers (binary), left 1 BitLinear in full precision (head: weight scheme 'fp32'" in stdout
    model = load_packed(out / "model.packed.safetensors")
    assert sum(isinstance(x, PackedBitLinear) for x in model.modules()) == 2
    assert model(torch.randn(3, 8)).shape == (3,)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda p: p / "missing", "no such directory"),
        (lambda p: p, "missing config.json"),
        (lambda p: regression_run(p, "fp32"), "nothing to pack"),
        (lambda p: lm_run(p, "fp32"), "nothing to pack"),
    ],
)
def test_pack_bad_input(cli, tmp_path, make, match):
    code, stdout, err = cli("pack", make(tmp_path), tmp_path / "out.safetensors")
    assert code == 2 and match in err and err.startswith("error:") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.safetensors").exists()


def rates(stdout):
    m = re.search(r"tokens/s: fp32 ([\d.]+) \| fp32 fake-quant ([\d.]+) \| packed ([\d.]+) \| speedup vs fp32 ([\d.]+)x",
                  stdout)
    assert m, stdout
    return float(m[1]), float(m[3]), float(m[4])


def test_generate_packed_from_a_run(cli, tmp_path):
    run = lm_run(tmp_path)
    code, stdout, err = cli("generate", run, "--packed", "--prompt", "To be", "--max-new-tokens", "8", "--temperature", "0")
    assert code == 0, err
    fp, pk, speedup = rates(stdout)
    assert fp > 0 and pk > 0 and speedup > 0
    assert stdout.startswith("To be")
    assert "outputs agree" in stdout  # greedy on identical logits up to float rounding
    code, plain, _ = cli("generate", run, "--prompt", "To be", "--max-new-tokens", "8", "--temperature", "0")
    assert plain.splitlines()[0] == stdout.splitlines()[0]


def test_generate_packed_random_decoder(cli):
    code, stdout, err = cli("generate", "--random-decoder", "2x64", "--packed", "--max-new-tokens", "4")
    assert code == 0, err
    rates(stdout)
    assert "2 packed layers" not in stdout and "14 packed layers" in stdout


@pytest.mark.parametrize("args,match", [((), "one of them"), (("--random-decoder", "4by256"), "LAYERSxWIDTH"), (("x", "--random-decoder", "1x32"), "one of them")])
def test_generate_bad_input(cli, args, match):
    code, _, err = cli("generate", *args)
    assert code == 2 and match in err
