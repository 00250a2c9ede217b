import math

import pytest
import torch.nn as nn

from bitscale.nn import BitLinear, summary


def test_single_ternary_layer_by_hand():
    s = summary(nn.Sequential(BitLinear(64, 32, quant="bitnet-b1.58")))
    (row,) = s.layers
    assert row.params == 2048
    assert row.precision_bits == math.log2(3)
    assert row.storage_bits_per_weight == (32 * 13 * 8 + 32) / 2048  # ternary-b3: 13 bytes per row of 64, float32 scale
    assert row.bytes_fp32 == 8192 and row.bytes_bf16 == 4096
    assert row.bytes_packed == (32 * 13 * 8 + 32) / 8
    assert (s.precision_bits, s.storage_bits_per_weight) == (row.precision_bits, row.storage_bits_per_weight)
    assert s.macs_by_precision == {"ternary x int8": 2048}


def test_mixed_model_totals():
    model = nn.Sequential(
        nn.Embedding(100, 16), BitLinear(16, 64, bias=True, quant="paper-1bit", norm=True), nn.Linear(64, 10)
    )
    s = summary(model)
    assert s.params == sum(p.numel() for p in model.parameters())
    assert s.macs_by_precision == {"sign x fp32": 1024, "fp32 x fp32": 640}
    packed_bits = (1024 + 32) + 16 * (s.params - 1024)  # sign codes in the binary format, its float32 scale
    assert s.bytes_packed == pytest.approx(packed_bits / 8)
    assert s.quantized_weights == 1024
    assert s.precision_bits == 1.0 and s.storage_bits_per_weight == 1 + 32 / 1024
    assert s.packed_bits_per_param == pytest.approx(packed_bits / s.params)
    text = str(s)
    assert "total" in text and "sign x fp32" in text
    assert "P = 1.000 bits, stored at 1.031 bits/weight" in text


def test_full_precision_model():
    s = summary(nn.Sequential(nn.Linear(4, 3)))
    assert s.quantized_weights == 0 and s.precision_bits == 32 and s.storage_bits_per_weight == 32


def test_tied_parameters_counted_once():
    emb = nn.Embedding(50, 8)
    head = nn.Linear(8, 50, bias=False)
    head.weight = emb.weight
    assert summary(nn.ModuleList([emb, head])).params == 400
