"""BitConv1d / BitConv2d: fp32 equals nn.Conv bit for bit, every preset equals the per-position formulas,
the STE gradients, quantize_ on a CNN, and the one-line errors."""

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from bitscale.nn import BitConv1d, BitConv2d, BitLinear, quantize_
from bitscale.nn.quantize import dequantize_
from bitscale.quant import fake_quantize_act, fake_quantize_weight, preset_names


def seeded(*shape, seed=0, scale=1.0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * scale


CONV = {1: (nn.Conv1d, BitConv1d, F.conv1d), 2: (nn.Conv2d, BitConv2d, F.conv2d)}
# (dims, conv kwargs, input shape): strides, paddings, dilations, groups, padding modes, bias, unbatched
GEOMETRIES = [
    (1, dict(kernel_size=3), (3, 8, 20)),
    (1, dict(kernel_size=5, stride=2, padding=3, dilation=2, groups=2, bias=True), (2, 8, 31)),
    (1, dict(kernel_size=4, padding="same", padding_mode="circular", bias=True), (2, 8, 17)),
    (1, dict(kernel_size=3, padding=2, padding_mode="reflect"), (8, 12)),
    (2, dict(kernel_size=3, padding=1), (2, 8, 9, 7)),
    (2, dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 3), groups=4, bias=True), (3, 8, 11, 10)),
    (2, dict(kernel_size=3, padding=1, padding_mode="circular", bias=True), (2, 8, 6, 8)),
    (2, dict(kernel_size=2, stride=2, padding_mode="replicate", padding=1), (8, 7, 7)),
]


@pytest.mark.parametrize("dims, kw, shape", GEOMETRIES)
def test_fp32_is_exactly_nn_conv_forward_and_backward(dims, kw, shape):
    base, bit_cls, _ = CONV[dims]
    torch.manual_seed(0)
    dense = base(8, 12, **kw)
    bit = bit_cls.from_conv(base(8, 12, **kw), "fp32")
    bit.load_state_dict(dense.state_dict())
    x1 = seeded(*shape, seed=1).requires_grad_(True)
    x2 = x1.detach().clone().requires_grad_(True)
    y1, y2 = dense(x1), bit(x2)
    assert torch.equal(y1, y2)
    g = seeded(*y1.shape, seed=2)
    y1.backward(g)
    y2.backward(g)
    assert torch.equal(x1.grad, x2.grad)
    assert torch.equal(dense.weight.grad, bit.weight.grad)
    if dense.bias is not None:
        assert torch.equal(dense.bias.grad, bit.bias.grad)


def reference(layer, x):
    """The formulas written out: Q_a on every position's channel vector (x.movedim(1, -1)), Q_w on
    W.reshape(out, -1), the identity STE's value x + (q - x), then F.conv."""
    c = layer.config
    x_q = x
    if c.act != "fp32":
        q = fake_quantize_act(x.movedim(1, -1), c.act, c.act_group_size, c.atom_outliers, None, c.eps)
        q = q.movedim(-1, 1).contiguous()
        x_q = x + (q - x) if c.act_ste == "identity" else q
    w = layer.weight.detach()
    w_q = w
    if c.weight != "fp32":
        q = fake_quantize_weight(w.reshape(w.shape[0], -1), c.weight, c.granularity, c.group_size, c.center, c.eps)
        q = q.reshape(w.shape)
        w_q = w + (q - w) if c.ste == "identity" else q
    conv = CONV[w.dim() - 2][2]
    return conv(x_q, w_q, layer.bias, layer.stride, layer.padding, layer.dilation, layer.groups)


QUANTS = preset_names() + [
    {"preset": "atom-w4a4", "act_group_size": 4, "atom_outliers": 3, "group_size": 8},  # int4 groups + outliers
    {"weight": "int4", "act": "int4", "act_group_size": 8, "granularity": "channel"},
    {"weight": "ternary", "act": "int8", "granularity": "group", "group_size": 16},
]


