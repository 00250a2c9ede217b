"""Catch-up answers: crossing size, gap, matching size and the memory-matched comparison, against closed
forms and against synthetic data from two laws with a known crossing."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from bitscale.laws import LawData, analyze
from bitscale.laws.analysis import catch_up_groups
from bitscale.laws.catch_up import Curve, catch_up, crossing, gap_at, matching_n, memory_matched, reference_label
from bitscale.laws.data import LawDataError

N_STAR = 1e9
REF = {"E": 2.0, "A": 50.0, "alpha": 0.25}
Q = {"E": 1.8, "alpha": 0.2}
Q["A"] = (REF["E"] + REF["A"] * N_STAR ** -REF["alpha"] - Q["E"]) / N_STAR ** -Q["alpha"]   # they meet at N*


def law(p, N):
    return p["E"] + p["A"] * np.asarray(N, dtype=float) ** -p["alpha"]


def closed_curve(label, p, bits=None, spread=0.0, n=400, seed=0):
    """A Curve from closed-form params; `spread` jitters E across fake resamples (for intervals)."""
    rng = np.random.default_rng(seed)
    E = p["E"] + spread * rng.standard_normal(n)
    return Curve(label, lambda N: law(p, N),
                 (lambda N: E[:, None] + p["A"] * np.asarray(N, dtype=float)[None] ** -p["alpha"]) if spread else None,
                 bits, n_range=(1e7, 1e10))


def test_crossing_gap_matching_and_memory_by_hand():
    q, r = closed_curve("ternary", Q, bits=1.6), closed_curve("fp16", REF, bits=16.0)
    c = crossing(q, r)
    assert c["crossing_N"] == pytest.approx(N_STAR, rel=1e-3)
    assert c["crossing"] == "ternary catches up" and c["crossing_inside_data"] is True
    gaps = gap_at(q, r, [1e8, 1e10])
    assert gaps["1e+08"]["gap"] == pytest.approx(law(Q, 1e8) - law(REF, 1e8), rel=1e-12) and gaps["1e+08"]["gap"] > 0
    assert gaps["1e+10"]["ratio"] == pytest.approx(law(Q, 1e10) / law(REF, 1e10), rel=1e-12)
    # L_q(M) = L_ref(N)  =>  M = (A_q / (L_ref(N) - E_q))^(1/alpha_q)
    m = matching_n(q, r, [1e8, 1e10])
    for N in (1e8, 1e10):
        assert m[f"{N:.3g}"]["N"] == pytest.approx((Q["A"] / (law(REF, N) - Q["E"])) ** (1 / Q["alpha"]), rel=1e-3)
    # equal bytes: fp16 at 3.9e8 holds as many bytes as ternary at 3.9e8 * 16 / 1.6 = 3.9e9
    mm = memory_matched(q, r, [3.9e8])["3.9e+08"]
    assert mm["N_q"] == pytest.approx(3.9e9) and mm["bytes"] == pytest.approx(3.9e8 * 2)
    assert mm["gap"] == pytest.approx(law(Q, 3.9e9) - law(REF, 3.9e8), rel=1e-12)
    assert mm["winner"] == "ternary (no interval)"


def test_matching_is_infeasible_below_the_floor_and_no_crossing_is_an_answer():
    behind = {"E": 2.5, "A": 50.0, "alpha": 0.25}          # a floor above fp16's loss at large N
    q, r = closed_curve("binary", behind), closed_curve("fp16", REF)
    c = crossing(q, r)
    assert c["crossing_N"] is None and "behind throughout" in c["crossing"]
    m = matching_n(q, r, [1e12])["1e+12"]
    assert m["N"] == np.inf and m["feasible"] is False
    assert "no storage bits" in memory_matched(q, r, [1e9])["note"]
    ahead = crossing(closed_curve("x", {**REF, "E": 1.5}), r)
    assert ahead["crossing_N"] is None and "ahead throughout" in ahead["crossing"]


def test_intervals_and_no_crossing_fraction_from_resamples():
    q, r = closed_curve("ternary", Q, spread=0.01), closed_curve("fp16", REF, spread=0.002, seed=1)
    c = crossing(q, r)
    lo, hi = c["crossing_N_interval"]
    assert lo < N_STAR < hi and c["no_crossing_fraction"] < 0.05
    g = gap_at(q, r, [1e12])["1e+12"]
    assert g["gap_interval"][0] < g["gap"] < g["gap_interval"][1]
    # a curve shifted far above the reference crosses in no resample: +inf counts, so the bound is inf
    far = closed_curve("binary", {**REF, "E": 3.0}, spread=0.01)
    c = crossing(far, r)
    assert c["no_crossing_fraction"] == 1.0 and c["crossing_N_interval"][1] == np.inf


def test_reference_label_default_and_errors():
    assert reference_label(["bitnet-b1.58", "fp32"], None) == "fp32"
    assert reference_label(["a", "b"], None) == "a"
    with pytest.raises(LawDataError, match="--reference: label 'fp8' is not among the labels"):
        reference_label(["fp16", "ternary"], "fp8")
    answers = catch_up([closed_curve("ternary", Q), closed_curve("fp16", REF)], sizes=[1e9])
    assert list(answers) == ["ternary vs fp16"] and set(answers["ternary vs fp16"]) >= {
        "crossing_N", "gap_at", "matching_N", "memory_matched", "rests_on", "unreliable"}


def synthetic(seed, q=Q, r=REF, sigma=0.01, seeds=3):
    """3 seeds x 8 sizes in [1e7, 1e10] per label, log-normal noise sigma."""
    rng = np.random.default_rng(seed)
    N = np.geomspace(1e7, 1e10, 8)
    rows = [(n, lab, law(p, n) * np.exp(sigma * rng.standard_normal()))
            for lab, p in (("fp16", r), ("ternary", q)) for _ in range(seeds) for n in N]
    x = {"N": np.array([t[0] for t in rows]), "Q": np.array([t[1] for t in rows], dtype=object),
         "bits": np.array([16.0 if t[1] == "fp16" else 1.6 for t in rows])}
    return LawData(x, np.array([t[2] for t in rows]), label="synthetic")


def test_joint_fit_and_by_group_fits_agree():
    """precision_power with nothing shared is one power law per label: the same curves as power_N --by."""
    data = synthetic(0, sigma=0.0)
    joint = analyze("precision_power", data, holdout="none", at=[1e10])
    c = joint.catch_up["ternary vs fp16"]
    assert c["crossing_N"] == pytest.approx(N_STAR, rel=1e-3)
    assert c["memory_matched"]["1e+10"]["N_q"] == pytest.approx(1e11)
    groups = []
    for label in ("fp16", "ternary"):
        mask = data.x["Q"] == label
        part = LawData({"N": data.x["N"][mask], "bits": data.x["bits"][mask]}, data.loss[mask],
                       label=f"precision={label}")
        groups.append(analyze("power_N", part, holdout="none"))
    catch_up_groups(groups, at=[1e10])
    assert groups[0].catch_up == {}
    by = groups[1].catch_up["ternary vs fp16"]
    assert by["crossing_N"] == pytest.approx(c["crossing_N"], rel=1e-4)
    assert by["gap_at"]["1e+10"]["gap"] == pytest.approx(c["gap_at"]["1e+10"]["gap"], rel=1e-4)


@pytest.mark.slow
def test_known_crossing_is_found_and_covered():
    """Target: two laws crossing at N* = 1e9, 3 seeds of 1% noise x 8 sizes in [1e7, 1e10]: crossing_N
    within 10% of N* (median of 50 repeats) and its 95% interval covering N* in >= 90% of them."""
    warnings.simplefilter("ignore", RuntimeWarning)
    estimates, covered = [], []
    for rep in range(50):
        c = analyze("precision_power", synthetic(100 + rep), bootstrap_n=200, holdout="none",
                    seed=rep).catch_up["ternary vs fp16"]
        lo, hi = c["crossing_N_interval"]
        estimates.append(np.nan if c["crossing_N"] is None else c["crossing_N"])
        covered.append(lo <= N_STAR <= (np.inf if hi is None else hi))
    assert abs(np.nanmedian(estimates) / N_STAR - 1) < 0.10
    assert np.mean(covered) >= 0.90


@pytest.mark.slow
def test_parallel_laws_do_not_cross():
    """Target: two laws parallel on the log-log plot (L_q = 1.2 L_ref, one exponent) never cross:
    no_crossing_fraction >= 0.95 when the fit ties the exponent (--share alpha). With a free exponent
    per label the resampled curves meet below the data instead, and the answer says so."""
    warnings.simplefilter("ignore", RuntimeWarning)
    parallel = {"E": 1.2 * REF["E"], "A": 1.2 * REF["A"], "alpha": REF["alpha"]}
    for rep in range(5):
        data = synthetic(200 + rep, q=parallel)
        tied = analyze("precision_power", data, bootstrap_n=200, holdout="none", share=("alpha",))
        assert tied.catch_up["ternary vs fp16"]["no_crossing_fraction"] >= 0.95
        free = analyze("precision_power", data, bootstrap_n=200, holdout="none").catch_up["ternary vs fp16"]
        # a free exponent may put the crossing far below the data, and then says it is an extrapolation
        assert free["crossing_N"] is None or free["crossing_inside_data"] is False
        assert free["outside_data_fraction"] == pytest.approx(1 - free["no_crossing_fraction"])


def test_precision_multiplier_curves_never_cross_and_matching_n_is_closed_form():
    """A constant multiplier with a shared floor cannot express a closing gap: never a crossing, and the
    matching size is N * c_ref / c_q (from L = E + A (c N)^-alpha)."""
    N = np.geomspace(1e7, 1e10, 8)
    truth = {"E": 1.7, "A": 400.0, "alpha": 0.34, "c[fp16]": 1.0, "c[ternary]": 0.4}
    x = {"N": np.tile(N, 2), "Q": np.array(["fp16"] * 8 + ["ternary"] * 8, dtype=object)}
    from bitscale.laws.forms import get_law

    y = get_law("precision_multiplier").fold("D").predict(truth, x)
    a = analyze("precision_multiplier", LawData(x, y), holdout="none", at=[1e9])
    c = a.catch_up["ternary vs fp16"]
    assert a.fit.law == "precision_multiplier[fold=D]"
    assert c["crossing_N"] is None and "behind throughout" in c["crossing"]
    assert c["matching_N"]["1e+09"]["N"] == pytest.approx(1e9 / 0.4, rel=2e-3)
