from types import SimpleNamespace

import numpy as np
import pytest

from bitscale.laws.data import LawData, LawDataError
from bitscale.laws.fit import FitResult
from bitscale.laws.forms import get_law
from bitscale.laws.plot import plot_fits

PNG = b"\x89PNG\r\n\x1a\n"
CHIN = {"E": 1.0, "A": 50.0, "alpha": 0.4, "B": 80.0, "beta": 0.3}


def make_fit(law, params, categories=None):
    """A FitResult as fit_law would return it for these natural params (no fitting needed)."""
    form = get_law(law)
    return FitResult(law, dict(params), form.theta(params), 0.0, np.zeros(1), "huber", 1e-3, 1, 1,
                     categories or {}, form)


def make_data(params, N, D, label, q=None, noise=0.01, seed=0):
    rng = np.random.default_rng(seed)
    x = {"N": np.asarray(N, float), "D": np.asarray(D, float)}
    if q is not None:
        x["Q"] = np.asarray(q, dtype=object)
    clean = make_fit("precision_multiplier" if q is not None else "chinchilla", params,
                     {"Q": sorted(set(q))} if q is not None else None).predict(x)
    return LawData(x, clean * np.exp(noise * rng.standard_normal(len(clean))), label=label)


def fake_boot(params, n=50, level=0.9):
    rng = np.random.default_rng(1)
    return SimpleNamespace(samples={k: v * np.exp(0.03 * rng.standard_normal(n)) for k, v in params.items()},
                           level=level)


def fake_holdout(data, variable="N"):
    held = data.x[variable] == data.x[variable].max()
    return SimpleNamespace(held_out=held, mean_abs_relative_error=0.0123)


def check_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 10_000
    assert not [p for p in path.parent.iterdir() if p.name.startswith(f".{path.name}")]  # no temp file left


def test_two_datasets_with_boots_and_holdouts(tmp_path):
    N = np.repeat([1e3, 3e3, 1e4, 3e4, 1e5], 2)
    D = np.tile([1e4, 1e5], 5)
    second = {**CHIN, "E": 1.3, "A": 80.0}
    datasets = [make_data(CHIN, N, D, "quant=fp32"), make_data(second, N, D, "quant=int4", seed=1)]
    fits = [make_fit("chinchilla", CHIN), make_fit("chinchilla", second)]
    path = tmp_path / "out" / "fits.png"
    out = plot_fits(datasets, fits, path, boots=[fake_boot(CHIN), fake_boot(second)],
                    holdouts=[fake_holdout(d) for d in datasets], title="chinchilla")
    assert out == path
    check_png(path)


def test_categorical_slices_and_medians(tmp_path):
    mult = {**CHIN, "c[bitnet-b1.58]": 1.0, "c[fp32]": 3.0}
    N = np.repeat([1e3, 1e4, 1e5], 2)
    q = ["bitnet-b1.58", "fp32"] * 3
    data = make_data(mult, N, np.full(6, 1e5), "all", q=q)
    fit = make_fit("precision_multiplier", mult, {"Q": ["bitnet-b1.58", "fp32"]})
    boot = fake_boot(mult)
    boot.samples["c[bitnet-b1.58]"] = np.ones(50)
    check_png(plot_fits([data], [fit], tmp_path / "mult.png", boots=[boot]))

    # iso-FLOP style data: D differs at every point, so the curve holds D at its median
    N = np.geomspace(1e3, 1e5, 9)
    data = make_data(CHIN, N, 1e9 / N, "iso")
    check_png(plot_fits([data], [make_fit("chinchilla", CHIN)], tmp_path / "iso.png", x="N",
                        holdouts=[fake_holdout(data)]))


def test_errors(tmp_path):
    N = np.array([1e3, 1e4, 1e5])
    data = make_data(CHIN, N, np.full(3, 1e5), "a")
    fit = make_fit("chinchilla", CHIN)
    with pytest.raises(LawDataError, match="x variable 'C'"):
        plot_fits([data], [fit], tmp_path / "p.png", x="C")
    with pytest.raises(ValueError, match="1 datasets, 2 fits"):
        plot_fits([data], [fit, fit], tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()


def test_real_fit_and_bootstrap(tmp_path):
    from bitscale.laws.bootstrap import bootstrap
    from bitscale.laws.fit import fit_law

    N = np.repeat([1e3, 3e3, 1e4, 3e4, 1e5], 2)
    data = make_data(CHIN, N, np.tile([1e4, 1e5], 5), "fp32", noise=0.005)
    grid = {"e": (0.0,), "a": (2.0, 5.0), "alpha": (0.5,), "b": (2.0, 5.0), "beta": (0.5,)}
    fit = fit_law("chinchilla", data, grid=grid)
    boot = bootstrap("chinchilla", data, fit, n=16, max_iter=100)
    check_png(plot_fits([data], [fit], tmp_path / "real.png", boots=[boot], holdouts=[fake_holdout(data)]))


def test_values_within_two_percent_are_one_slice():
    from bitscale.laws.plot import _cluster, _slices

    # bits per weight of three precisions at several sizes: the scale's share differs with the shape
    P = np.array([1.0156, 1.0039, 1.0002, 2.0156, 2.0002, 32.0, 32.0])
    assert list(_cluster(P)) == [0, 0, 0, 1, 1, 2, 2]
    data = make_data(CHIN, np.geomspace(1e3, 1e5, 7), np.full(7, 1e5), "p")
    data.x["P"] = P
    slices, member = _slices(data, ("N", "P"), "N")
    assert [s["P"] for s in slices] == pytest.approx([1.0039, 2.0079, 32.0])  # each at its cluster's median
    assert list(member) == [0, 0, 0, 1, 1, 2, 2]
    data.x["P"] = np.array([1.0, 1.03, 1.07, 1.1, 1.15, 1.2, 1.25])  # 7 distinct slices: one median curve
    assert _slices(data, ("N", "P"), "N")[1] is None
