import math
import time

import pytest
import torch

from bitscale.models import MLP, TwoLayerNet
from bitscale.theory import analytic_ntk, empirical_ntk
from bitscale.theory.ntk import _ntk

PAPER_IDENTITY = {"preset": "paper-1bit", "ste": "identity"}


def sphere(n, d, seed=0, dtype=torch.float64):
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    return x / x.norm(dim=1, keepdim=True)


def hand_ntk(W, a, kappa, x1, x2, quant, ste, train_a):
    """H(x, x') = kappa^2/m [ <x,x'>-weighted sum_r 1[<Q w_r,x> > 0] 1[<Q w_r,x'> > 0] g'(w_rj)^2
    (+ sum_r relu(<Q w_r,x>) relu(<Q w_r,x'>) when a is trained) ], written out with loops."""
    m, d = W.shape
    H = torch.zeros(len(x1), len(x2), dtype=torch.float64)
    for i, x in enumerate(x1):
        for k, y in enumerate(x2):
            total = 0.0
            for r in range(m):
                q = torch.where(W[r] > 0, 1.0, -1.0).double() if quant == "sign" else W[r]
                u, v = float(q @ x), float(q @ y)
                if u > 0 and v > 0:
                    for j in range(d):
                        g = 1.0 if ste == "identity" else float(abs(W[r, j]) <= 1.0)
                        total += float(x[j] * y[j]) * g**2 * float(a[r]) ** 2
                if train_a:
                    total += max(u, 0.0) * max(v, 0.0)
            H[i, k] = kappa**2 / m * total
    return H


@pytest.mark.parametrize("config,quant,ste", [("fp32", "fp32", "identity"), (PAPER_IDENTITY, "sign", "identity"),
                                              ("paper-1bit", "sign", "clipped")])
@pytest.mark.parametrize("train_a", [False, True])
def test_width_two_equals_the_formula_by_hand(config, quant, ste, train_a):
    net = TwoLayerNet(d=3, m=2, kappa=1.7, quant=config, train_a=train_a, dtype=torch.float64)
    W = torch.tensor([[0.4, -2.0, 0.9], [-0.1, -0.3, 1.5]], dtype=torch.float64)
    a = torch.tensor([1.0, -1.0], dtype=torch.float64)
    with torch.no_grad():
        net.hidden.weight.copy_(W)
        net.a.copy_(a)
    x = torch.tensor([[1.0, -0.5, 0.3], [0.2, 0.7, 1.0], [-1.0, -0.2, 0.4], [0.5, -1.0, -0.1]], dtype=torch.float64)
    H = empirical_ntk(net, x)
    expected = hand_ntk(W, a, 1.7, x, x, quant, ste, train_a)
    assert expected.abs().sum() > 0
    torch.testing.assert_close(H, expected, rtol=1e-12, atol=1e-12)


