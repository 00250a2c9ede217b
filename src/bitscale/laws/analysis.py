"""One complete analysis of one dataset: fit, bootstrap intervals, held-out check, derived answers.

    analyze(law, data, bootstrap_n=1000, resample="points", holdout="largest", drop_top=0) -> Analysis

This is what `bitscale fit` prints for each dataset and what a report builds on. A fit never travels
without its extrapolation error: every Analysis carries the held-out check (`holdout="largest"`: refit
without the largest N, or largest C, and predict those points; `holdout="groups"`: leave each group out
in turn; `holdout="marked"`: the rows data.held_out names), or the reason it could not run
(`holdout_failure`). For a law with a categorical precision it also carries the catch-up answers of
each label against the reference (`catch_up`, see catch_up.py); `catch_up_groups` adds them to the
per-group fits of `power_N --by`.

`drop_top=K` removes the K points of highest loss before fitting. Epoch AI's replication of Chinchilla
(Besiroglu et al. 2024, arXiv 2404.10102) discusses excluding such high-loss outliers; it is off by
default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from .bootstrap import BootstrapResult, bootstrap
from .data import LawData, LawDataError
from .fit import FitResult, fit_law
from .forms import get_law
from .validate import HoldoutResult, holdout_largest, holdout_marked, leave_one_group_out

HOLDOUTS = ("largest", "groups", "marked", "none")   # marked: the rows data.held_out names (--holdout EXPR)
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
    catch_up: dict[str, Any] = field(default_factory=dict)
    holdout_failure: Optional[str] = None   # why the held-out check could not run (its error is unknown)

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
            "at_bound": sorted(self.fit.at_bound),
            "at_bound_sides": dict(self.fit.at_bound),
            "holdout": {
                "kind": [h.variable for h in self.holdouts],
                "failed": self.holdout_failure,
                "mean_abs_relative_error": _finite(self.holdout_error),
                "max_abs_relative_error": _finite(
                    max((h.max_abs_relative_error for h in self.holdouts), default=math.nan)
                ),
                "n_held_out": int(sum(int(np.sum(h.held_out)) for h in self.holdouts)),
            },
            "derived": self.derived,
            "catch_up": self.catch_up,
        }
        if self.boot is not None:
            out["bootstrap"] = {
                "n": self.boot.n,
                "n_failed": self.boot.n_failed,
                "failed_fraction": _finite(self.boot.failed_fraction),
                "reliable": self.boot.reliable,
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
    share: Sequence[str] = (),
    reference: Optional[str] = None,
    at: Optional[Sequence[float]] = None,
    **fit_options: Any,
) -> Analysis:
    """Fit `law` to `data` and attach intervals, the held-out check, derived answers and, for a law
    with a categorical precision, the catch-up answers of each label against `reference` at sizes `at`
    (default: the largest N in the data, 10x and 100x it).

    `share` ties per-label parameters across labels (precision_power: share=("alpha",) is Spectra's
    form). A held-out check that cannot run is recorded in `holdout_failure`, not raised: the fit
    stands, its extrapolation error is unknown and says so."""
    from . import derived
    from .catch_up import catch_up, curves_of

    if holdout not in HOLDOUTS:
        raise LawDataError(f"holdout: expected one of {', '.join(HOLDOUTS)}, got {holdout!r}")
    if resample not in RESAMPLE:
        raise LawDataError(f"resample: expected one of {', '.join(RESAMPLE)}, got {resample!r}")
    form = get_law(law).share(share)
    data = drop_highest(data, drop_top)
    fit = fit_law(form, data, **fit_options)
    result = Analysis(data.label, fit.law, data, fit)
    if bootstrap_n > 0:
        if resample == "groups" and data.groups is None:
            raise LawDataError("--resample groups needs groups (e.g. seeds) in the data")
        result.boot = bootstrap(form, data, fit, n=bootstrap_n, by_groups=resample == "groups", seed=seed, **fit_options)
    try:
        if holdout == "largest":
            result.holdouts = [holdout_largest(form, data, **fit_options)]
        elif holdout == "groups":
            if data.groups is None:
                raise LawDataError("--holdout groups needs groups (e.g. seeds) in the data")
            result.holdouts = leave_one_group_out(form, data, **fit_options)
        elif holdout == "marked":
            result.holdouts = [holdout_marked(form, data, **fit_options)]
    except (LawDataError, RuntimeError) as err:
        result.holdout_failure = " ".join(str(err).split())
    result.derived = derived.answers(form.base, fit, result.boot, data)
    if form.base == "scale_time":
        result.derived.update(_scale_time_answers(data, **fit_options))
    curves = curves_of(result)
    if curves:
        result.catch_up = catch_up(curves, reference=reference, sizes=at, default_sizes=default_sizes(data))
    return result


def default_sizes(*datasets: LawData) -> list[float]:
    """Where catch-up answers are read without --at: the largest N in the data, 10x and 100x it."""
    sizes = [float(np.max(d.x["N"])) for d in datasets if "N" in d.x and d.n]
    return [m * max(sizes) for m in (1, 10, 100)] if sizes else []


def catch_up_groups(analyses: Sequence[Analysis], *, reference: Optional[str] = None,
                    at: Optional[Sequence[float]] = None) -> None:
    """For one-variable fits per group (`power_N --by model.quant`): the catch-up answers of each group
    against the reference group, stored in each non-reference group's `catch_up`."""
    from .catch_up import catch_up, curve_of_group

    fitted = [a for a in analyses if "N" in a.fit.form.variables and not a.fit.form.categorical]
    if len(fitted) < 2:
        return
    curves = [curve_of_group(a) for a in fitted]
    answers = catch_up(curves, reference=reference, sizes=at or default_sizes(*(a.data for a in fitted)))
    for a, c in zip(fitted, curves):
        a.catch_up = {k: v for k, v in answers.items() if k.startswith(f"{c.label} vs ")}


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
