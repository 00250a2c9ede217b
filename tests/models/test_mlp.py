import pytest
import torch

from bitscale.models import MLP
from bitscale.nn import BitLinear


def test_structure_and_shapes():
    net = MLP(12, [32, 16], d_out=1, quant="bitnet-b1.58")
    assert [layer.config.weight for layer in net.layers] == ["ternary", "ternary"]
    assert net.head.config.weight == "fp32"
    assert net(torch.randn(5, 12)).shape == (5,)
    assert MLP(12, [8], d_out=3)(torch.randn(5, 12)).shape == (5, 3)
    assert MLP(12, [8], quant="xnor", quantize_head=True).head.config.weight == "binary"
    assert all(isinstance(m, BitLinear) for m in [*net.layers, net.head])


def test_fp32_mlp_equals_plain_torch():
    torch.manual_seed(0)
    net = MLP(6, [10], quant="fp32")
    x = torch.randn(4, 6)
    plain = torch.relu(x @ net.layers[0].weight.T + net.layers[0].bias) @ net.head.weight.T + net.head.bias
    assert torch.allclose(net(x), plain.squeeze(-1))


def test_bad_widths():
    with pytest.raises(ValueError, match="widths"):
        MLP(4, [])
