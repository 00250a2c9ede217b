"""One answer for bits per weight (issue 14): `summary`, the store, `bitscale pack` and the packed file agree.

Two named figures, each defined once:
- precision bits P (`QuantConfig.precision_bits`, store column `precision_bits`): log2 of the code levels,
  ternary log2(3), binary 1, fp32 32; the laws' precision variable;
- storage bits per weight (`QuantConfig.storage_bits_per_weight`, store column `storage_bits_per_weight`):
  the packed format's bits with row padding and float32 scales (`bitscale.kernels.formats.bits_per_weight`).
A small decoder per precision goes through a real one-run sweep into a store, `summary`, and `bitscale pack`.
"""

from __future__ import annotations

import math
import re

import pytest

from bitscale.data.tokenizers import ByteTokenizer
from bitscale.kernels import formats
from bitscale.models.decoder import Decoder
from bitscale.nn import BitLinear, summary
from bitscale.nn.packed import packed_layers
from bitscale.runs import load_packed
from bitscale.sweep.executors import SerialExecutor
from bitscale.sweep.runner import run_sweep
from bitscale.sweep.spec import load_sweep
from bitscale.sweep.store import load_runs
from bitscale.train.lm_files import save_lm

# d_model 36 and d_ff 96: rows of 36 and 96 codes, neither a multiple of 5 nor of 8, so padding counts
SWEEP = """
name = "bits"
kind = "lm"
[base]
eval_batches = 1
model = {{ n_layer = 1, d_model = 36, n_head = 2, d_ff = 96, block_size = 8, quant = "{quant}" }}
data = {{ block_size = 8 }}
train = {{ steps = 1, batch_size = 2, eval_every = 1, warmup_steps = 0 }}
"""

PRECISION = {"bitnet-b1.58": math.log2(3), "bitnet": 1.0, "fp32": 32.0}
FORMAT = {"bitnet-b1.58": "ternary-b3", "bitnet": "binary"}


@pytest.mark.parametrize("quant", ["bitnet-b1.58", "bitnet", "fp32"])
def test_summary_store_and_pack_agree(tmp_path, cli, quant):
    path = tmp_path / "bits.toml"
    path.write_text(SWEEP.format(quant=quant))
    sweep, (spec,) = load_sweep(path)
    store = tmp_path / "bits.db"
    assert run_sweep(sweep, [spec], store, SerialExecutor()).count("done") == 1
    row = load_runs(store).set_index("id").loc[spec.id]
    assert "bits_per_weight" not in row.index  # no third figure in the store

    model = Decoder(spec.config.model, seed=0)
    size = summary(model)

    # precision bits: log2 of the code levels, the same in summary, every layer and the store
    assert size.precision_bits == row["precision_bits"] == PRECISION[quant]
    quantized = [layer for layer in size.layers if layer.quantized_weights]
    assert all(layer.precision_bits == PRECISION[quant] for layer in quantized)
    if quant == "fp32":
        assert not quantized and size.storage_bits_per_weight == row["storage_bits_per_weight"] == 32.0
        return

    # storage bits: summary == the store, both from the packed format
    n_bitlinear = sum(isinstance(m, BitLinear) for m in model.modules())
    assert len(quantized) == n_bitlinear == 7
    assert size.storage_bits_per_weight == pytest.approx(row["storage_bits_per_weight"], rel=1e-12)
    shapes = [tuple(m.weight.shape) for m in model.modules() if isinstance(m, BitLinear)]
    by_format = sum(formats.bits_per_weight(s, FORMAT[quant]) * s[0] * s[1] for s in shapes) / sum(
        s[0] * s[1] for s in shapes)
    assert size.storage_bits_per_weight == pytest.approx(by_format, rel=1e-12)
    assert size.storage_bits_per_weight != pytest.approx(PRECISION[quant])  # padding and scales count

    # `bitscale pack` prints the same figure, and the packed file's layers store exactly it
    run_dir = save_lm(tmp_path / "run", model, ByteTokenizer(), spec.config)
    out = tmp_path / "model.packed.safetensors"
    code, stdout, err = cli("pack", run_dir, out)
    assert code == 0, err
    printed = re.search(r"\(([\d.]+) storage bits/weight", stdout)
    assert printed and printed[1] == f"{size.storage_bits_per_weight:.4f}"
    layers = packed_layers(load_packed(out)).values()
    assert {m.format for m in layers} == {FORMAT[quant]} and len(layers) == 7
    n = sum(m.out_features * m.in_features for m in layers)
    from_file = sum(m.packed_weight().bits_per_weight * m.out_features * m.in_features for m in layers) / n
    assert from_file == pytest.approx(size.storage_bits_per_weight, rel=1e-12)
    assert 8 * sum(m.nbytes for m in layers) / n == pytest.approx(row["storage_bits_per_weight"], rel=1e-12)
