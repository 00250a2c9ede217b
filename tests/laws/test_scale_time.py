"""Scale-time equivalence measured on synthetic curves with a known answer."""

import numpy as np
import pytest

from bitscale.laws.data import LawData, LawDataError
from bitscale.laws.scale_time import collapse, collapse_spread, predict_from_small

SIZES = np.array([1e3, 4e3, 1.6e4, 6.4e4])
STEPS = np.geomspace(10, 10_000, 15)


def curves(loss_fn, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    p, t = np.meshgrid(SIZES, STEPS, indexing="ij")
    p, t = p.ravel(), t.ravel()
    loss = loss_fn(p, t) * np.exp(noise * rng.standard_normal(p.shape))
    return LawData(x={"p": p, "t": t}, loss=loss, groups=p)


def scale_time_law(p, t):  # the law holds exactly: L depends on p * t only
    return 0.1 + 30.0 * (p * t) ** -0.4


def separable_law(p, t):  # size and time act separately with different exponents: no collapse
    return 0.1 + 5.0 * p**-0.15 + 3.0 * t**-0.8


def test_curves_from_the_law_collapse():
    data = curves(scale_time_law, noise=0.005)
    result = collapse(data)
    assert result.joint.params["alpha"] == pytest.approx(0.4, rel=0.03)
    assert result.ratio < 1.5
    assert result.spread < 0.02


def test_separable_curves_do_not_collapse():
    data = curves(separable_law, noise=0.005)
    result = collapse(data)
    assert result.ratio > 5
    assert collapse_spread(data) > 5 * collapse_spread(curves(scale_time_law, noise=0.005))


def test_small_models_trained_longer_predict_the_large_one():
    exact = predict_from_small(curves(scale_time_law))
    assert exact.size == SIZES[-1]
    assert exact.mean_abs_relative_error < 0.01
    wrong = predict_from_small(curves(separable_law))
    assert wrong.mean_abs_relative_error > 5 * exact.mean_abs_relative_error


def test_one_size_is_not_enough():
    data = curves(scale_time_law)
    one = data.subset(data.x["p"] == SIZES[0])
    with pytest.raises(LawDataError, match="at least 2 model sizes"):
        collapse(one)