def test_width_one_value():
    # one unit, w = (0.5, -2): fp32 H(x,x') = <x,x'> 1[w.x>0] 1[w.x'>0] (kappa = 1, m = 1)
    net = TwoLayerNet(d=2, m=1, quant="fp32", dtype=torch.float64)
    with torch.no_grad():
        net.hidden.weight.copy_(torch.tensor([[0.5, -2.0]]))
    x = torch.tensor([[1.0, -1.0], [2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    # w.x = 2.5, 1.0, -2.0 -> active, active, inactive
    expected = torch.tensor([[2.0, 2.0, 0.0], [2.0, 4.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(empirical_ntk(net, x), expected)


def brute_force(model, x1, x2):
    params = [p for p in model.parameters() if p.requires_grad]

    def grad(x):
        return torch.cat([g.reshape(-1) for g in torch.autograd.grad(model(x[None]).sum(), params)])

    J1 = torch.stack([grad(x) for x in x1]).double()
    J2 = torch.stack([grad(x) for x in x2]).double()
    return J1 @ J2.T


@pytest.mark.filterwarnings("ignore:There is a performance drop")
@pytest.mark.parametrize("config", ["fp32", "bitnet-b1.58", "paper-1bit"])
def test_mlp_matches_brute_force_per_sample_gradients(config):
    torch.manual_seed(0)
    net = MLP(5, [7, 6], quant=config, dtype=torch.float64)
    x1, x2 = torch.randn(9, 5, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    expected = brute_force(net, x1, x2)
    torch.testing.assert_close(empirical_ntk(net, x1, x2), expected)
    torch.testing.assert_close(empirical_ntk(net, x1, x2, chunk=2), expected)
    torch.testing.assert_close(empirical_ntk(net, x1), brute_force(net, x1, x1))


@pytest.mark.parametrize("config", ["fp32", "paper-1bit"])
def test_backends_agree(config):
    net = TwoLayerNet(4, 16, quant=config, train_a=True, seed=1, dtype=torch.float64)
    x = sphere(7, 4)
    ref = _ntk(net, x, None, 3, "loop")
    torch.testing.assert_close(_ntk(net, x, None, 3, "batched"), ref)
    torch.testing.assert_close(_ntk(net, x, None, 3, "two_layer"), ref)
    torch.testing.assert_close(empirical_ntk(net, x), ref)
    with pytest.raises(ValueError, match="two_layer"):
        _ntk(MLP(4, [5], quant="fp32"), x.float(), None, 3, "two_layer")
    if config == "fp32":
        torch.testing.assert_close(_ntk(net, x, None, 3, "func"), ref)
    else:  # the STE's autograd.Function has no setup_context: torch.func refuses rather than returning zeros
        with pytest.raises(RuntimeError):
            _ntk(net, x, None, 3, "func")


@pytest.mark.parametrize("ste", ["identity", "clipped", "approx_sign", "relu", "clipped_relu"])
@pytest.mark.parametrize("trainable", ["hidden", "both", "a"])
def test_two_layer_closed_form_equals_backprop(ste, trainable):
    net = TwoLayerNet(5, 40, kappa=0.7, quant={"preset": "paper-1bit", "ste": ste, "ste_clip": 0.8},
                      train_a=trainable != "hidden", seed=2, dtype=torch.float64)
    with torch.no_grad():
        net.a.mul_(torch.linspace(0.5, 1.5, 40, dtype=torch.float64))  # a trained away from +-1
    if trainable == "a":
        net.hidden.weight.requires_grad_(False)
    x1, x2 = sphere(9, 5, seed=1), sphere(4, 5, seed=2)
    torch.testing.assert_close(empirical_ntk(net, x1, x2, chunk=4), _ntk(net, x1, x2, 3, "batched"))
    torch.testing.assert_close(empirical_ntk(net, x1), _ntk(net, x1, None, 4, "loop"))


def test_generic_path_chunked_equals_unchunked():
    net = TwoLayerNet(6, 64, quant="paper-1bit", train_a=True, seed=3)
    x = sphere(11, 6, dtype=torch.float32)
    H = _ntk(net, x, None, 11, "batched")
    for chunk in (1, 3, 4, 50):
        torch.testing.assert_close(_ntk(net, x, None, chunk, "batched"), H, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(_ntk(net, x[:4], x[5:], 2, "batched"), H[:4, 5:], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(empirical_ntk(net, x), H, rtol=1e-5, atol=1e-6)


def test_chunked_symmetric_psd_and_x2():
    net = TwoLayerNet(6, 64, quant="paper-1bit", train_a=True, seed=3)
    x = sphere(11, 6, dtype=torch.float32)
    H = empirical_ntk(net, x)
    assert H.dtype == torch.float64 and H.shape == (11, 11)
    for chunk in (1, 3, 4, 11, 50):
        torch.testing.assert_close(empirical_ntk(net, x, chunk=chunk), H, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(H, H.T, rtol=0, atol=0)
    assert torch.linalg.eigvalsh(H).min() > -1e-5 * H.diagonal().max()
    torch.testing.assert_close(empirical_ntk(net, x, x), H, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(empirical_ntk(net, x[:4], x[5:], chunk=2), H[:4, 5:], rtol=1e-6, atol=1e-6)


def test_rejects_bad_inputs():
    net = TwoLayerNet(3, 4, quant="fp32")
    net.hidden.weight.requires_grad_(False)
    with pytest.raises(ValueError, match="trainable"):
        empirical_ntk(net, torch.randn(2, 3))
    with pytest.raises(ValueError, match="scalar-output"):
        empirical_ntk(MLP(3, [4], d_out=2, quant="fp32"), torch.randn(2, 3))


def rel_fro(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("train_a", [False, True])
def test_fp32_wide_net_matches_the_analytic_kernel(train_a):
    x = sphere(20, 16, dtype=torch.float32)
    net = TwoLayerNet(16, 8192, kappa=1.3, quant="fp32", train_a=train_a, seed=0)
    H = empirical_ntk(net, x)
    K = analytic_ntk(x, kappa=1.3, trained="both" if train_a else "hidden")
    assert rel_fro(H, K) < 0.04


@pytest.mark.parametrize("ste", ["identity", "clipped", "approx_sign", "relu"])
def test_paper_1bit_wide_net_matches_the_hypercube_kernel(ste):
    x = sphere(16, 10, dtype=torch.float32)
    net = TwoLayerNet(10, 16384, quant={"preset": "paper-1bit", "ste": ste}, seed=0)
    H = empirical_ntk(net, x)
    K = analytic_ntk(x, quant="sign", ste=ste, method="exact")
    assert rel_fro(H, K) < 0.04


def test_paper_1bit_both_and_the_clipped_factor():
    x = sphere(16, 10, dtype=torch.float32)
    net = TwoLayerNet(10, 16384, quant=PAPER_IDENTITY, train_a=True, seed=1)
    K = analytic_ntk(x, quant="sign", trained="both", method="exact")
    assert rel_fro(empirical_ntk(net, x), K) < 0.04
    # paper-1bit's default STE is clipped: the hidden kernel shrinks by E 1{|w| <= 1} = erf(1/sqrt 2)
    clipped = TwoLayerNet(10, 16384, quant="paper-1bit", seed=2)
    identity = clipped.twin(PAPER_IDENTITY)
    ratio = float(empirical_ntk(clipped, x).sum() / empirical_ntk(identity, x).sum())
    assert ratio == pytest.approx(math.erf(1 / math.sqrt(2)), rel=0.02)


@pytest.mark.slow
def test_memory_sanity_n200_m16384_d100(capsys):
    net = TwoLayerNet(100, 16384, quant="paper-1bit", seed=0)
    x = sphere(200, 100, dtype=torch.float32)
    t0 = time.perf_counter()
    H = empirical_ntk(net, x)
    elapsed = time.perf_counter() - t0
    with capsys.disabled():
        print(f"\nempirical_ntk n=200 m=16384 d=100: {elapsed:.1f} s")
    assert H.shape == (200, 200) and torch.isfinite(H).all()
    t0 = time.perf_counter()
    generic = _ntk(net, x, None, None, "batched")  # blockwise Jacobians (81 points x 1.6M parameters)
    elapsed = time.perf_counter() - t0
    with capsys.disabled():
        print(f"empirical_ntk n=200 m=16384 d=100, generic Jacobian path: {elapsed:.1f} s")
    torch.testing.assert_close(generic, H, rtol=1e-4, atol=1e-5)
    K = analytic_ntk(x, quant="sign", ste="clipped", method="mc", samples=50_000)
    assert rel_fro(H, K) < 0.05
