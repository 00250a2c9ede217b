import math

import pytest
import torch
import torch.nn as nn

from bitscale.nn import BitConv2d, BitLinear, summary


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


class TwoConvs(nn.Module):
    def __init__(self):
        super().__init__()
        self.c2 = BitConv2d(4, 6, (3, 2), stride=2, groups=2, bias=True, quant="bitnet-b1.58")
        self.c1 = nn.Conv1d(3, 3, 4)

    def forward(self, a, b):
        return self.c2(a), self.c1(self.c1(b))  # c1 called twice: its MACs count twice


def test_conv_layers_by_hand():
    model = TwoConvs()
    s = summary(model)
    c2, c1 = s.layers
    # c2: weight (6, 2, 3, 2) = 72 codes as a (6, 12) matrix: ternary-b3 rows of 3 bytes, one float32 scale
    assert (c2.params, c2.quantized_weights, c2.precision_bits) == (78, 72, math.log2(3))
    assert c2.storage_bits_per_weight == (6 * 3 * 8 + 32) / 72
    assert c2.bytes_packed == (6 * 3 * 8 + 32 + 16 * 6) / 8
    assert (c2.macs, c2.macs_per, c2.precision) == (6 * 2 * 3 * 2, "output position", "ternary x int8")
    assert (c1.macs, c1.storage_bits_per_weight, c1.quantized_weights) == (3 * 3 * 4, 32.0, 0)
    assert s.conv_macs_by_precision == {"ternary x int8": 72, "fp32 x fp32": 36} and s.macs_by_precision == {}
    assert "conv MACs/output position at ternary x int8: 72" in str(s)

    model.train()
    s = summary(model, (torch.randn(2, 4, 9, 8), torch.randn(2, 3, 10)))
    assert model.training and model.c1.training  # modes restored
    c2, c1 = s.layers
    assert (c2.macs, c2.macs_per) == (72 * 4 * 4, "sample")  # 4 x 4 output positions
    assert c1.macs == 36 * (7 + 4)  # lengths 10 -> 7 -> 4
    assert s.conv_macs == 72 * 16 + 36 * 11 and s.conv_macs_per == "sample"
    assert "conv MACs/sample at fp32 x fp32: 396" in str(s)
