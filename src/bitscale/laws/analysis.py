"""One complete analysis of one dataset: fit, bootstrap intervals, held-out check, derived answers.

    analyze(law, data, bootstrap_n=1000, resample="points", holdout="largest", drop_top=0) -> Analysis

This is what `bitscale fit` prints for each dataset and what a report builds on. A fit never travels
without its extrapolation error: every Analysis carries the held-out check (`holdout="largest"`: refit
without the largest N, or largest C, and predict those points; `holdout="groups"`: leave each group out
in turn).

`drop_top=K` removes the K points of highest loss before fitting. Epoch AI's replication of Chinchilla
(Besiroglu et al. 2024, arXiv 2404.10102) discusses excluding such high-loss outliers; it is off by
default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from .bootstrap import BootstrapResult, bootstrap
from .data import LawData, LawDataError
from .fit import FitResult, fit_law
from .forms import get_law
from .validate import HoldoutResult, holdout_largest, leave_one_group_out

HOLDOUTS = ("largest", "groups", "none")
RESAMPLE = ("points", "groups")


@dataclass
class Analysis:
    label: str
    law: str
    data: LawData
    fit: FitResult
    boot: Optional[BootstrapResult] = None
    holdouts: list[HoldoutResult] = field(default_factory=list)
    derived: dict[str, Any] = field(default_factory=dict)

    @property
    def holdout_error(self) -> float:
        """Mean |relative error| of the held-out predictions (nan when there was no holdout)."""
        errors = [h.relative_errors for h in self.holdouts]
        return float(np.mean(np.abs(np.concatenate(errors)))) if errors else math.nan

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "label": self.label,
            "law": self.law,
            "n_points": self.fit.n_points,
            "objective": self.fit.objective,
            "params": self.fit.params,
            "holdout": {
                "kind": [h.variable for h in self.holdouts],
                "mean_abs_relative_error": _finite(self.holdout_error),
                "max_abs_relative_error": _finite(
                    max((h.max_abs_relative_error for h in self.holdouts), default=math.nan)
                ),
                "n_held_out": int(sum(int(np.sum(h.held_out)) for h in self.holdouts)),
            },
            "derived": self.derived,
        }
        if self.boot is not None:
            out["bootstrap"] = {
                "n": self.boot.n,
                "n_failed": self.boot.n_failed,
                "level": self.boot.level,
                "by_groups": self.boot.by_groups,
                "intervals": {k: [_finite(lo), _finite(hi)] for k, (lo, hi) in self.boot.intervals.items()},
                "std_errors": {k: _finite(v) for k, v in self.boot.std_errors.items()},
            }
        return out


def _finite(x: float) -> Optional[float]:
    return float(x) if x is not None and math.isfinite(x) else None


def drop_highest(data: LawData, k: int) -> LawData:
    """`data` without its k highest-loss points."""
    if k <= 0:
        return data
    if k >= data.n:
        raise LawDataError(f"--drop-top {k} would drop all {data.n} points")
    keep = np.ones(data.n, dtype=bool)
    keep[np.argsort(data.loss)[-k:]] = False
    return data.subset(keep)


def analyze(
    law: str,
    data: LawData,
    *,
    bootstrap_n: int = 0,
    resample: str = "points",
    holdout: str = "largest",
    drop_top: int = 0,
    seed: int = 0,
    **fit_options: Any,
) -> Analysis:
    """Fit `law` to `data` and attach intervals, the held-out check and derived answers."""
    from . import derived

    if holdout not in HOLDOUTS:
        raise LawDataError(f"holdout: expected one of {', '.join(HOLDOUTS)}, got {holdout!r}")
    if resample not in RESAMPLE:
        raise LawDataError(f"resample: expected one of {', '.join(RESAMPLE)}, got {resample!r}")
    form = get_law(law)
    data = drop_highest(data, drop_top)
    fit = fit_law(form, data, **fit_options)
    result = Analysis(data.label, form.name, data, fit)
    if bootstrap_n > 0:
        if resample == "groups" and data.groups is None:
            raise LawDataError("--resample groups needs groups (e.g. seeds) in the data")
        result.boot = bootstrap(form, data, fit, n=bootstrap_n, by_groups=resample == "groups", seed=seed, **fit_options)
    if holdout == "largest":
        result.holdouts = [holdout_largest(form, data, **fit_options)]
    elif holdout == "groups":
        if data.groups is None:
            raise LawDataError("--holdout groups needs groups (e.g. seeds) in the data")
        result.holdouts = leave_one_group_out(form, data, **fit_options)
    result.derived = derived.answers(form.name, fit, result.boot, data)
    if form.name == "scale_time":
        result.derived.update(_scale_time_answers(data, **fit_options))
    return result


def _scale_time_answers(data: LawData, **fit_options: Any) -> dict[str, Any]:
    """How well curves of different sizes collapse onto one curve of p*t, and how well the small models
    predict the largest (Boopathy & Fiete 2024; see scale_time.py)."""
    from .derived import Answer
    from .scale_time import collapse, predict_from_small

    if len(np.unique(data.x["p"])) < 2:
        return {}
    c = collapse(data, **fit_options)
    small = predict_from_small(data, **fit_options)
    return {
        "collapse (rms joint / rms per size, ~1 = collapses)": Answer(
            ratio=_finite(c.ratio), spread_of_log_loss=_finite(c.spread)
        ),
        f"largest size p={small.size:g} predicted from the smaller ones": Answer(
            mean_abs_relative_error=_finite(small.mean_abs_relative_error)
        ),
    }
