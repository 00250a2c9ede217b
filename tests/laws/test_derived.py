import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from bitscale.laws.data import LawData, LawDataError
from bitscale.laws.derived import (answers, compute_optimal, effective_fraction, matching_size,
                                   percentile_interval, precision_multipliers)

# alpha = 1, beta = 1/2, A = 8, B = 1: G = (8 / 0.5)^(2/3) = 16^(2/3); at C/6 = 1e6 the optimum solves
# d/dN [8/N + (N/1e6)^(1/2)] = 0, i.e. N^(3/2) = 16000.
HAND = {"E": 0.5, "A": 8.0, "alpha": 1.0, "B": 1.0, "beta": 0.5}
CHIN = {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}  # Hoffmann et al. 2022, eq. 10


def loss(p, N, D):
    return p["E"] + p["A"] * N ** -p["alpha"] + p["B"] * D ** -p["beta"]


def fake_boot(params, n=200, scale=0.02, level=0.9, seed=0):
    rng = np.random.default_rng(seed)
    return SimpleNamespace(samples={k: v * np.exp(scale * rng.standard_normal(n)) for k, v in params.items()},
                           level=level)


def test_compute_optimal_by_hand():
    r = compute_optimal(HAND, 6e6)
    n = 16000 ** (2 / 3)
    assert r["N_opt"] == pytest.approx(n, rel=1e-12)
    assert r["N_opt"] == pytest.approx(16 ** (2 / 3) * 100, rel=1e-12)
    assert r["D_opt"] == pytest.approx(1e6 / n, rel=1e-12)
    assert r["ratio"] == pytest.approx(1e6 / n ** 2, rel=1e-12)
    assert r["loss"] == pytest.approx(0.5 + 8 / n + (n / 1e6) ** 0.5, rel=1e-12)
    assert r["C"] == 6e6


@pytest.mark.parametrize("params", [HAND, CHIN])
def test_compute_optimal_matches_brute_force(params):
    for C in (1e18, 1e21, 1e24):
        N = np.geomspace(1e2, 1e16, 400_001)
        L = loss(params, N, C / (6 * N))
        i = int(np.argmin(L))
        r = compute_optimal(params, C)
        assert r["N_opt"] == pytest.approx(N[i], rel=2e-4)
        assert r["loss"] == pytest.approx(L[i], rel=1e-9)
        assert r["loss"] <= L.min() * (1 + 1e-12)


def test_compute_optimal_vector_and_intervals():
    boot = fake_boot(CHIN)
    C = np.array([1e20, 1e22])
    r = compute_optimal(CHIN, C, boot)
    assert r["N_opt"].shape == (2,) and r["N_opt_interval"][0].shape == (2,)
    for key in ("N_opt", "D_opt", "ratio", "loss"):
        lo, hi = r[f"{key}_interval"]
        assert np.all(lo < r[key]) and np.all(r[key] < hi)
    # the interval is the percentile range of the per-sample frontier
    per_sample = [compute_optimal({k: v[b] for k, v in boot.samples.items()}, 1e22)["N_opt"] for b in range(200)]
    np.testing.assert_allclose([r["N_opt_interval"][0][1], r["N_opt_interval"][1][1]],
                               np.percentile(per_sample, [5, 95]), rtol=1e-10)
    scalar = compute_optimal(CHIN, 1e22, boot)
    assert isinstance(scalar["N_opt_interval"][0], float)
    assert scalar["N_opt_interval"][0] == pytest.approx(r["N_opt_interval"][0][1])


def test_compute_optimal_errors():
    with pytest.raises(LawDataError, match="missing beta"):
        compute_optimal({k: v for k, v in CHIN.items() if k != "beta"}, 1e20)
    with pytest.raises(LawDataError, match="C must be > 0"):
        compute_optimal(CHIN, [1e20, 0.0])


MULT = {"E": 1.0, "A": 100.0, "alpha": 0.5, "B": 10.0, "beta": 0.5,
        "c[bitnet-b1.58]": 1.0, "c[fp32]": 4.0, "c[int4]": 2.0}
MULT_FIT = SimpleNamespace(law="precision_multiplier", params=MULT,
                           categories={"Q": ["bitnet-b1.58", "fp32", "int4"]})


def test_precision_multipliers():
    out = precision_multipliers(MULT_FIT)
    assert out == {"bitnet-b1.58": {"worth": 0.25}, "fp32": {"worth": 1.0}, "int4": {"worth": 0.5}}
    assert precision_multipliers(MULT_FIT, full="int4")["fp32"]["worth"] == 2.0
    boot = fake_boot(MULT)
    boot.samples["c[bitnet-b1.58]"] = np.ones(200)
    out = precision_multipliers(MULT_FIT, boot)
    lo, hi = out["int4"]["interval"]
    assert lo < 0.5 < hi
    assert out["fp32"]["interval"] == (1.0, 1.0)
    with pytest.raises(LawDataError, match="not one of the fitted labels"):
        precision_multipliers(MULT_FIT, full="fp16")


