"""IsoFLOP profiles (bitscale.laws.isoflop) on losses built from a known parabola and a known N_opt(C)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bitscale.laws import LawDataError
from bitscale.laws.isoflop import fit_profile, isoflop_profiles, optimal_scaling


def test_the_vertex_of_a_known_parabola_is_recovered():
    N = np.array([1e4, 3e4, 1e5, 3e5])
    loss = 0.2 * (np.log(N) - math.log(5e4)) ** 2 + 1.5
    p = fit_profile("fp32", 1e12, N, loss)
    assert p.N_opt == pytest.approx(5e4, rel=1e-9) and p.loss_opt == pytest.approx(1.5)
    assert p.curvature == pytest.approx(0.2) and p.trusted and p.sizes == (1e4, 3e5)


def test_flags_for_a_minimum_outside_the_sizes_or_no_minimum():
    N = np.array([1e4, 2e4, 4e4])
    falling = 0.1 * (np.log(N) - math.log(1e6)) ** 2 + 1.0  # still falling at the largest size
    assert fit_profile("q", 1.0, N, falling).flags == ["outside_sizes"]
    hill = -((np.log(N) - math.log(1.5e4)) ** 2) + 2.0
    p = fit_profile("q", 1.0, N, hill)
    assert p.flags == ["no_minimum"] and p.N_opt == pytest.approx(4e4)  # the best sampled size, not a vertex
    with pytest.raises(LawDataError, match="2 distinct sizes; a parabola needs at least 3"):
        fit_profile("q", 1.0, [1e4, 1e4, 2e4], [1.0, 1.1, 0.9])


def test_the_exponent_of_N_opt_against_C_is_recovered_per_label():
    rows = []
    for label, k, a in (("fp32", 0.1, 0.5), ("ternary", 0.05, 0.6)):
        for C in (1e11, 1e12, 1e13):
            n_opt = k * C**a
            for N in n_opt * np.array([0.25, 0.5, 1.3, 3.0]):
                rows.append({"label": label, "budget": C, "N": N,
                             "loss": 0.3 * (math.log(N) - math.log(n_opt)) ** 2 + 2.0 - 0.1 * math.log10(C)})
    profiles = isoflop_profiles(pd.DataFrame(rows))
    assert [(p.label, p.budget) for p in profiles][:3] == [("fp32", 1e11), ("fp32", 1e12), ("fp32", 1e13)]
    scaling = optimal_scaling(profiles)
    assert scaling["fp32"].exponent == pytest.approx(0.5) and scaling["ternary"].exponent == pytest.approx(0.6)
    assert scaling["ternary"].N_opt(1e12) == pytest.approx(0.05 * 1e12**0.6)
    assert scaling["fp32"].n_budgets == 3 and scaling["fp32"].untrusted == 0
    with pytest.raises(LawDataError, match="missing column"):
        isoflop_profiles(pd.DataFrame(rows).drop(columns="budget"))


def test_the_profiles_plot(tmp_path):
    from bitscale.laws.plot import plot_isoflop

    N = np.array([1e4, 3e4, 1e5])
    frame = pd.DataFrame({"label": ["fp32"] * 3 + ["bitnet"] * 3, "budget": [1e12] * 6, "N": np.r_[N, N],
                          "loss": np.r_[(np.log(N) - 10) ** 2 + 1, (np.log(N) - 11) ** 2 + 1.2]})
    path = plot_isoflop(frame, isoflop_profiles(frame), tmp_path / "iso.png")
    assert path.stat().st_size > 10_000
