"""Scale-time equivalence measured on synthetic curves with a known answer."""

import numpy as np
import pytest

from bitscale.laws.data import LawData, LawDataError
from bitscale.laws.scale_time import (
    RATIO_LIMIT, collapse, collapse_spread, exchange_exponent, predict_from_small, study,
)

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


def runs_of(loss_fn, seeds=3, noise=0.02):
    """Curves of `seeds` runs per size, each run its own group (what a store's curves give)."""
    rng = np.random.default_rng(1)
    p, t, loss, groups = [], [], [], []
    for size in SIZES:
        for s in range(seeds):
            p += [size] * len(STEPS)
            t += list(STEPS)
            loss += list(loss_fn(size, STEPS) * np.exp(noise * rng.standard_normal(len(STEPS))))
            groups += [f"{size:g}-{s}"] * len(STEPS)
    return LawData(x={"p": np.array(p), "t": np.array(t)}, loss=np.array(loss), groups=np.array(groups))


def test_exchange_exponent_known_answers():
    assert exchange_exponent(curves(scale_time_law)) == pytest.approx(1.0, abs=0.02)  # t* = c / p
    assert exchange_exponent(curves(lambda p, t: 0.1 + 30.0 * (p**0.5 * t) ** -0.4)) == pytest.approx(0.5, abs=0.02)
    assert exchange_exponent(curves(lambda p, t: 0.1 + 3.0 * t**-0.5 + 0 * p)) == pytest.approx(0.0, abs=1e-6)


def test_study_says_holds_on_the_law_and_does_not_hold_when_separable():
    law = study(runs_of(scale_time_law), resamples=8)
    assert law.verdict == "holds", law.reason
    assert law.gamma == pytest.approx(1.0, abs=0.02)  # 8 resamples: the interval is tight, not a coverage test
    assert 1 / 1.5 <= law.intervals["gamma"][0] <= law.intervals["gamma"][1] <= 1.5
    assert law.prediction.mean_abs_relative_error < 0.05
    separable = study(runs_of(separable_law), resamples=8)
    assert separable.verdict == "does not hold", separable.reason
    assert separable.intervals["ratio"][0] > RATIO_LIMIT


def test_study_says_does_not_hold_when_size_buys_no_time():
    # curves that depend on t alone (each size its own small offset): the ratio stays near 1, gamma ~ 0
    flat = study(runs_of(lambda p, t: (0.1 + 3.0 * t**-0.5) * (1 + 0.01 * np.log(p))), resamples=8)
    assert flat.verdict == "does not hold", flat.reason
    assert flat.intervals["gamma"][1] < 1 / 1.5


def test_study_is_inconclusive_on_too_little():
    st = study(runs_of(scale_time_law, seeds=1), resamples=10)  # one run per size: a single distinct resample
    assert st.verdict == "inconclusive" and "unreliable bootstrap" in st.reason
    with pytest.raises(LawDataError, match="groups naming their runs"):
        study(LawData(x={"p": np.repeat(SIZES, 3), "t": np.tile([1.0, 2.0, 3.0], 4)}, loss=np.ones(12)), resamples=5)