def test_effective_fraction():
    out = effective_fraction({"gamma": 2.0}, P=[1, 1.58, 16])
    assert out[1.0]["fraction"] == pytest.approx(1 - math.exp(-0.5))
    assert out[1.58]["fraction"] == pytest.approx(1 - math.exp(-0.79))
    assert out[16.0]["fraction"] == pytest.approx(1 - math.exp(-8))
    boot = SimpleNamespace(samples={"gamma": np.array([1.0, 2.0, 3.0, np.nan])}, level=1.0)
    lo, hi = effective_fraction({"gamma": 2.0}, P=[2], boot=boot)[2.0]["interval"]
    assert (lo, hi) == pytest.approx((1 - math.exp(-2 / 3), 1 - math.exp(-2)))
    with pytest.raises(LawDataError, match="gamma"):
        effective_fraction(CHIN)


def test_matching_size_by_hand():
    # floor at D = 100: E + B/10 = 2; target 3 leaves headroom 1, so c*N = (100/1)^2 = 1e4
    r = matching_size(MULT, "precision_multiplier", 3.0, 100.0, category="int4")
    assert r == {"N": pytest.approx(5e3), "feasible": True, "floor": pytest.approx(2.0), "target_loss": 3.0}
    assert matching_size(MULT, "precision_multiplier", 3.0, 100.0)["N"] == pytest.approx(1e4)  # reference
    assert matching_size(MULT, "chinchilla", 3.0, 100.0)["N"] == pytest.approx(1e4)
    kumar = {**MULT, "gamma": 2.0}
    r = matching_size(kumar, "precision", 3.0, 100.0, P=1.58)
    assert r["N"] == pytest.approx(1e4 / (1 - math.exp(-0.79)))
    low = matching_size(MULT, "precision_multiplier", 1.9, 100.0, category="int4")
    assert low["N"] == math.inf and low["feasible"] is False and low["floor"] == pytest.approx(2.0)


def test_matching_size_intervals():
    boot = fake_boot(MULT, scale=0.01)
    r = matching_size(MULT_FIT, "precision_multiplier", 3.0, 100.0, category="int4", boot=boot)
    lo, hi = r["interval"]
    assert lo < 5e3 < hi and r["infeasible_fraction"] == 0.0
    # a target near the floor: some samples cannot reach it, so the upper bound is infinite
    r = matching_size(MULT, "precision_multiplier", 2.005, 100.0, category="int4", boot=boot)
    assert r["feasible"] and 0 < r["infeasible_fraction"] < 1 and r["interval"][1] == math.inf
    # a target that is a function of the parameters is recomputed for every sample
    target = lambda p: p["E"] + p["A"] * (p["c[fp32]"] * 1e4) ** -p["alpha"] + p["B"] * 100.0 ** -p["beta"]  # noqa: E731
    r = matching_size(MULT, "precision_multiplier", target, 100.0, category="int4", boot=boot)
    assert r["N"] == pytest.approx(2e4)
    assert r["interval"][0] < 2e4 < r["interval"][1]
    with pytest.raises(LawDataError, match=r"no multiplier c\[fp8\]"):
        matching_size(MULT, "precision_multiplier", 3.0, 100.0, category="fp8")
    with pytest.raises(LawDataError, match="needs P"):
        matching_size({**MULT, "gamma": 1.0}, "precision", 3.0, 100.0)
    with pytest.raises(LawDataError, match="not 'kaplan'"):
        matching_size(MULT, "kaplan", 3.0, 100.0)


def test_percentile_interval_with_inf():
    lo, hi = percentile_interval(np.array([1.0, 2.0, 3.0, np.inf]), 0.5)
    assert lo in (1.0, 2.0) and hi in (3.0, np.inf)
    lo, hi = percentile_interval(np.arange(101.0), 0.9)
    assert (lo, hi) == pytest.approx((5.0, 95.0))


def test_answers_are_json_and_readable():
    N = np.array([1e3, 1e4, 1e5, 1e3, 1e4, 1e5])
    D = np.array([1e4, 1e4, 1e4, 1e5, 1e5, 1e5])
    data = LawData({"N": N, "D": D}, loss(CHIN, N, D))
    fit = SimpleNamespace(law="chinchilla", params=CHIN, categories={})
    out = answers("chinchilla", fit, fake_boot(CHIN), data)
    assert list(out) == [f"compute-optimal at C={c:.3g}" for c in (6e10, 6e11, 6e12)]
    first = out["compute-optimal at C=6e+10"]
    assert first["N_opt"] == pytest.approx(compute_optimal(CHIN, 6e10)["N_opt"])
    assert str(first).startswith("N_opt ") and "D/N " in str(first) and "[" in str(first)
    json.dumps(out, allow_nan=False)

    q = np.array(["bitnet-b1.58", "fp32", "int4"] * 2, dtype=object)
    data = LawData({"N": N, "D": D, "Q": q}, np.ones(6))
    out = answers("precision_multiplier", MULT_FIT, None, data)
    assert len(out) == 2 and not any(k.startswith("fp32") for k in out)
    (key,) = [k for k in out if k.startswith("int4")]
    assert out[key]["fp32_params_per_param"] == 0.5
    assert out[key]["matching_N"] == pytest.approx(2e5)  # N_fp32 = 1e5 at c = 4 matched at c = 2
    json.dumps(out, allow_nan=False)

    out = answers("precision", SimpleNamespace(law="precision", params={**CHIN, "gamma": 2.0}, categories={}),
                  SimpleNamespace(samples={"gamma": np.array([1.5, 2.0, 2.5])}, level=0.9), data)
    assert len(out) == 6 and "fraction_interval" in out["effective fraction 1-exp(-P/gamma) at P=1.58"]
    assert answers("kaplan", fit, None, data) == {}
