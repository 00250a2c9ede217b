import pytest
import torch

from bitscale.quant import STE_NAMES, ste_grad, straight_through

X = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.3, 0.999, 1.0, 1.5])


@pytest.mark.parametrize(
    "rule,expected",
    [
        ("identity", [1, 1, 1, 1, 1, 1, 1, 1]),
        ("clipped", [0, 1, 1, 1, 1, 1, 1, 0]),
        ("approx_sign", [0, 0, 1, 2, 1.4, 0.002, 0, 0]),
        ("relu", [0, 0, 0, 0, 1, 1, 1, 1]),
        ("clipped_relu", [0, 0, 0, 0, 1, 1, 0, 0]),
    ],
)
def test_each_rule_matches_its_formula(rule, expected):
    x = X.clone().requires_grad_(True)
    y = straight_through(x, torch.sign, rule)
    assert torch.equal(y, torch.sign(X))
    y.backward(torch.full_like(X, 3.0))
    assert torch.allclose(x.grad, 3.0 * torch.tensor(expected), atol=1e-5)
    assert torch.allclose(ste_grad(X, torch.ones_like(X), rule), torch.tensor(expected, dtype=torch.float), atol=1e-5)


def test_clip_value_is_used():
    g = ste_grad(X, torch.ones_like(X), "clipped", clip=0.5)
    assert g.tolist() == [0, 0, 1, 1, 1, 0, 0, 0]


def test_identity_equals_the_detach_trick():
    w = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    x = torch.randn(3, 7, generator=torch.Generator().manual_seed(1))

    def quant(t):
        return (t * 4).round() / 4

    a = w.clone().requires_grad_(True)
    b = w.clone().requires_grad_(True)
    ya = x @ straight_through(a, quant, "identity").T
    yb = x @ (b + (quant(b) - b).detach()).T
    (ya**2).sum().backward()
    (yb**2).sum().backward()
    assert torch.allclose(ya, yb)
    assert torch.allclose(a.grad, b.grad)


def test_no_graph_when_no_grad_needed():
    y = straight_through(X, torch.sign, "clipped")
    assert not y.requires_grad


def test_unknown_rule():
    assert "clipped" in STE_NAMES
    with pytest.raises(ValueError, match="ste"):
        straight_through(X, torch.sign, "tanh")
