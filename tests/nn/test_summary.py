import pytest
import torch.nn as nn

from bitscale.nn import BitLinear, summary


def test_single_ternary_layer_by_hand():
    s = summary(nn.Sequential(BitLinear(64, 32, config="bitnet-b1.58")))
    (row,) = s.layers
    assert row.params == 2048
    assert row.bits_per_weight == 2 + 16 / 2048
    assert row.bytes_fp32 == 8192 and row.bytes_bf16 == 4096
    assert row.bytes_packed == (2 * 2048 + 16) / 8
    assert s.macs_by_precision == {"ternary x int8": 2048}


def test_mixed_model_totals():
    model = nn.Sequential(
        nn.Embedding(100, 16), BitLinear(16, 64, bias=True, config="paper-1bit", norm=True), nn.Linear(64, 10)
    )
    s = summary(model)
    assert s.params == sum(p.numel() for p in model.parameters())
    assert s.macs_by_precision == {"sign x fp32": 1024, "fp32 x fp32": 640}
    packed_bits = 1 * 1024 + 16 * (s.params - 1024)
    assert s.bytes_packed == pytest.approx(packed_bits / 8)
    text = str(s)
    assert "total" in text and "sign x fp32" in text


def test_tied_parameters_counted_once():
    emb = nn.Embedding(50, 8)
    head = nn.Linear(8, 50, bias=False)
    head.weight = emb.weight
    assert summary(nn.ModuleList([emb, head])).params == 400