@pytest.mark.parametrize("quant", QUANTS, ids=lambda q: q if isinstance(q, str) else "-".join(map(str, q.values())))
@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("buffered", [False, True])
def test_every_preset_equals_the_per_position_formulas(quant, dims, buffered):
    _, bit_cls, _ = CONV[dims]
    torch.manual_seed(0)
    kw = dict(kernel_size=3, stride=2, padding=1, dilation=2, groups=2, bias=True)
    layer = bit_cls(16, 12, **kw, quant=quant)
    layer.buffer_elements = 1 if buffered else None  # the buffered path: int8 / binary activations
    shape = (2, 16, 21) if dims == 1 else (2, 16, 9, 8)
    x = seeded(*shape, seed=3, scale=2.0).requires_grad_(True)
    y = layer(x)
    with torch.no_grad():
        assert torch.equal(y, reference(layer, x))
    y.square().sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(layer.weight.grad).all()
    assert layer.weight.grad.abs().sum() > 0 and x.grad.abs().sum() > 0


def test_norm_is_an_rmsnorm_over_the_channels_of_each_position():
    layer = BitConv2d(8, 4, 3, padding=1, quant="bitnet-b1.58", norm=True)
    with torch.no_grad():
        layer.norm.weight.uniform_(0.5, 1.5)
    x = seeded(2, 8, 5, 6, scale=3.0)
    x_n = layer.norm(x.movedim(1, -1)).movedim(-1, 1)
    with torch.no_grad():
        assert torch.equal(layer(x), reference(layer, x_n))


def test_ternary_weight_gradient_is_the_conv_gradient_at_q_w():
    """Identity STE (bitnet-b1.58): dL/dW = dL/dW_q and dL/dx = dL/dx_q exactly; the clipped STE of sign
    weights (paper-1bit) masks dL/dW_q with |W| <= 1."""
    for quant, mask in (("bitnet-b1.58", lambda w: torch.ones_like(w)), ("paper-1bit", lambda w: (w.abs() <= 1).float())):
        layer = BitConv2d(6, 5, 3, padding=1, stride=2, quant=quant)
        with torch.no_grad():
            layer.weight.mul_(8.0)  # some weights outside the clip
        x = seeded(2, 6, 7, 7, seed=4, scale=2.0).requires_grad_(True)
        g = seeded(2, 5, 4, 4, seed=5)
        layer(x).backward(g)
        c = layer.config
        w_q = fake_quantize_weight(layer.weight.detach(), c.weight, c.granularity, c.group_size, c.center, c.eps)
        x_q = fake_quantize_act(x.detach(), c.act, eps=c.eps, dim=1)
        w_q.requires_grad_(True)
        x_q.requires_grad_(True)
        F.conv2d(x_q, w_q, None, 2, 1).backward(g)
        assert torch.equal(layer.weight.grad, w_q.grad * mask(layer.weight.detach()))
        assert torch.equal(x.grad, x_q.grad)  # fp32 / int8 activations: identity STE
        if quant == "paper-1bit":
            assert 0 < (layer.weight.abs() > 1).sum() < layer.weight.numel()


def cnn(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU(),
                         nn.Flatten(), nn.Linear(8 * 3 * 3, 4))


def test_quantize_converts_a_cnn_keeping_the_parameters():
    model = cnn()
    x = seeded(2, 3, 8, 8)
    before = model(x)
    params = {name: p for name, p in model.named_parameters()}
    quantize_(model, "fp32")
    assert isinstance(model[0], BitConv2d) and isinstance(model[2], BitConv2d) and isinstance(model[5], BitLinear)
    assert list(dict(model.named_parameters())) == list(params)
    assert all(p is params[name] for name, p in model.named_parameters())
    assert torch.equal(model(x), before)
    quantize_(model, "bitnet-b1.58")  # already-BitConv layers get the new config
    assert model[0].config.weight == "ternary" and all(p is params[n] for n, p in model.named_parameters())
    with torch.no_grad():
        assert torch.equal(model[0](x), reference(model[0], x))


