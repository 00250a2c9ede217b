import math

import pytest
import torch

from bitscale.data import FUNCTIONS, INPUT_DISTS, function_names, make_function
from bitscale.data.functions import Polynomial
from bitscale.data.inputs import sample_inputs

ALL = ["sines", "polynomial", "compositional", "radial", "teacher"]


def gaussian(n: int, d: int, seed: int = 123, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_registry_lists_all_functions():
    assert function_names() == ALL
    assert set(FUNCTIONS) == set(ALL)
    for name in ALL:
        f = make_function(name, 5, seed=0)
        assert (f.name, f.d, f.seed) == (name, 5, 0)


def test_unknown_function_names_argument_and_allowed_values():
    with pytest.raises(ValueError, match="function='nope'.*sines.*teacher"):
        make_function("nope", 4, 0)


def test_unknown_input_dist_raises():
    with pytest.raises(ValueError, match="input_dist='cube'.*gaussian.*sphere"):
        make_function("sines", 4, 0, input_dist="cube")


@pytest.mark.parametrize("name", ALL)
def test_deterministic_for_seed(name):
    x = gaussian(64, 7)
    y0 = make_function(name, 7, seed=3)(x)
    assert torch.equal(y0, make_function(name, 7, seed=3)(x))
    assert not torch.allclose(y0, make_function(name, 7, seed=4)(x))


@pytest.mark.parametrize("name", ALL)
def test_shape_and_dtype(name):
    f = make_function(name, 6, seed=0)
    y64 = f(gaussian(33, 6))
    y32 = f(gaussian(33, 6).float())
    assert y64.shape == (33,) and y64.dtype == torch.float64
    assert y32.shape == (33,) and y32.dtype == torch.float32
    # Coefficients do not depend on the calling dtype.
    torch.testing.assert_close(y32.double(), y64, rtol=1e-4, atol=1e-4)


def test_rejects_wrong_input_shape():
    f = make_function("sines", 6, seed=0)
    with pytest.raises(ValueError, match=r"\(n, 6\)"):
        f(gaussian(10, 5))
    with pytest.raises(ValueError):
        f(torch.zeros(6))


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("input_dist", INPUT_DISTS)
@pytest.mark.parametrize("d", [2, 16, 1000])
def test_output_scale_is_order_one(name, input_dist, d):
    if name == "radial" and input_dist == "sphere":
        pytest.skip("radial is constant on the sphere")
    x = sample_inputs(2048, d, input_dist, torch.Generator().manual_seed(1))
    for seed in (0, 1):
        y = make_function(name, d, seed, input_dist)(x)
        rms = y.square().mean().sqrt().item()
        assert 0.2 < rms < 4.0, (name, input_dist, d, seed, rms)
        assert y.std().item() > 0.05


def test_sphere_inputs_are_rescaled_to_the_gaussian_scale():
    d = 50
    x = sample_inputs(20, d, "sphere", torch.Generator().manual_seed(0))
    f_sphere = make_function("sines", d, 2, input_dist="sphere")
    f_gauss = make_function("sines", d, 2)
    torch.testing.assert_close(f_sphere(x), f_gauss(math.sqrt(d) * x))


def test_radial_depends_only_on_norm():
    d = 12
    f = make_function("radial", d, seed=5)
    x = gaussian(200, d)
    q, _ = torch.linalg.qr(gaussian(d, d, seed=9))
    x_rot = x @ q.T
    torch.testing.assert_close(x_rot.norm(dim=1), x.norm(dim=1))
    torch.testing.assert_close(f(x_rot), f(x))
    # The same check does fail for a function that is not radial.
    g = make_function("sines", d, seed=5)
    assert not torch.allclose(g(x_rot), g(x), atol=1e-3)
    # And the radial function is not constant: it changes with the norm.
    assert f(x).std() > 0.1


def test_radial_is_constant_on_sphere():
    f = make_function("radial", 8, seed=0, input_dist="sphere")
    y = f(sample_inputs(50, 8, "sphere", torch.Generator().manual_seed(0)))
    torch.testing.assert_close(y, torch.full_like(y, y[0].item()))


def test_polynomial_hand_checked():
    f = Polynomial(3, seed=0, n_linear=1, n_pairs=1, n_cubic=1)
    # Replace the random monomials by known ones: 2 x0 - x0 x1 + 0.5 x1 x2 x2.
    f.monomials = [
        (torch.tensor([[0]]), torch.tensor([2.0], dtype=torch.float64)),
        (torch.tensor([[0, 1]]), torch.tensor([-1.0], dtype=torch.float64)),
        (torch.tensor([[1, 2, 2]]), torch.tensor([0.5], dtype=torch.float64)),
    ]
    x = torch.tensor([[1.0, 2.0, 3.0], [-1.0, 0.0, 2.0]], dtype=torch.float64)
    expected = torch.tensor([(2 - 2 + 9) / math.sqrt(3), (-2 - 0 + 0) / math.sqrt(3)], dtype=torch.float64)
    torch.testing.assert_close(f(x), expected)


def test_polynomial_matches_its_random_monomials():
    d = 4
    f = make_function("polynomial", d, seed=1, n_linear=2, n_pairs=2, n_cubic=1)
    x = gaussian(3, d)
    expected = []
    for row in x.tolist():
        total = 0.0
        for indices, coefs in f.monomials:
            for idx, c in zip(indices.tolist(), coefs.tolist()):
                total += c * math.prod(row[i] for i in idx)
        expected.append(total / math.sqrt(5))
    torch.testing.assert_close(f(x), torch.tensor(expected, dtype=torch.float64))


def test_polynomial_coefficient_counts_validated():
    with pytest.raises(ValueError, match="n_linear"):
        make_function("polynomial", 4, 0, n_linear=0, n_pairs=0, n_cubic=0)
    f = make_function("polynomial", 4, 0, n_cubic=0)
    assert f(gaussian(5, 4)).shape == (5,)


def test_sines_formula():
    d = 5
    f = make_function("sines", d, seed=2, n_terms=3)
    x = gaussian(4, d)
    k = torch.arange(3)
    proj = x @ f.directions.T
    expected = torch.sin(f.omega[k] * proj + f.phi[k]).sum(dim=1) / math.sqrt(3)
    torch.testing.assert_close(f(x), expected)
    torch.testing.assert_close(f.directions.norm(dim=1), torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="n_terms"):
        make_function("sines", d, 0, n_terms=0)


def test_compositional_is_normalized_and_odd():
    f = make_function("compositional", 16, seed=0)  # 3 factors
    x = gaussian(20000, 16)
    y = f(x)
    # Orthonormal directions make the factors independent: E f^2 = 1 exactly for Gaussian inputs.
    assert abs(y.square().mean().item() - 1.0) < 0.05
    torch.testing.assert_close(f(-x), -y)  # product of 3 odd factors
    torch.testing.assert_close(f.directions @ f.directions.T, torch.eye(3, dtype=torch.float64))


def test_compositional_more_factors_than_dimensions():
    f = make_function("compositional", 2, seed=0, n_factors=4)
    x = gaussian(100, 2)
    y = f(x)
    assert y.shape == (100,) and torch.isfinite(y).all()
    torch.testing.assert_close(f(-x), y)  # product of 4 odd factors is even
