"""Bootstrap uncertainty for a fitted law: resample points (or groups), refit, read percentiles.

Nonparametric bootstrap (Efron & Tibshirani 1993, ch. 6 and 13): resample b draws the n points (or the
G groups, e.g. seeds, when by_groups) with replacement; count_bi is how often point i was drawn (for
groups: how often its group was). The refit minimizes the same objective with those counts as weights,

    f_b(theta) = sum_i count_bi * rho(log L_pred(x_i; theta) - log L_i),

so every resample is one row block of a single batched problem: each starts from the full-data optimum
theta_hat plus `n_perturbed` jittered copies (theta_hat + N(0, (jitter * max(|theta_hat|, 1))^2)), and
the best start of each resample is its estimate. The interval at level q is the percentile interval
[quantile (1-q)/2, quantile (1+q)/2] of the estimates; the standard error is their standard deviation.

A resample fails (counted in n_failed, left out of the samples) when it cannot determine the law (a
variable with one distinct value, fewer drawn points than parameters, a category never drawn) or its
best objective is not finite. With more than MAX_FAILED_FRACTION (20%) failed, `reliable` is False and
every interval built on the samples is reported as unreliable: the successful resamples are then a
selected subset, and their spread understates the uncertainty. So are the intervals of a bootstrap
with fewer than MIN_DISTINCT (20) distinct possible resamples, C(2u - 1, u) for u units: resampling
2 seeds as groups can only give 3 different datasets.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from bitscale.laws.data import LawData, LawDataError
from bitscale.laws.fit import FitResult, Objective, init_row, minimize_batched, theta_dict
from bitscale.laws.forms import Law, get_law


_START_OPTIONS = {"grid", "init", "n_polish", "screen_iter", "keep", "min_keep"}
MAX_FAILED_FRACTION = 0.2   # above this share of failed resamples an interval is reported as unreliable
MIN_DISTINCT = 20           # fewer distinct possible resamples (e.g. 2 or 3 seeds as groups): unreliable


@dataclass
class BootstrapResult:
    """Natural-parameter estimates per successful resample, with percentile intervals and std errors."""

    samples: dict[str, np.ndarray]
    intervals: dict[str, tuple[float, float]]
    std_errors: dict[str, float]
    level: float
    n: int
    n_failed: int
    by_groups: bool
    flat: np.ndarray | None = None      # (successful resamples, free columns) fitted parameters
    flat_names: tuple[str, ...] = ()    # the free columns' names (FitResult.theta keys)
    n_units: int = 0                    # points, or groups when by_groups, that are drawn

    @property
    def distinct_resamples(self) -> int:
        """How many different resamples exist: multisets of n_units draws from n_units, C(2u - 1, u)."""
        u = self.n_units
        return math.comb(2 * u - 1, u) if u > 0 else 0

    @property
    def failed_fraction(self) -> float:
        return self.n_failed / self.n if self.n else float("nan")

    @property
    def reliable(self) -> bool:
        """False when more than MAX_FAILED_FRACTION of the resamples failed (or fewer than 2 succeeded):
        the percentiles then describe the resamples that happened to be fittable, not the estimate."""
        return (self.n - self.n_failed >= 2 and self.failed_fraction <= MAX_FAILED_FRACTION
                and not self.too_few_units)

    @property
    def too_few_units(self) -> bool:
        """Fewer than MIN_DISTINCT different resamples exist (2 seeds give 3): percentiles of so few
        values are not intervals."""
        return 0 < self.n_units and self.distinct_resamples < MIN_DISTINCT

    def describe(self) -> str:
        """'1000 resamples, 3 failed (0.3%)', with ': intervals unreliable' and why when they are."""
        text = f"{self.n} resamples, {self.n_failed} failed ({100 * self.failed_fraction:.1f}%)"
        if self.too_few_units:
            return text + (f": intervals unreliable (only {self.distinct_resamples} distinct resamples of "
                           f"{self.n_units} {'groups' if self.by_groups else 'points'})")
        return text if self.reliable else text + f": intervals unreliable (> {100 * MAX_FAILED_FRACTION:.0f}% failed)"

    def interval_of(self, fn: Callable[[dict[str, float]], float]) -> tuple[float, float]:
        """Percentile interval (at `level`) of any quantity computed from one resample's parameters."""
        names = list(self.samples)
        count = len(self.samples[names[0]]) if names else 0
        values = np.array([fn({k: float(self.samples[k][i]) for k in names}) for i in range(count)])
        return _percentile(values, self.level)


