"""IsoFLOP profiles: the loss-minimizing model size at each compute budget (Hoffmann et al. 2022, arXiv
2203.15556, approach 2), per precision.

For one budget C, runs of sizes N_i trained on D_i = C / (6 N_i) give losses L_i. A parabola in
x = ln N is fitted by least squares,

    L(x) = a (x - x*)^2 + L*,      N_opt(C) = e^{x*},  L_opt(C) = L*,

which needs at least 3 distinct sizes. The vertex is trusted only when the parabola opens upward (a > 0)
and x* lies within the sampled sizes; otherwise the profile is flagged (`no_minimum`,
`outside_sizes`): its optimum is somewhere the budget's runs did not reach. With exactly 3 sizes the
parabola interpolates the points, so N_opt carries no interval of its own.

Across budgets, N_opt(C) = k C^a is fitted by least squares in log-log over the trusted profiles
(Chinchilla's a ~ 0.5), with the number of budgets it rests on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from .data import LawDataError


@dataclass
class Profile:
    """One budget's parabola fit for one label."""

    label: str
    budget: float
    n_sizes: int
    curvature: float  # a of L = a (ln N - ln N_opt)^2 + L_opt
    N_opt: float
    loss_opt: float
    sizes: tuple[float, float]  # the smallest and largest N sampled
    flags: list[str] = field(default_factory=list)

    @property
    def trusted(self) -> bool:
        return not self.flags

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "budget": self.budget, "n_sizes": self.n_sizes, "curvature": self.curvature,
                "N_opt": self.N_opt, "loss_opt": self.loss_opt, "sizes": list(self.sizes), "flags": self.flags}


def fit_profile(label: str, budget: float, N: Iterable[float], loss: Iterable[float]) -> Profile:
    """The parabola in ln N through one budget's runs (several seeds of one size are all points)."""
    N, loss = np.asarray(list(N), dtype=float), np.asarray(list(loss), dtype=float)
    keep = np.isfinite(N) & np.isfinite(loss) & (N > 0)
    N, loss = N[keep], loss[keep]
    if len(np.unique(N)) < 3:
        raise LawDataError(f"isoflop: label {label!r}, budget {budget:.3g}: {len(np.unique(N))} distinct sizes; "
                           "a parabola needs at least 3")
    x = np.log(N)
    a, b, c = np.polyfit(x, loss, 2)
    flags = []
    if a <= 0:
        flags.append("no_minimum")
        x_opt = x[np.argmin(loss)]
        loss_opt = float(loss.min())
    else:
        x_opt = -b / (2 * a)
        loss_opt = float(c - b * b / (4 * a))
        if not (x.min() <= x_opt <= x.max()):
            flags.append("outside_sizes")
    return Profile(label, float(budget), len(np.unique(N)), float(a), float(math.exp(x_opt)), loss_opt,
                   (float(N.min()), float(N.max())), flags)


def isoflop_profiles(frame, *, label: str = "label", budget: str = "budget", N: str = "N",
                     loss: str = "loss") -> list[Profile]:
    """One Profile per (label, budget) of a DataFrame with those columns, sorted by label then budget."""
    missing = [c for c in (label, budget, N, loss) if c not in frame.columns]
    if missing:
        raise LawDataError(f"isoflop: missing column(s) {', '.join(missing)}; available: {', '.join(map(str, frame.columns))}")
    out = []
    for (lab, C), g in frame.groupby([label, budget], sort=True):
        out.append(fit_profile(str(lab), float(C), g[N], g[loss]))
    return out


@dataclass
class OptimalScaling:
    """N_opt(C) = k C^a over the trusted profiles of one label."""

    label: str
    exponent: float  # a
    coefficient: float  # k
    n_budgets: int
    untrusted: int  # profiles left out for their flags

    def N_opt(self, C: float) -> float:
        return self.coefficient * C**self.exponent

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "exponent": self.exponent, "coefficient": self.coefficient,
                "n_budgets": self.n_budgets, "untrusted": self.untrusted}


def optimal_scaling(profiles: list[Profile]) -> dict[str, OptimalScaling]:
    """Per label, the log-log least-squares line of N_opt against C through its trusted profiles
    (exponent and coefficient NaN when fewer than 2 budgets are trusted)."""
    out = {}
    for lab in dict.fromkeys(p.label for p in profiles):
        mine = [p for p in profiles if p.label == lab]
        good = [p for p in mine if p.trusted]
        if len(good) >= 2:
            slope, intercept = np.polyfit(np.log([p.budget for p in good]), np.log([p.N_opt for p in good]), 1)
            exponent, coefficient = float(slope), float(math.exp(intercept))
        else:
            exponent = coefficient = math.nan
        out[lab] = OptimalScaling(lab, exponent, coefficient, len(good), len(mine) - len(good))
    return out
