"""bootstrap: percentile intervals cover the truth, errors shrink with data, groups and failures are honoured."""

from __future__ import annotations

import numpy as np
import pytest

from bitscale.laws.bootstrap import bootstrap, resample_counts
from bitscale.laws.data import LawData, LawDataError
from bitscale.laws.fit import fit_law
from bitscale.laws.forms import get_law

POWER = {"E": 0.5, "A": 20.0, "alpha": 0.3}
CHIN = {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}


def power_data(n: int, sigma: float = 0.02, seed: int = 0, groups: np.ndarray | None = None) -> LawData:
    N = np.logspace(3, 8, n)
    loss = get_law("power_N").predict(POWER, {"N": N})
    return LawData({"N": N}, loss * np.exp(sigma * np.random.default_rng(seed).standard_normal(n)), groups)


def test_shapes_for_fifty_resamples() -> None:
    data = power_data(30)
    fit = fit_law("power_N", data)
    boot = bootstrap("power_N", data, fit, n=50)
    assert boot.n == 50 and boot.n_failed == 0 and not boot.by_groups and boot.level == 0.95
    assert set(boot.samples) == set(boot.intervals) == set(boot.std_errors) == set(fit.params)
    for p, values in boot.samples.items():
        assert values.shape == (50,) and np.isfinite(values).all()
        lo, hi = boot.intervals[p]
        assert lo <= fit.params[p] <= hi and boot.std_errors[p] > 0
    again = bootstrap("power_N", data, fit, n=50)
    np.testing.assert_array_equal(again.samples["alpha"], boot.samples["alpha"])   # seeded


def test_intervals_cover_the_true_parameters() -> None:
    x = np.meshgrid(np.logspace(6, 9, 8), np.logspace(8, 11, 8), indexing="ij")
    x = {"N": x[0].ravel(), "D": x[1].ravel()}
    loss = get_law("chinchilla").predict(CHIN, x) * np.exp(0.02 * np.random.default_rng(3).standard_normal(64))
    data = LawData(x, loss)
    fit = fit_law("chinchilla", data)
    boot = bootstrap("chinchilla", data, fit, n=200, seed=1)
    assert boot.n_failed == 0
    for p, true in CHIN.items():
        lo, hi = boot.intervals[p]
        assert lo < true < hi, (p, lo, true, hi)
    # any derived quantity: the loss predicted at a larger model than any fitted
    at = {"N": np.array([1e10]), "D": np.array([1e12])}
    lo, hi = boot.interval_of(lambda p: float(get_law("chinchilla").predict(p, at)[0]))
    assert lo < get_law("chinchilla").predict(CHIN, at)[0] < hi


def test_standard_errors_shrink_with_more_points() -> None:
    small, large = power_data(15, seed=1), power_data(480, seed=2)
    se_small = bootstrap("power_N", small, fit_law("power_N", small, loss="lsq"), n=200).std_errors
    se_large = bootstrap("power_N", large, fit_law("power_N", large, loss="lsq"), n=200).std_errors
    for p in POWER:                       # 32x the points: about 5.7x smaller errors
        assert se_large[p] < 0.5 * se_small[p], p


def test_by_groups_resamples_whole_groups() -> None:
    # 16 independent points, each copied 8 times: only resampling the copies together (groups)
    # sees that there are 16 observations, not 128
    base = power_data(16)
    data = LawData({"N": np.repeat(base.x["N"], 8)}, np.repeat(base.loss, 8), groups=np.repeat(np.arange(16), 8))
    counts = resample_counts(data, 10, True, np.random.default_rng(0))
    for g in range(16):
        assert (counts[:, data.groups == g] == counts[:, data.groups == g][:, :1]).all()
    assert (counts.sum(1) == data.n).all()

    fit = fit_law("power_N", data, loss="lsq")
    by_points = bootstrap("power_N", data, fit, n=200).std_errors
    grouped = bootstrap("power_N", data, fit, n=200, by_groups=True)
    unique = bootstrap("power_N", base, fit_law("power_N", base, loss="lsq"), n=200).std_errors
    assert grouped.by_groups and grouped.n_failed == 0
    for p in POWER:
        assert grouped.std_errors[p] > 2 * by_points[p], p                  # about sqrt(8) = 2.8x
        assert 0.7 < grouped.std_errors[p] / unique[p] < 1.5, p


def test_failed_resamples_are_counted() -> None:
    # 3 groups, one N value each: resamples that draw a single group leave N with one value
    N = np.repeat([1e3, 1e5, 1e7], 4)
    loss = get_law("power_N").predict(POWER, {"N": N}) * np.exp(np.linspace(-0.01, 0.01, 12))
    data = LawData({"N": N}, loss, groups=np.repeat(["a", "b", "c"], 4))
    fit = fit_law("power_N", data)
    boot = bootstrap("power_N", data, fit, n=60, by_groups=True, seed=2)
    assert boot.n_failed > 0
    assert len(boot.samples["alpha"]) == boot.n - boot.n_failed


def test_by_groups_needs_groups() -> None:
    data = power_data(20)
    with pytest.raises(LawDataError, match="needs data.groups"):
        bootstrap("power_N", data, fit_law("power_N", data), n=5, by_groups=True)


def test_failed_share_and_too_few_groups_make_intervals_unreliable():
    from bitscale.laws.bootstrap import BootstrapResult

    def result(n_failed, n_units, by_groups):
        return BootstrapResult({}, {}, {}, 0.95, 100, n_failed, by_groups, None, (), n_units)

    assert result(20, 36, False).reliable and not result(21, 36, False).reliable
    assert "21 failed (21.0%): intervals unreliable (> 20% failed)" in result(21, 36, False).describe()
    two_seeds = result(0, 2, True)
    assert two_seeds.distinct_resamples == 3 and not two_seeds.reliable
    assert "only 3 distinct resamples of 2 groups" in two_seeds.describe()
    assert result(0, 4, True).distinct_resamples == 35 and result(0, 4, True).reliable