def test_quantize_filter_fn_and_shared_convs():
    model = cnn()
    seen = []

    def convs_only(module, name):
        seen.append(name)
        return isinstance(module, nn.Conv2d) and name != "0"

    quantize_(model, "xnor", filter_fn=convs_only)
    assert seen == ["0", "2", "5"]
    assert type(model[0]) is nn.Conv2d and isinstance(model[2], BitConv2d) and type(model[5]) is nn.Linear
    shared = nn.Conv1d(4, 4, 3, padding=1)
    net = nn.Sequential(shared, nn.ReLU(), shared)
    quantize_(net, "bitnet")
    assert net[0] is net[2] and isinstance(net[0], BitConv1d) and net[0].weight is shared.weight


def test_dequantize_holds_q_w_and_runs_dense():
    model = quantize_(cnn(), "bitnet-b1.58")
    c = model[2].config
    w_q = fake_quantize_weight(model[2].weight.detach(), c.weight, c.granularity, c.group_size, c.center, c.eps)
    dequantize_(model)
    assert model[2].config.is_full_precision and torch.equal(model[2].weight, w_q)


def test_bad_geometry_and_inputs_are_one_line_errors():
    with pytest.raises(ValueError, match=r"^stride: expected positive integers, got \(0,\)$"):
        BitConv1d(4, 4, 3, stride=0)
    with pytest.raises(ValueError, match=r"^in_channels: 30 is not divisible by groups=4$"):
        BitConv2d(30, 8, 3, groups=4)
    with pytest.raises(ValueError, match=r"^out_channels: 6 is not divisible by groups=4$"):
        BitConv2d(8, 6, 3, groups=4)
    with pytest.raises(ValueError, match=r"^kernel_size: expected positive integers, got \(0, 3\)$"):
        BitConv2d(4, 4, (0, 3))
    with pytest.raises(ValueError, match=r"^padding: expected non-negative integers, got \(-1,\)$"):
        BitConv1d(4, 4, 3, padding=-1)
    with pytest.raises(ValueError, match=r"^padding_mode: "):
        BitConv1d(4, 4, 3, padding_mode="wrap")
    layer = BitConv2d(4, 4, 5, padding=1, dilation=(1, 2))
    with pytest.raises(ValueError, match=r"^kernel_size: \(5, 5\) with dilation \(1, 2\) spans \(5, 9\), more than "
                                         r"the input's spatial size \(6, 6\) padded to \(8, 8\)$"):
        layer(torch.randn(1, 4, 6, 6))
    with pytest.raises(ValueError, match=r"^input: expected 4 channels at dim 1"):
        layer(torch.randn(1, 3, 9, 9))
    with pytest.raises(ValueError, match=r"^conv: expected an nn.Conv1d, got Conv2d$"):
        BitConv1d.from_conv(nn.Conv2d(2, 2, 1))
    with pytest.warns(DeprecationWarning):
        assert BitConv1d(2, 2, 1, config="xnor").config.act == "binary"


def test_exported_from_the_package_root():
    import bitscale
    from bitscale.nn import PackedBitConv

    assert (bitscale.BitConv1d, bitscale.BitConv2d, bitscale.PackedBitConv) == (BitConv1d, BitConv2d, PackedBitConv)
    assert bitscale.BitLinear is BitLinear


BUFFERED = [  # dims, conv kwargs, input shape, norm, channels-last input
    (1, dict(kernel_size=5, stride=2, padding=3, dilation=2, groups=2, bias=True), (2, 8, 31), False, False),
    (1, dict(kernel_size=3, padding="same", bias=True), (3, 8, 20), True, False),
    (2, dict(kernel_size=3, padding=1, groups=4), (2, 8, 9, 7), False, False),
    (2, dict(kernel_size=3, padding=1, groups=4), (2, 8, 9, 7), False, True),
    (2, dict(kernel_size=(3, 2), stride=(2, 1), padding="valid", bias=True), (2, 8, 11, 10), True, False),
    (2, dict(kernel_size=(3, 2), stride=(2, 1), padding="valid", bias=True), (2, 8, 11, 10), True, True),
]


