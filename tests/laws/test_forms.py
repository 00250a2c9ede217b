"""Law forms: each registered form computes the formula its docstring states, with usable metadata."""

from __future__ import annotations

import re
import textwrap

import numpy as np
import pytest
import torch

from bitscale.laws import forms
from bitscale.laws.data import LawData
from bitscale.laws.fit import fit_law, grid_starts
from bitscale.laws.forms import LAWS, get_law

BUILTIN = ["power_N", "power_D", "power_C", "power_S", "kaplan", "chinchilla", "curve", "precision",
           "precision_multiplier", "precision_power", "precision_ptq", "scale_time", "ntk"]

X = {"N": np.array([1e6, 3e7, 2e9]), "D": np.array([1e8, 5e9, 4e11]), "C": np.array([1e15, 1e18, 3e21]),
     "S": np.array([100.0, 1e3, 5e4]), "P": np.array([1.58, 4.0, 16.0]), "p": np.array([1e3, 1e4, 1e5]),
     "t": np.array([0.0, 300.0, 5000.0]), "Q": np.array(["bf16", "int4", "bf16"], dtype=object)}

# natural parameters and the formula of the docstring, in numpy
CASES = {
    "power_N": ({"E": 0.5, "A": 20.0, "alpha": 0.3}, lambda p, x: p["E"] + p["A"] * x["N"] ** -p["alpha"]),
    "power_S": ({"E": 0.5, "A": 20.0, "alpha": 0.3}, lambda p, x: p["E"] + p["A"] * x["S"] ** -p["alpha"]),
    "kaplan": ({"Nc": 8.8e13, "Dc": 5.4e13, "alpha_N": 0.076, "alpha_D": 0.095},
               lambda p, x: ((p["Nc"] / x["N"]) ** (p["alpha_N"] / p["alpha_D"]) + p["Dc"] / x["D"]) ** p["alpha_D"]),
    "chinchilla": ({"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28},
                   lambda p, x: p["E"] + p["A"] / x["N"] ** p["alpha"] + p["B"] / x["D"] ** p["beta"]),
    "curve": ({"E": 0.2, "A": 30.0, "alpha": 0.5, "B": 8.0, "beta": 0.6},
              lambda p, x: p["E"] + p["A"] / x["N"] ** p["alpha"] + p["B"] / x["S"] ** p["beta"]),
    "precision": ({"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28, "gamma": 2.5},
                  lambda p, x: p["E"] + p["A"] * (x["N"] * (1 - np.exp(-x["P"] / p["gamma"]))) ** -p["alpha"]
                  + p["B"] * x["D"] ** -p["beta"]),
    "precision_multiplier": ({"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28,
                              "c[bf16]": 1.0, "c[int4]": 0.5},
                             lambda p, x: p["E"] + p["A"] * (np.where(x["Q"] == "int4", 0.5, 1.0) * x["N"])
                             ** -p["alpha"] + p["B"] * x["D"] ** -p["beta"]),
    "precision_power": ({"E[bf16]": 1.7, "E[int4]": 1.9, "A[bf16]": 400.0, "A[int4]": 300.0,
                         "alpha[bf16]": 0.34, "alpha[int4]": 0.3},
                        lambda p, x: np.where(x["Q"] == "int4", 1.9 + 300.0 * x["N"] ** -0.3,
                                              1.7 + 400.0 * x["N"] ** -0.34)),
    "scale_time": ({"E": 0.1, "A": 50.0, "alpha": 0.5}, lambda p, x: p["E"] + p["A"] * (x["p"] * x["t"]) ** -p["alpha"]),
    "ntk": ({"L_inf": 0.05, "L_0": 1.0, "r": 1e-3},
            lambda p, x: p["L_inf"] + (p["L_0"] - p["L_inf"]) * np.exp(-p["r"] * x["t"])),
}


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_metadata(name: str) -> None:
    law = get_law(name)
    assert LAWS[name] is law and law.name == name
    assert law.formula.startswith("L = ") and law.citation
    assert set(law.bounds) == set(law.params) == set(law.grid)
    for p in law.params:
        lo, hi = law.bounds[p]
        assert lo < hi and all(lo <= v <= hi for v in law.grid[p]), p


@pytest.mark.parametrize("name", sorted(CASES))
def test_predict_matches_docstring_formula(name: str) -> None:
    law = get_law(name)
    params, formula = CASES[name]
    x = {v: X[v] for v in law.variables}
    if name == "scale_time":
        x["t"] = np.array([10.0, 300.0, 5000.0])    # t = 0 is only allowed for ntk
    np.testing.assert_allclose(law.predict(params, x), formula(params, x), rtol=1e-10)
    theta = law.theta(params)
    assert law.natural(theta) == pytest.approx(params, rel=1e-12)


def test_log_loss_is_batched() -> None:
    law = get_law("chinchilla")
    theta = {p: torch.rand(7, 1, dtype=torch.float64) for p in law.params}
    x = {v: torch.as_tensor(X[v]) for v in law.variables}
    out = law.log_loss(theta, x)
    assert out.shape == (7, 3) and out.dtype == torch.float64
    one = law.log_loss({p: t[2:3] for p, t in theta.items()}, x)
    torch.testing.assert_close(out[2:3], one)


def test_power_laws_for_any_variable() -> None:
    assert get_law("power_N").variables == ("N",)
    law = get_law("power_t")
    assert law.variables == ("t",) and "power_t" in LAWS


def test_unknown_law_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown law 'nope'.*chinchilla"):
        get_law("nope")


def test_unknown_category_label() -> None:
    params, _ = CASES["precision_multiplier"]
    x = {"N": X["N"], "D": X["D"], "Q": np.array(["fp8", "int4", "bf16"], dtype=object)}
    with pytest.raises(ValueError, match="unknown Q label"):
        get_law("precision_multiplier").predict(params, x)


def test_default_grid_and_natural_from_bounds() -> None:
    @forms.law("test_defaults", variables=("N",), params={"e": (-4, 0), "a": (0, 8), "alpha": (0, 2)},
               formula="L = exp(e) + exp(a)*N^-alpha")
    def law(p, x):
        return forms.logsumexp(p["e"], p["a"] - p["alpha"] * torch.log(x["N"]))

    assert law.grid["e"] == (-3.0, -2.0, -1.0) and law.grid["alpha"] == (0.5, 1.0, 1.5)
    assert law.natural({"e": 1.0, "a": 2.0, "alpha": 0.3}) == {"e": 1.0, "a": 2.0, "alpha": 0.3}
    assert grid_starts(law, {"alpha": [0.7]}, []).shape == (9, 3)
    del LAWS["test_defaults"]


def test_user_defined_law_from_the_module_docstring() -> None:
    """The example in forms.py's docstring, run as written, then fitted end to end."""
    block = re.search(r"\n(    import torch\n.*?# returns log L, batched)\n", forms.__doc__, re.S).group(1)
    namespace: dict = {}
    exec(textwrap.dedent(block), namespace)
    my_power = namespace["my_power"]
    assert LAWS["my_power"] is my_power and my_power.params == ("e", "a", "alpha")
    assert my_power.citation == "mine" and my_power.formula == "L = exp(e) + exp(a) * N^-alpha"

    N = np.logspace(3, 8, 25)
    loss = np.exp(-1.0) + np.exp(4.0) * N ** -0.4
    fit = fit_law("my_power", LawData({"N": N}, loss))
    assert fit.params == pytest.approx({"e": -1.0, "a": 4.0, "alpha": 0.4}, rel=1e-5)
    np.testing.assert_allclose(fit.predict({"N": np.array([1e9])}), np.exp(-1.0) + np.exp(4.0) * 1e9 ** -0.4,
                               rtol=1e-6)
    assert fit_law(my_power, LawData({"N": N}, loss)).objective < 1e-20
    del LAWS["my_power"]
