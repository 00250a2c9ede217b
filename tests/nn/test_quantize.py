import torch
import torch.nn as nn

from bitscale.nn import BitLinear, quantize_
from bitscale.quant import fake_quantize_act, fake_quantize_weight


def make_model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Sequential(nn.Linear(32, 32), nn.GELU()), nn.Linear(32, 4))


def test_keeps_weights_and_fp32_outputs():
    model = make_model()
    x = torch.randn(8, 16)
    before = model(x)
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    copies = [w.detach().clone() for w in weights]
    quantize_(model, "fp32")
    layers = [m for m in model.modules() if isinstance(m, BitLinear)]
    assert len(layers) == 3
    assert all(layer.weight is w for layer, w in zip(layers, weights))
    assert all(torch.equal(layer.weight, c) for layer, c in zip(layers, copies))
    assert torch.equal(model(x), before)


def test_quantized_forward_uses_the_kept_weights():
    model = make_model()
    first = model[0]
    w, b = first.weight.detach().clone(), first.bias.detach().clone()
    quantize_(model, "bitnet-b1.58")
    x = torch.randn(5, 16)
    expected = fake_quantize_act(x, "int8") @ fake_quantize_weight(w, "ternary").T + b
    assert torch.allclose(model[0](x), expected, atol=1e-6)


def test_filter_fn_and_names():
    model = make_model()
    seen = []

    def only_hidden(module, name):
        seen.append(name)
        return name != "3"

    quantize_(model, "bitnet", filter_fn=only_hidden)
    assert seen == ["0", "2.0", "3"]
    assert isinstance(model[0], BitLinear) and isinstance(model[2][0], BitLinear)
    assert type(model[3]) is nn.Linear


def test_shared_layer_stays_shared_and_requantize():
    shared = nn.Linear(8, 8)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    quantize_(model, "bitnet")
    assert model[0] is model[2] and isinstance(model[0], BitLinear)
    quantize_(model, "bitnet-b1.58")
    assert model[0].config.weight == "ternary"


def test_training_after_swap_updates_original_parameters():
    model = make_model()
    original = model[0].weight
    before = original.detach().clone()
    quantize_(model, "bitnet-b1.58")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(4, 16)).pow(2).sum().backward()
    opt.step()
    assert model[0].weight is original
    assert not torch.equal(original, before)


def test_dequantize_in_place_and_the_copy_give_the_fake_quant_outputs():
    from bitscale.nn.quantize import dequantize_, dequantized_copy

    torch.manual_seed(0)
    model = nn.Sequential(BitLinear(16, 8, quant="bitnet-b1.58", norm=True), nn.ReLU(), BitLinear(8, 4, quant="bitnet"))
    x = torch.randn(3, 16)
    copy = dequantized_copy(model)
    assert all(m.config.is_full_precision for m in copy.modules() if isinstance(m, BitLinear))
    assert not any(m.config.is_full_precision for m in model.modules() if isinstance(m, BitLinear))
    weights = [m.quantized_weight() for m in model.modules() if isinstance(m, BitLinear)]
    with torch.no_grad():
        dense = copy(x)
        same = dequantize_(model)
        assert same is model and torch.equal(model(x), dense)
    assert all(torch.equal(m.weight, w) for m, w in zip((m for m in model.modules() if isinstance(m, BitLinear)), weights))