@pytest.mark.parametrize("quant", ["bitnet-b1.58", "bitnet", "xnor", {"preset": "bitnet", "act_ste": "approx_sign"}],
                         ids=["bitnet-b1.58", "bitnet", "xnor", "approx_sign"])
@pytest.mark.parametrize("dims, kw, shape, norm, channels_last", BUFFERED)
def test_the_buffered_path_equals_the_plain_one(quant, dims, kw, shape, norm, channels_last):
    """Large inputs write Q_a(x) into a reused buffer and recompute it for dL/dW: the same outputs and
    gradients, bit for bit, as the plain STE path (forced here with buffer_elements)."""
    _, bit_cls, _ = CONV[dims]
    torch.manual_seed(0)
    plain = bit_cls(8, 12, **kw, quant=quant, norm=norm)
    if norm:
        with torch.no_grad():
            plain.norm.weight.uniform_(0.5, 1.5)
    buffered = copy.deepcopy(plain)
    plain.buffer_elements, buffered.buffer_elements = None, 1
    x1 = seeded(*shape, seed=6, scale=2.0)
    if channels_last:
        x1 = x1.contiguous(memory_format=torch.channels_last)
    x1.requires_grad_(True)
    x2 = x1.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
    y1, y2 = plain(x1), buffered(x2)
    assert type(y2.grad_fn).__name__ == "_BufferedQuantizedConvBackward"
    assert type(y1.grad_fn).__name__ != "_BufferedQuantizedConvBackward"
    assert torch.equal(y1, y2)
    g = seeded(*y1.shape, seed=7)
    y1.backward(g)
    y2.backward(g)
    assert torch.equal(x1.grad, x2.grad) and torch.equal(plain.weight.grad, buffered.weight.grad)
    if plain.bias is not None:
        assert torch.equal(plain.bias.grad, buffered.bias.grad)
    if norm:
        assert torch.equal(plain.norm.weight.grad, buffered.norm.weight.grad)


def test_large_inputs_save_x_not_its_quantized_copy():
    layer = BitConv2d(16, 16, 3, padding=1, quant="bitnet-b1.58")
    x = seeded(8, 16, 24, 24, seed=8).requires_grad_(True)
    assert x.numel() >= layer.buffer_elements
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = layer(x)
    big = [t for t in saved if t.numel() == x.numel()]
    assert len(big) == 1 and big[0] is x
    y2 = layer(x)  # a second forward before any backward reuses the buffer: both graphs stay right
    g = seeded(*y.shape, seed=9)
    (g * y).sum().backward()
    first = x.grad.clone(), layer.weight.grad.clone()
    x.grad, layer.weight.grad = None, None
    (g * y2).sum().backward()
    assert torch.equal(x.grad, first[0]) and torch.equal(layer.weight.grad, first[1])


def test_the_identity_ste_value_of_int8_absmax_is_q():
    """What the buffered backward relies on: x + (q - x) == q for the int8 absmax quantizer (q - x is
    exact), at every magnitude, for the eps clamp too (only the sign of a zero may differ)."""
    from bitscale.quant import quantize_act_int8

    g = torch.Generator().manual_seed(10)
    for scale in (1e-30, 1e-7, 1e-3, 1.0, 1e4, 1e30):
        x = torch.randn(512, 64, generator=g) * scale
        x[:, :8] *= torch.rand(512, 8, generator=g) ** 8  # values far below the row's max
        for eps in (1e-5, 1e-12):
            q = quantize_act_int8(x, eps)
            assert torch.equal(x + (q - x), q)


def test_the_buffer_survives_inference_mode_and_can_be_released():
    from bitscale.nn.bitconv import release_buffers

    release_buffers()
    layer = BitConv2d(8, 8, 3, padding=1, quant="bitnet-b1.58")
    x = seeded(2, 8, 70, 70, seed=12)
    with torch.inference_mode():  # the buffer is first made here: it must stay writable outside
        want = layer(x)
    y = layer(x.requires_grad_(True))
    y.sum().backward()
    assert torch.equal(y.detach(), want) and x.grad is not None
    release_buffers()
    with torch.inference_mode():
        assert torch.equal(layer(x), want)
