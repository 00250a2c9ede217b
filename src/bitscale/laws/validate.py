"""Out-of-sample checks of a law: extrapolate to the largest scale, or predict each left-out group.

holdout_largest: fit on every point except those at the largest value(s) of a variable (C if the data
has compute, else N), predict the held-out points and report relative errors (L_pred - L) / L. This is
the check that matters for a scaling law, which is used to extrapolate (Hoffmann et al. 2022,
arXiv 2203.15556, sec. 3; Besiroglu et al. 2024, arXiv 2404.10102). A law that fits the small scales
but misses a change of regime beyond them fails it with large errors.

leave_one_group_out: the same with each group of data.groups (e.g. a seed or a run) held out in turn.

holdout_marked: the same for the rows the user names (`--holdout "N >= 1e9"`, carried as
LawData.held_out), e.g. the largest size of one family only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bitscale.laws.data import LawData, LawDataError, is_categorical
from bitscale.laws.fit import FitResult, fit_law
from bitscale.laws.forms import Law, get_law


@dataclass
class HoldoutResult:
    """Predictions for held-out points from a fit that did not see them."""

    variable: str
    held_out: np.ndarray
    predicted: np.ndarray
    actual: np.ndarray
    relative_errors: np.ndarray
    mean_abs_relative_error: float
    max_abs_relative_error: float
    fit: FitResult
    group: object = None     # the held-out group (leave_one_group_out), else None


def _evaluate(law: Law, data: LawData, held_out: np.ndarray, variable: str, what: str,
              group: object = None, **fit_kwargs) -> HoldoutResult:
    if held_out.all():
        raise LawDataError(f"holding out {what} leaves no points to fit")
    try:
        fit = fit_law(law, data.subset(~held_out), **fit_kwargs)
    except LawDataError as err:
        raise LawDataError(f"holding out {what}: {err}") from None
    test = data.subset(held_out)
    predicted = fit.predict(test.x)
    rel = (predicted - test.loss) / test.loss
    return HoldoutResult(variable, held_out, predicted, test.loss, rel, float(np.mean(np.abs(rel))),
                         float(np.max(np.abs(rel))), fit, group)


def holdout_largest(law: Law | str, data: LawData, variable: str | None = None, *, n_values: int = 1,
                    **fit_kwargs) -> HoldoutResult:
    """Fit without the points at the `n_values` largest values of `variable`, predict them.

    variable defaults to "C" if the data has it, else "N", else the law's first numeric variable.
    fit_kwargs go to fit_law (loss, delta, grid, ...).
    """
    law = get_law(law)
    if variable is None:
        numeric = [v for v in law.variables if v != law.categorical]
        variable = next((v for v in ("C", "N") if v in data.x), numeric[0] if numeric else None)
    if variable is None or variable not in data.x:
        have = ", ".join(sorted(data.x)) or "none"
        raise LawDataError(f"holdout variable {variable} is not in the data (have: {have})")
    values = data.x[variable]
    if is_categorical(values):
        raise LawDataError(f"holdout variable {variable} holds labels; pick a numeric one")
    distinct = np.unique(values[np.isfinite(values)])
    if len(distinct) < 2:
        raise LawDataError(f"holdout variable {variable} takes a single value; nothing to extrapolate to")
    cut = distinct[-min(n_values, len(distinct) - 1)]
    held_out = values >= cut
    return _evaluate(law, data, held_out, variable, f"{variable} >= {cut:g}", **fit_kwargs)


def holdout_marked(law: Law | str, data: LawData, **fit_kwargs) -> HoldoutResult:
    """Fit without the rows `data.held_out` marks (`--holdout EXPR`, e.g. "N >= 1e9"), predict them."""
    law = get_law(law)
    marked = getattr(data, "held_out", None)
    if marked is None:
        raise LawDataError("holdout: no rows are marked to hold out (give --holdout EXPR)")
    marked = np.asarray(marked, dtype=bool)
    if not marked.any():
        raise LawDataError(f"holdout: the expression marks none of the {data.n} rows of {data.label or 'the data'}")
    return _evaluate(law, data, marked, "marked", "the marked rows", **fit_kwargs)


def leave_one_group_out(law: Law | str, data: LawData, **fit_kwargs) -> list[HoldoutResult]:
    """One HoldoutResult per group of data.groups: fit on the others, predict that group."""
    law = get_law(law)
    if data.groups is None:
        raise LawDataError("leave_one_group_out needs data.groups (e.g. the seed of each point)")
    labels = np.unique(data.groups)
    if len(labels) < 2:
        raise LawDataError(f"leave_one_group_out needs at least 2 groups; data has {len(labels)}")
    return [_evaluate(law, data, data.groups == g, "group", f"group {g}", group=g, **fit_kwargs)
            for g in labels]
