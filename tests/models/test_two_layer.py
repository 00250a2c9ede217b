import math

import pytest
import torch

from bitscale.models import TwoLayerNet


def test_forward_matches_the_formula_by_hand():
    net = TwoLayerNet(d=2, m=2, kappa=3.0, quant="paper-1bit")
    with torch.no_grad():
        net.hidden.weight.copy_(torch.tensor([[0.4, -2.0], [-0.1, -0.3]]))
        net.a.copy_(torch.tensor([1.0, -1.0]))
    x = torch.tensor([[1.0, -0.5], [0.2, 0.7]])
    # sign rows: [1, -1], [-1, -1]; <., x> = [1.5, -0.5] and [-0.5, -0.9]
    expected = 3.0 / math.sqrt(2) * torch.tensor([1.5 - 0.0, 0.0 - 0.0])
    assert torch.allclose(net(x), expected)
    # the fp twin uses the latent weights: <w, x> = [1.4, 0.05] and [-1.32, -0.23]
    expected_fp = 3.0 / math.sqrt(2) * torch.tensor([1.4 - 0.05, 0.0])
    assert torch.allclose(net.twin()(x), expected_fp)


def test_twin_has_identical_parameters_and_fp32_twin_equals_itself():
    net = TwoLayerNet(10, 64, kappa=0.5, quant="paper-1bit", seed=3)
    twin = net.twin()
    assert twin.config.weight == "fp32" and net.config.weight == "sign"
    for (n1, p1), (n2, p2) in zip(net.named_parameters(), twin.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2) and p1 is not p2
    fp = TwoLayerNet(10, 64, kappa=0.5, quant="fp32", seed=3)
    x = torch.randn(7, 10)
    assert torch.equal(fp(x), twin(x))
    assert torch.equal(fp(x), fp.twin()(x))


def test_init_distribution_and_seed():
    net = TwoLayerNet(50, 2000, seed=0)
    w = net.hidden.weight
    assert abs(w.mean().item()) < 0.01 and abs(w.std().item() - 1) < 0.01
    assert set(net.a.unique().tolist()) == {-1.0, 1.0}
    assert not net.a.requires_grad
    assert torch.equal(w, TwoLayerNet(50, 2000, seed=0).hidden.weight)
    assert not torch.equal(w, TwoLayerNet(50, 2000, seed=1).hidden.weight)
    assert TwoLayerNet(5, 8, train_a=True).a.requires_grad


def test_ste_gradient_matches_the_formula():
    # dL/dw_r = kappa/sqrt(m) a_r 1{<sign w_r, x> > 0} x * 1{|w_r| <= 1} for L = f(x) (clipped STE)
    torch.manual_seed(0)
    net = TwoLayerNet(6, 5, kappa=2.0, quant="paper-1bit")
    x = torch.randn(1, 6)
    net(x).sum().backward()
    w = net.hidden.weight.detach()
    active = ((torch.where(w > 0, 1.0, -1.0) @ x[0]) > 0).float()
    expected = 2.0 / math.sqrt(5) * (net.a * active)[:, None] * x[0][None, :] * (w.abs() <= 1).float()
    assert torch.allclose(net.hidden.weight.grad, expected)


@pytest.mark.parametrize("activation", ["relu", "gelu", "tanh", "identity"])
def test_activations(activation):
    net = TwoLayerNet(4, 8, activation=activation, seed=0)
    assert net(torch.randn(3, 4)).shape == (3,)


def test_bad_arguments():
    with pytest.raises(ValueError, match="activation"):
        TwoLayerNet(4, 8, activation="swish")
    with pytest.raises(ValueError, match="unknown preset"):
        TwoLayerNet(4, 8, quant="1bit")
