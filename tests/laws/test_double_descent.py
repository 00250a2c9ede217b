"""Double descent and the unified law against cases with known answers: curves drawn from the law itself
(with a peak whose height is linear in the noise, or none), and hand-made curves for the peak measure."""

import numpy as np
import pytest
import torch

from bitscale.laws import LawData, LawDataError
from bitscale.laws.double_descent import compare_sharpness, data_exponent, peak, study, threshold_pt
from bitscale.laws.fit import fit_law
from bitscale.laws.forms import get_law, to_tensors

SIZES = np.array([800, 1600, 3300, 6500, 13000, 26000, 52000, 104000, 209000.0])
STEPS = np.array([500, 1000, 2000, 4000.0])
TRUE = {"E": 0.3, "A": 50.0, "alpha": 0.4, "C": 0.8, "s0": 0.02, "k": 8e7, "w": 0.8}


def law_curves(true=TRUE, noises=(0.0, 0.1, 0.2), seeds=3, jitter=0.01, rng_seed=0):
    """Curves (p, t, n = 4000, noise) of the unified law, one run per size x noise x seed."""
    P, T, Z, G = (a.ravel() for a in np.meshgrid(SIZES, STEPS, np.array(noises), np.arange(seeds), indexing="ij"))
    x = {"p": P, "t": T, "n": np.full_like(P, 4000.0), "noise": Z}
    law = get_law("unified").for_data(x)
    theta = {**law.theta({**true, "B": 1.0, "beta": 0.0}), **law.fixed}
    log_l = law.log_loss({k: torch.tensor([[v]], dtype=torch.float64) for k, v in theta.items()}, to_tensors(law, x))
    rng = np.random.default_rng(rng_seed)
    loss = np.exp(log_l.numpy()[0]) * np.exp(rng.normal(0, jitter, len(P)))
    runs = np.array([f"{p:g}/{z:g}/{g}" for p, z, g in zip(P, Z, G)])
    return LawData(x=x, loss=loss, groups=runs, label="synthetic")


def test_the_unified_law_recovers_its_parameters():
    data = law_curves(seeds=1)
    fit = fit_law("unified", data)
    assert fit.law == "unified[fold=n]" and not fit.at_bound
    for name in ("E", "alpha", "C", "w"):
        assert fit.params[name] == pytest.approx(TRUE[name], rel=0.1), name
    assert threshold_pt(fit, 4000.0) == pytest.approx(TRUE["k"], rel=0.1)  # n folded: k is the peak's p*t


def test_peak_prominence_by_hand():
    # descent to 0.5, a peak of 0.6, second descent to 0.55: prominence 0.6 - max(0.5, 0.55) = 0.05
    p = peak([1, 2, 3, 4, 5], [0.7, 0.5, 0.6, 0.58, 0.55])
    assert p.size == 3 and p.prominence == pytest.approx(0.05) and not p.rising_at_end
    flat = peak([1, 2, 3, 4], [0.7, 0.6, 0.5, 0.4])
    assert flat.size is None and flat.prominence == 0.0
    rising = peak([1, 2, 3, 4], [0.7, 0.5, 0.6, 0.65])
    assert rising.prominence == 0.0 and rising.rising_at_end  # no second descent in range


def test_study_sees_the_peak_grow_with_noise_and_none_without():
    s = study(law_curves(), resamples=20, seed=0)
    assert s.verdicts["appears@0.2"][0] == "holds"
    assert s.verdicts["appears@0.1"][0] == "holds"
    # s0 = 0.02: at noise 0 the peak is 0.016 high on a slope that falls faster; no interior rise
    assert s.peaks[0.0].prominence < s.peaks[0.2].prominence
    assert s.verdicts["grows"][0] == "holds"
    assert s.holdout_noise is not None and s.holdout_noise.mean_abs_relative_error < 0.03
    assert s.holdout_size is not None and np.isfinite(s.holdout_size.mean_abs_relative_error)
    assert s.intervals["w"][0] <= TRUE["w"] * 1.1 and s.intervals["w"][1] >= TRUE["w"] * 0.9


@pytest.mark.slow
def test_a_law_without_a_peak_says_double_descent_does_not_appear():
    s = study(law_curves({**TRUE, "C": 1e-9}), resamples=20, seed=0)
    assert all(s.verdicts[f"appears@{z:g}"][0] == "does not hold" for z in (0.0, 0.1, 0.2))
    assert s.verdicts["grows"][0] != "holds"


@pytest.mark.slow
def test_sharpness_compares_the_fitted_widths():
    sharp = study(law_curves({**TRUE, "w": 0.5}), resamples=20, seed=0)
    flat = study(law_curves({**TRUE, "w": 1.2}), resamples=20, seed=1)
    assert compare_sharpness(flat, sharp)[0] == "sharper"
    assert compare_sharpness(sharp, flat)[0] == "flatter"


def test_study_needs_the_four_variables_and_runs():
    data = law_curves(seeds=1)
    with pytest.raises(LawDataError, match="missing noise"):
        study(LawData({k: v for k, v in data.x.items() if k != "noise"}, data.loss, data.groups), resamples=0)
    with pytest.raises(LawDataError, match="groups"):
        study(LawData(data.x, data.loss), resamples=0)


def test_data_exponent_reads_how_the_data_needed_falls_with_size():
    # L = 0.1 + (p^0.5 * n)^-0.4: the n that reaches a loss goes as p^-0.5, so delta = 0.5
    sizes, ns = np.array([1e3, 4e3, 1.6e4, 6.4e4]), np.geomspace(250, 4000, 5)
    P, N = (a.ravel() for a in np.meshgrid(sizes, ns, indexing="ij"))
    loss = 0.1 + (np.sqrt(P) * N) ** -0.4
    x = {"p": P, "t": np.full_like(P, 4000.0), "n": N, "noise": np.zeros_like(P)}
    runs = np.array([f"{p:g}/{n:g}" for p, n in zip(P, N)])
    assert data_exponent(LawData(x, loss, runs)) == pytest.approx(0.5, abs=0.02)
    # a size that buys nothing: delta = 0
    flat = 0.1 + N ** -0.4
    assert data_exponent(LawData(x, flat, runs)) == pytest.approx(0.0, abs=1e-9)
