import math

import pytest
import torch

from bitscale.data import make_function
from bitscale.data.inputs import sample_inputs
from bitscale.data.teacher import TeacherNetwork


def relu(v: float) -> float:
    return max(v, 0.0)


@pytest.mark.parametrize("width", [1, 2])
def test_matches_hand_written_formula(width):
    d = 3
    f = make_function("teacher", d, seed=4, width=width)
    assert isinstance(f, TeacherNetwork) and f.width == width
    x = torch.randn(5, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    w, a = f.w.tolist(), f.a.tolist()
    expected = []
    for row in x.tolist():
        total = 0.0
        for r in range(width):
            pre = sum(w[r][i] * row[i] for i in range(d)) / math.sqrt(d)
            total += a[r] * relu(pre)
        expected.append(total / math.sqrt(width))
    torch.testing.assert_close(f(x), torch.tensor(expected, dtype=torch.float64))


def test_default_width_and_weight_distribution():
    f = make_function("teacher", 100, seed=0)
    assert f.width == 256
    assert f.w.shape == (256, 100) and f.a.shape == (256,)
    assert abs(f.w.std().item() - 1.0) < 0.05
    assert abs(f.a.std().item() - 1.0) < 0.2


def test_deterministic_and_seed_dependent():
    x = torch.randn(50, 1000, generator=torch.Generator().manual_seed(0))
    y = make_function("teacher", 1000, seed=1)(x)
    assert torch.equal(y, make_function("teacher", 1000, seed=1)(x))
    assert not torch.allclose(y, make_function("teacher", 1000, seed=2)(x))
    assert not torch.allclose(y, make_function("teacher", 1000, seed=1, width=128)(x))


@pytest.mark.parametrize("input_dist", ["gaussian", "sphere"])
def test_scale_in_high_dimension(input_dist):
    d = 1000
    x = sample_inputs(2000, d, input_dist, torch.Generator().manual_seed(0))
    y = make_function("teacher", d, seed=0, input_dist=input_dist, width=512)(x)
    assert 0.2 < y.std().item() < 2.0
    assert y.abs().max().item() < 10.0


def test_sphere_scaling_uses_relu_homogeneity():
    d = 20
    x = sample_inputs(30, d, "sphere", torch.Generator().manual_seed(0))
    f_sphere = make_function("teacher", d, 0, input_dist="sphere", width=8)
    f_gauss = make_function("teacher", d, 0, width=8)
    torch.testing.assert_close(f_sphere(x), math.sqrt(d) * f_gauss(x))


def test_bad_width():
    with pytest.raises(ValueError, match="width"):
        make_function("teacher", 4, 0, width=0)
