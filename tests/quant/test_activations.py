import pytest
import torch

from bitscale.quant import (
    fake_quantize_act,
    outlier_channels,
    quantize_act_atom,
    quantize_act_binary,
    quantize_act_int4,
    quantize_act_int8,
)


def reference_activation_quant(x):  # BitNet b1.58 training FAQ
    scale = 127.0 / x.abs().max(dim=-1, keepdim=True).values.clamp_(min=1e-5)
    return (x * scale).round().clamp_(-128, 127) / scale


def test_int8_hand_example():
    # scale 127: codes [127, -63.5 -> -64 (half to even), 31.75 -> 32]
    x = torch.tensor([[1.0, -0.5, 0.25]])
    assert torch.equal(quantize_act_int8(x), torch.tensor([[127.0, -64.0, 32.0]]) / 127.0)


def test_int8_matches_b158_reference_exactly():
    x = torch.randn(4, 33, 100, generator=torch.Generator().manual_seed(0)) * 5
    assert torch.equal(quantize_act_int8(x), reference_activation_quant(x))


def test_int8_is_per_token():
    x = torch.tensor([[1.0, 0.5], [100.0, 50.0]])
    out = quantize_act_int8(x)
    assert torch.allclose(out[1], 100 * out[0])


def test_int4_groups_are_independent():
    x = torch.tensor([[7.0, 1.0, 0.07, 0.01, 0.5]])
    out = quantize_act_int4(x, group_size=2)
    # group [7, 1]: step 1 -> exact; group [.07, .01]: step .01 -> exact; last group [.5] alone
    assert torch.allclose(out, torch.tensor([[7.0, 1.0, 0.07, 0.01, 0.5]]))
    per_row = quantize_act_int4(x, group_size=8)  # one group: step 1, small values vanish
    assert per_row[0, 2].item() == 0.0


def test_int4_has_at_most_16_levels_per_group():
    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(1))
    out = quantize_act_int4(x, group_size=32)
    for token in out:
        for group in token.split(32):
            assert group.unique().numel() <= 16


def test_binary_xnor_scale():
    x = torch.tensor([[1.0, -3.0, 2.0], [0.0, 4.0, -2.0]])
    assert torch.equal(quantize_act_binary(x), torch.tensor([[2.0, -2.0, 2.0], [-2.0, 2.0, -2.0]]))


def test_atom_keeps_outlier_channels_at_int8():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(16, 64, generator=g)
    x[:, 5] *= 100.0  # an outlier channel
    assert outlier_channels(x, 1).tolist() == [5]
    atom = quantize_act_atom(x, group_size=16, n_outliers=1)
    plain = quantize_act_int4(x, group_size=16)
    neighbours = [c for c in range(16) if c != 5]  # the outlier's int4 group in plain grouping
    # without the outlier in their group, the int4 error on its neighbours is far smaller
    assert (atom - x)[:, neighbours].abs().mean() < 0.2 * (plain - x)[:, neighbours].abs().mean()
    # the outlier channel itself is int8 per token: error within half an int8 step
    step = x[:, 5].abs() / 127
    assert torch.all((atom[:, 5] - x[:, 5]).abs() <= step / 2 + 1e-4)


def test_atom_without_outliers_is_grouped_int4():
    x = torch.randn(4, 40, generator=torch.Generator().manual_seed(3))
    assert torch.equal(quantize_act_atom(x, group_size=8, n_outliers=0), quantize_act_int4(x, group_size=8))


def test_atom_with_fixed_outliers():
    x = torch.randn(4, 40, generator=torch.Generator().manual_seed(4))
    out = quantize_act_atom(x, group_size=8, outliers=torch.tensor([0, 39]))
    assert torch.allclose(out[:, [0, 39]], quantize_act_int8(x[:, [0, 39]]))


def test_dispatch_and_unknown():
    x = torch.randn(2, 8)
    assert fake_quantize_act(x, "fp32") is x
    assert torch.equal(fake_quantize_act(x, "int8"), quantize_act_int8(x))
    with pytest.raises(ValueError, match="act"):
        fake_quantize_act(x, "int3")
