import pytest
import torch

from bitscale.quant import GRANULARITIES, WEIGHT_SCHEMES, fake_quantize_weight, quantize_weight

W = torch.tensor([[0.5, -1.0, 0.1], [2.0, 0.0, -0.4]])


def test_ternary_absmean_hand_example():
    # gamma = mean|W| = 4/6; W / gamma = [.75, -1.5, .15, 3, 0, -.6] -> round -> clip to [-1, 1]
    q = quantize_weight(W, "ternary")
    assert q.codes.tolist() == [[1, -1, 0], [1, 0, -1]]
    assert q.scale.item() == pytest.approx(4 / 6)
    assert torch.allclose(fake_quantize_weight(W, "ternary"), q.codes.float() * (4 / 6))


def test_ternary_matches_b158_reference_exactly():
    def weight_quant(w):  # BitNet b1.58 training FAQ
        scale = 1.0 / w.abs().mean().clamp_(min=1e-5)
        return (w * scale).round().clamp_(-1, 1) / scale

    w = torch.randn(64, 96, generator=torch.Generator().manual_seed(0)) * 0.02
    assert torch.equal(fake_quantize_weight(w, "ternary"), weight_quant(w))


def test_binary_bitnet_hand_example():
    # alpha = mean W = 0.2; W - alpha = [.3, -1.2, -.1, 1.8, -.2, -.6]; beta = mean|W| = 2/3
    q = quantize_weight(W, "binary")
    assert q.codes.tolist() == [[1, -1, -1], [1, -1, -1]]
    assert q.scale.item() == pytest.approx(2 / 3)
    # without centering it is XNOR-Net's sign(W) (sign(0) = -1)
    assert quantize_weight(W, "binary", center=False).codes.tolist() == [[1, -1, 1], [1, -1, -1]]


def test_sign_has_no_scale():
    q = quantize_weight(W, "sign")
    assert q.codes.tolist() == [[1, -1, 1], [1, -1, -1]]
    assert q.scale.item() == 1.0
    assert torch.equal(fake_quantize_weight(W, "sign"), q.codes.float())


def test_int4_per_channel_hand_example():
    # row absmax 1 and 2, q = 7: [3.5 -> 4 (half to even), -7, .7 -> 1], [7, 0, -1.4 -> -1]
    q = quantize_weight(W, "int4", "channel")
    assert q.codes.tolist() == [[4, -7, 1], [7, 0, -1]]
    assert q.scale.tolist() == pytest.approx([1 / 7, 2 / 7])


@pytest.mark.parametrize("scheme,levels", [("int2", 1), ("int3", 3), ("int4", 7), ("int8", 127)])
def test_int_k_range_and_error(scheme, levels):
    w = torch.randn(32, 64, generator=torch.Generator().manual_seed(1))
    q = quantize_weight(w, scheme, "channel")
    assert q.codes.abs().max().item() == levels
    err = (fake_quantize_weight(w, scheme, "channel") - w).abs()
    assert torch.all(err <= q.scale[:, None] / 2 + 1e-6)


def test_group_scales_with_a_short_last_group():
    w = torch.tensor([[1.0, -3.0, 0.5, 0.5, 2.0]])
    q = quantize_weight(w, "ternary", "group", group_size=2)
    # groups [1, -3], [.5, .5], [2]: mean|.| = 2, .5, 2 (the last one over its single real entry)
    assert q.scale[0].tolist() == pytest.approx([2.0, 0.5, 2.0])
    assert q.codes.tolist() == [[0, -1, 1, 1, 1]]


@pytest.mark.parametrize("scheme", WEIGHT_SCHEMES[1:])
@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_dequantize_equals_fake_quant(scheme, granularity):
    w = torch.randn(12, 20, generator=torch.Generator().manual_seed(2))
    q = quantize_weight(w, scheme, granularity, group_size=8)
    assert q.codes.dtype == torch.int8 and q.codes.shape == w.shape
    fake = fake_quantize_weight(w, scheme, granularity, group_size=8)
    assert torch.allclose(q.dequantize(), fake, rtol=1e-6, atol=1e-7)


def test_per_channel_scales_differ_per_row():
    w = torch.stack([torch.linspace(-1, 1, 16), 10 * torch.linspace(-1, 1, 16)])
    q = quantize_weight(w, "ternary", "channel")
    assert q.scale[1].item() == pytest.approx(10 * q.scale[0].item())
    assert torch.equal(q.codes[0], q.codes[1])


def test_bad_names_raise():
    with pytest.raises(ValueError, match="weight"):
        quantize_weight(W, "int5")
    with pytest.raises(ValueError, match="granularity"):
        fake_quantize_weight(W, "ternary", "row")
    with pytest.raises(ValueError, match="group_size"):
        fake_quantize_weight(W, "ternary", "group", None)
