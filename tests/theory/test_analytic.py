import math

import pytest
import torch
from scipy.integrate import quad
from scipy.stats import norm

from bitscale.theory import analytic_ntk, analytic_ntk_info, ste_factor
from bitscale.theory.analytic import _hypercube


def sphere(n, d, seed=0):
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


def rel_fro(a, b):
    return float((a - b).norm() / b.norm())


def test_fp32_closed_form_values():
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    K = analytic_ntk(x, kappa=2.0)
    # theta = 0: <x,x> / 2; theta = pi/2: 0 (orthogonal); theta = pi/4: <x,x'> * 3/8
    assert K[0, 0] == pytest.approx(4 * 0.5)
    assert K[1, 1] == pytest.approx(4 * 4 * 0.5)
    assert K[0, 1] == pytest.approx(0.0) and K[0, 2] == pytest.approx(0.0)
    assert K[0, 3] == pytest.approx(4 * 1.0 * 3 / 8)
    Kb = analytic_ntk(x, kappa=2.0, trained="both")
    # a-part: |x||x'|/(2 pi) (sin t + (pi - t) cos t): theta = 0 -> |x|^2 / 2; theta = pi -> 0; pi/2 -> |x||x'|/(2 pi)
    assert Kb[0, 0] - K[0, 0] == pytest.approx(4 * 0.5)
    assert Kb[0, 2] - K[0, 2] == pytest.approx(0.0, abs=1e-12)
    assert Kb[0, 1] - K[0, 1] == pytest.approx(4 * 2 / (2 * math.pi))


def test_fp32_closed_form_matches_gaussian_monte_carlo():
    x = sphere(6, 5)
    w = torch.randn(400_000, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    p = w @ x.T
    hidden = (x @ x.T) * ((p > 0).double().T @ (p > 0).double()) / len(w)
    a_part = p.clamp(min=0).T @ p.clamp(min=0) / len(w)
    torch.testing.assert_close(analytic_ntk(x), hidden, atol=5e-3, rtol=0)
    torch.testing.assert_close(analytic_ntk(x, trained="both"), hidden + a_part, atol=5e-3, rtol=0)


def test_ste_factors():
    assert ste_factor("identity") == 1.0
    assert ste_factor("clipped") == pytest.approx(0.682689492, abs=1e-8)
    assert ste_factor("clipped", 2.0) == pytest.approx(2 * norm.cdf(2.0) - 1)
    approx = 2 * quad(lambda t: (2 - 2 * t) ** 2 * norm.pdf(t), 0, 1)[0]
    assert ste_factor("approx_sign") == pytest.approx(approx, rel=1e-12)
    with pytest.raises(ValueError):
        ste_factor("nope")


def test_factorization_by_gaussian_monte_carlo():
    # The hidden sign kernel is E_w[1{<s,x>>0} 1{<s,x'>>0} sum_j x_j x'_j g'(w_j)^2] with s = sign(w):
    # sample it directly from Gaussian w and compare with the factorized exact value.
    x = sphere(5, 6, seed=2)
    w = torch.randn(300_000, 6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    s = torch.where(w > 0, 1.0, -1.0).double()
    act = ((s @ x.T) > 0).double()
    for ste, g in [("clipped", (w.abs() <= 1).double()), ("approx_sign", (2 - 2 * w.abs()).clamp(min=0)),
                   ("relu", (w > 0).double())]:
        direct = sum(torch.outer(x[:, j], x[:, j]) * ((act * g[:, j : j + 1] ** 2).T @ act) for j in range(6)) / len(w)
        exact = analytic_ntk(x, quant="sign", ste=ste, method="exact")
        torch.testing.assert_close(exact, direct, atol=6e-3, rtol=0)


def test_exact_enumeration_is_the_hypercube_average():
    s = _hypercube(3, 0, 8)
    assert s.shape == (8, 3) and len({tuple(r.tolist()) for r in s}) == 8
    x = torch.tensor([[1.0, 0.5, -0.2], [0.3, -1.0, 0.8]], dtype=torch.float64)
    act = ((s @ x.T) > 0).double()
    expected = (x @ x.T) * (act.T @ act) / 8
    torch.testing.assert_close(analytic_ntk(x, quant="sign", method="exact"), expected)
    info = analytic_ntk_info(x, quant="sign")
    assert info.method == "exact" and info.exact and info.samples == 8 and info.stderr.abs().max() == 0


@pytest.mark.parametrize("ste", ["identity", "clipped", "approx_sign", "relu", "clipped_relu"])
@pytest.mark.parametrize("trained", ["hidden", "both"])
def test_exact_and_monte_carlo_agree(ste, trained):
    x = sphere(8, 10, seed=4)
    exact = analytic_ntk(x, quant="sign", ste=ste, trained=trained, method="exact", kappa=1.5)
    info = analytic_ntk_info(x, quant="sign", ste=ste, trained=trained, method="mc", samples=40_000, seed=5, kappa=1.5)
    assert info.method == "mc" and not info.exact and info.samples == 40_000
    assert (info.stderr > 0).any()
    z = (info.kernel - exact).abs() / (info.stderr + 1e-12)
    assert float(z.max()) < 5.0
    assert rel_fro(info.kernel, exact) < 0.02


def test_auto_method_switches_to_monte_carlo_above_16():
    assert analytic_ntk_info(sphere(3, 16), quant="sign").method == "exact"
    assert analytic_ntk_info(sphere(3, 17), quant="sign", samples=2000).method == "mc"


def test_hypercube_kernel_approaches_the_arccos_kernel():
    errors = {}
    for d in (2, 4, 8, 16, 64):
        errs = []
        for seed in range(3):
            x = sphere(12, d, seed=seed)
            for trained in ("hidden", "both"):
                k = analytic_ntk(x, quant="sign", trained=trained, samples=60_000, seed=seed)
                errs.append(rel_fro(k, analytic_ntk(x, trained=trained)))
        errors[d] = sum(errs) / len(errs)
    assert errors[2] > errors[4] > errors[8] > errors[16]
    assert errors[2] > 0.1 and errors[16] < 0.02 and errors[64] < 0.02


def test_symmetry_and_x2():
    x = sphere(7, 9)
    K = analytic_ntk(x, quant="sign", trained="both")
    torch.testing.assert_close(K, K.T)
    assert torch.linalg.eigvalsh(K).min() > -1e-10
    torch.testing.assert_close(analytic_ntk(x[:3], x[3:], quant="sign", trained="both"), K[:3, 3:])
    torch.testing.assert_close(analytic_ntk(x[:3], x[3:]), analytic_ntk(x)[:3, 3:])


def test_errors():
    x = sphere(3, 4)
    with pytest.raises(NotImplementedError, match="ternary"):
        analytic_ntk(x, quant="ternary")
    with pytest.raises(ValueError):
        analytic_ntk(x, trained="a")
    with pytest.raises(ValueError):
        analytic_ntk(x, quant="sign", method="magic")
    with pytest.raises(ValueError):
        analytic_ntk(x, sphere(3, 5))


def test_every_ste_of_quant_has_a_factor():
    """The rules come from quant.ste (one list); a rule added there without a closed form here fails."""
    from bitscale.quant.ste import STE_NAMES

    for rule in STE_NAMES:
        assert ste_factor(rule) > 0
