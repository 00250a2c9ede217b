"""The scaling-law fits of a report: which law, on which points, with intervals and the held-out check.

Law choice (`choose_law`, used when --law is not given), per fit group (the runs of a sweep that share
every slicing axis but the data budget):
- the data budget varies (task.n_train, train.steps or train.batch_size is a slicing axis):
  `chinchilla`, L = E + A/N^alpha + B/D^beta, one fit per variant;
- else the precision bits P (store column precision_bits) differ between the variants: `precision_size`,
  L = E + A*(N*(1-exp(-P/gamma)))^-alpha,
  one joint fit over all variants (each variant also gets a `power_N` fit, which the power-law claim uses);
- else `power_N`, L = E + A*N^-alpha, one fit per variant.

A law with a precision variable (P or Q) is fitted jointly over the variants; any other law once per
variant. The points are built exactly as `bitscale fit --store` builds them (`laws.inputs` defaults
with N = the non-embedding parameter count), so for a sweep with a single slice the fit command shown in
the report reproduces every number. Each fit has `bootstrap` resamples of the points (95% percentile
intervals) and the held-out check of `laws.analyze` (refit without the largest C, or N, and predict it).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .collect import SweepData, hashable_value

AUTO = "auto"
JOINT_VARIABLES = ("P", "Q")


@dataclass
class FitSet:
    """The fits of one law on one fit group."""

    law: str
    formula: str
    joint: bool
    key: dict[str, Any]                      # the group's fixed slicing values
    analyses: list[Any] = field(default_factory=list)   # laws.Analysis, label = variant (or "all")
    errors: dict[str, str] = field(default_factory=dict)  # label -> one-line reason the fit failed
    x: str = "N"

    @property
    def title(self) -> str:
        return ", ".join(f"{k} = {v}" for k, v in self.key.items()) or "all runs"


@dataclass
class SweepFits:
    law: str
    reason: str                              # why this law (stated in the report)
    main: list[FitSet]                       # the chosen law, one FitSet per fit group
    power: list[FitSet]                      # power_N (or chinchilla) per variant: what the power-law claim uses
    bootstrap: int
    group_axes: list[str]


def choose_law(sweep: SweepData, law: str = AUTO) -> tuple[str, str]:
    """(law name, the reason in one sentence)."""
    if law != AUTO:
        return law, f"{law} was asked for (--law)"
    if sweep.data_axis is not None:
        return "chinchilla", (f"the data budget varies ({sweep.data_axis}), so the law has a size and a data term "
                              "(chinchilla), fitted per variant")
    # the law's precision variable P: information bits per weight, not the storage figure
    bits = sweep.done.groupby("_label")["precision_bits"].mean().dropna()
    if len(bits) >= 2 and bits.nunique() >= 2:
        return "precision_size", ("the variants differ in precision bits per weight "
                                  f"({', '.join(f'{k}: P = {v:.3g}' for k, v in bits.items())}) at one data budget, so one "
                                  "precision-aware law (precision_size, Kumar et al. 2024) is fitted over all of them; "
                                  "each variant also gets its own power law in N")
    return "power_N", "one data budget and one precision per variant: a power law in N per variant (power_N)"


def _columns(part: pd.DataFrame, n_column: str, metric: str) -> dict[str, str]:
    """The variables as `laws.from_store` defines them, N = n_column."""
    from ..laws.inputs import STORE_VARIABLES

    columns = {k: v for k, v in STORE_VARIABLES.items() if v in part.columns and part[v].notna().any()}
    if "D" not in columns and "samples_seen" in part.columns:
        columns["D"] = "samples_seen"
    columns["N"] = n_column
    columns["loss"] = metric
    return columns


def law_data(part: pd.DataFrame, *, by: str, n_column: str, metric: str, joint: bool, source: str) -> list:
    """LawData for the done runs `part`: one per variant, or one for all when `joint`."""
    from ..laws.inputs import from_frame

    columns = _columns(part, n_column, metric)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        datasets = from_frame(part.reset_index(drop=True), columns, by=None if joint else "_label",
                              group="train.seed", source=source, required=lambda var: var in ("loss", "N"))
    for d in datasets:
        d.label = d.label.removeprefix("_label=")
    return datasets


def _fit_group(sweep: SweepData, part: pd.DataFrame, key: dict, law: str, bootstrap: int) -> FitSet:
    from ..laws import LawDataError, analyze, get_law

    form = get_law(law)
    joint = any(v in form.variables for v in JOINT_VARIABLES)
    x = "C" if "C" in form.variables and "N" not in form.variables else form.variables[0]
    out = FitSet(form.name, form.formula, joint, key, x=x)
    try:
        datasets = law_data(part, by=sweep.by, n_column=sweep.n_column, metric=sweep.metric, joint=joint,
                            source=f"sweep {sweep.name!r}")
    except LawDataError as e:
        out.errors["all"] = " ".join(str(e).split())
        return out
    for data in datasets:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out.analyses.append(analyze(form.name, data, bootstrap_n=bootstrap))
        except (LawDataError, ValueError) as e:
            out.errors[data.label] = " ".join(str(e).split())
    return out


def fit_sweep(sweep: SweepData, law: str = AUTO, bootstrap: int = 200) -> SweepFits:
    """Fit the chosen law (and the per-variant power laws the claims need) on every fit group."""
    from ..laws import LawDataError, get_law

    name, reason = choose_law(sweep, law)
    try:
        get_law(name)
    except (KeyError, LawDataError, ValueError) as e:
        raise LawDataError(" ".join(str(e).split())) from None
    axes = [a for a in sweep.slice_axes if a != sweep.data_axis]
    done = sweep.done
    groups = done.groupby([done[a].map(hashable_value) for a in axes], sort=True) if axes else [((), done)]
    main, power = [], []
    power_law = "chinchilla" if sweep.data_axis is not None else "power_N"
    for key, part in groups:
        key = dict(zip(axes, key if isinstance(key, tuple) else (key,)))
        part = part.reset_index(drop=True)
        fits = _fit_group(sweep, part, key, name, bootstrap)
        main.append(fits)
        power.append(fits if name == power_law else _fit_group(sweep, part, key, power_law, bootstrap))
    return SweepFits(name, reason, main, power, bootstrap, axes)


def interval(a: Any, name: str) -> tuple[float, float]:
    if a.boot is None or name not in a.boot.intervals:
        return (float("nan"), float("nan"))
    return tuple(float(v) for v in a.boot.intervals[name])  # type: ignore[return-value]


def holdout_text(a: Any) -> str:
    h = a.to_dict()["holdout"]
    if not h["kind"]:
        return "no held-out check"
    err = h["mean_abs_relative_error"]
    return (f"held out the largest {', '.join(h['kind'])} ({h['n_held_out']} points): mean |relative error| "
            + ("-" if err is None else f"{100 * err:.1f}%"))


def to_json(fits: SweepFits) -> dict[str, Any]:
    def one(fs: FitSet) -> dict[str, Any]:
        return {"law": fs.law, "joint": fs.joint, "group": {k: _plain(v) for k, v in fs.key.items()},
                "fits": [a.to_dict() for a in fs.analyses], "errors": fs.errors}

    return {"law": fits.law, "reason": fits.reason, "bootstrap": fits.bootstrap,
            "fits": [one(f) for f in fits.main], "power_law_fits": [one(f) for f in fits.power if f not in fits.main]}


def _plain(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return v