def _percentile(values: np.ndarray, level: float) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return (float("nan"), float("nan"))
    lo, hi = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def resample_counts(data: LawData, n: int, by_groups: bool, rng: np.random.Generator) -> np.ndarray:
    """(n, data.n) how often each point is drawn in each resample."""
    if not by_groups:
        draws = rng.integers(0, data.n, size=(n, data.n))
        return np.stack([np.bincount(d, minlength=data.n) for d in draws]).astype(np.float64)
    if data.groups is None:
        raise LawDataError("bootstrap by groups needs data.groups (e.g. the seed of each point)")
    labels, member = np.unique(data.groups.astype(str), return_inverse=True)
    if len(labels) < 2:
        raise LawDataError(f"bootstrap by groups needs at least 2 groups; data has {len(labels)}")
    draws = rng.integers(0, len(labels), size=(n, len(labels)))
    per_group = np.stack([np.bincount(d, minlength=len(labels)) for d in draws]).astype(np.float64)
    return per_group[:, member]


def _determined(obj: Objective, data: LawData, counts: np.ndarray) -> np.ndarray:
    """(B,) True where the drawn points can still determine every free parameter."""
    drawn = counts > 0
    ok = drawn.sum(1) >= len(obj.names)
    for v in obj.law.variables:
        if v == obj.law.categorical:
            labels = np.array([str(c) for c in data.x[v]])
            for c in obj.categories:
                ok &= (drawn & (labels == c)).any(1)
            continue
        values = data.x[v]
        lo = np.where(drawn, values, np.inf).min(1)
        hi = np.where(drawn, values, -np.inf).max(1)
        ok &= hi > lo
    if obj.law.per_label and obj.law.categorical:
        # a curve per label: its drawn points need as many distinct sizes N as it has own parameters
        # (as fit_law requires of the data), and every other numeric variable must still vary
        labels = np.array([str(c) for c in data.x[obj.law.categorical]])
        n_own = len(obj.law.own_per_label)
        for c in obj.categories:
            mine = drawn & (labels == c)
            for v in obj.law.variables:
                if v != obj.law.categorical:
                    values = np.asarray(data.x[v], dtype=float)
                    distinct = sum((mine & (values == u)).any(1).astype(int) for u in np.unique(values[labels == c]))
                    ok &= distinct >= (n_own if v == "N" else min(n_own, 2))
    return ok


def bootstrap(law: Law | str, data: LawData, fit: FitResult, n: int = 1000, *, by_groups: bool = False,
              level: float = 0.95, seed: int = 0, loss: str | None = None, delta: float | None = None,
              n_perturbed: int = 3, jitter: float = 0.05, max_iter: int = 200, chunk: int = 1000,
              **fit_options) -> BootstrapResult:
    """Refit `law` on n resamples of `data` starting near `fit` (loss and delta default to fit's).

    Resamples are solved `chunk` at a time as one batched problem of chunk * (1 + n_perturbed) rows.
    fit_law's start options (grid, init, n_polish, screen_iter, keep, min_keep) are accepted so one set
    of options can serve both calls, and ignored: every resample starts from `fit`.
    """
    unknown = set(fit_options) - _START_OPTIONS
    if unknown:
        raise TypeError(f"bootstrap() got unexpected keyword argument(s) {', '.join(sorted(unknown))}")
    law = get_law(law)
    obj = Objective(law, data, loss or fit.loss, fit.delta if delta is None else delta)
    rng = np.random.default_rng(seed)
    counts = resample_counts(data, n, by_groups, rng)
    ok = _determined(obj, data, counts)
    center = init_row(obj, fit.theta)
    k = 1 + n_perturbed
    estimates = np.full((n, len(center)), np.nan)
    for start in range(0, n, chunk):
        rows = np.flatnonzero(ok[start:start + chunk]) + start
        if len(rows) == 0:
            continue
        X0 = np.repeat(center[None], len(rows) * k, axis=0)
        noise = rng.standard_normal((len(rows), n_perturbed, len(center)))
        X0.reshape(len(rows), k, -1)[:, 1:] += jitter * np.maximum(np.abs(center), 1.0) * noise
        W = torch.from_numpy(np.repeat(counts[rows], k, axis=0))
        X, fvals, _ = minimize_batched(lambda X, r: obj(X, W[r]), torch.from_numpy(X0), obj.lo, obj.hi,
                                       max_iter=max_iter)
        fvals = torch.nan_to_num(fvals, nan=np.inf).reshape(len(rows), k)
        best = fvals.argmin(1)
        found = torch.isfinite(fvals[torch.arange(len(rows)), best]).numpy()
        chosen = X.reshape(len(rows), k, -1)[torch.arange(len(rows)), best].numpy()
        estimates[rows[found]] = chosen[found]
    good = np.isfinite(estimates).all(1)
    naturals = [law.natural(theta_dict(obj, row)) for row in estimates[good]]
    keys = list(fit.params) if not naturals else list(naturals[0])
    samples = {key: np.array([p[key] for p in naturals], dtype=np.float64) for key in keys}
    intervals = {key: _percentile(v, level) for key, v in samples.items()}
    std_errors = {key: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan") for key, v in samples.items()}
    units = len(np.unique(data.groups.astype(str))) if by_groups else data.n
    return BootstrapResult(samples, intervals, std_errors, level, n, int(n - good.sum()), by_groups,
                           estimates[good], tuple(obj.names), units)
