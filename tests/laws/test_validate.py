"""Holdout checks: exact-law data extrapolates with ~0 error, a change of regime beyond the fit does not."""

from __future__ import annotations

import numpy as np
import pytest

from bitscale.laws.data import LawData, LawDataError
from bitscale.laws.forms import get_law
from bitscale.laws.validate import holdout_largest, leave_one_group_out

CHIN = {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}
POWER = {"E": 0.5, "A": 20.0, "alpha": 0.3}


def chinchilla_data() -> LawData:
    N, D = np.meshgrid(np.logspace(6, 9, 7), np.logspace(8, 11, 6), indexing="ij")
    x = {"N": N.ravel(), "D": D.ravel()}
    return LawData(x, get_law("chinchilla").predict(CHIN, x))


def test_exact_law_extrapolates_to_the_largest_n() -> None:
    data = chinchilla_data()
    res = holdout_largest("chinchilla", data)
    assert res.variable == "N" and res.held_out.sum() == 6 and (data.x["N"][res.held_out] == 1e9).all()
    assert res.predicted.shape == res.actual.shape == res.relative_errors.shape == (6,)
    assert res.max_abs_relative_error < 1e-6 and res.mean_abs_relative_error <= res.max_abs_relative_error
    assert res.fit.n_points == data.n - 6
    two = holdout_largest("chinchilla", data, n_values=2)
    assert two.held_out.sum() == 12 and two.max_abs_relative_error < 1e-6


def test_defaults_to_compute_when_present() -> None:
    data = chinchilla_data()
    data = LawData({**data.x, "C": 6 * data.x["N"] * data.x["D"]}, data.loss)
    res = holdout_largest("chinchilla", data)
    assert res.variable == "C" and res.held_out.sum() == 1
    assert res.relative_errors[0] == pytest.approx(0.0, abs=1e-6)


def test_a_kink_beyond_the_fitted_range_fails_the_check() -> None:
    N = np.logspace(3, 8, 16)
    loss = get_law("power_N").predict(POWER, {"N": N})
    beyond = N > 1e7                                    # a new regime: the loss stops improving
    loss[beyond] = get_law("power_N").predict(POWER, {"N": np.array([1e7])})[0] * (N[beyond] / 1e7) ** 0.05
    data = LawData({"N": N}, loss)
    res = holdout_largest("power_N", data, n_values=int(beyond.sum()))
    assert res.mean_abs_relative_error > 0.05 and (res.relative_errors < 0).all()
    # the same holdout on the law's own data passes
    exact = LawData({"N": N}, get_law("power_N").predict(POWER, {"N": N}))
    assert holdout_largest("power_N", exact, n_values=int(beyond.sum())).max_abs_relative_error < 1e-6


def test_leave_one_group_out() -> None:
    N = np.tile(np.logspace(3, 8, 10), 4)
    groups = np.repeat(["s0", "s1", "s2", "s3"], 10)
    shift = np.repeat([0.0, 0.0, 0.0, 0.2], 10)         # seed s3 runs 22% high
    data = LawData({"N": N}, get_law("power_N").predict(POWER, {"N": N}) * np.exp(shift), groups)
    results = leave_one_group_out("power_N", data)
    assert [r.group for r in results] == ["s0", "s1", "s2", "s3"]
    assert all(r.variable == "group" and r.held_out.sum() == 10 for r in results)
    errors = {r.group: r.mean_abs_relative_error for r in results}
    assert errors["s3"] > 0.15 and max(errors["s0"], errors["s1"], errors["s2"]) < 0.01   # Huber: s3 ignored


def test_holdout_errors_are_one_line() -> None:
    data = chinchilla_data()
    with pytest.raises(LawDataError, match=r"^holdout variable P is not in the data \(have: D, N\)$"):
        holdout_largest("chinchilla", data, variable="P")
    with pytest.raises(LawDataError, match="needs data.groups"):
        leave_one_group_out("chinchilla", data)
    two_n = data.subset(data.x["N"] <= np.unique(data.x["N"])[1])
    with pytest.raises(LawDataError, match=r"^holding out N >= 3\.16228e\+06: variable N takes a single value"):
        holdout_largest("chinchilla", two_n)
