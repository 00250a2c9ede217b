"""Double descent across the interpolation threshold, and the unified law of size, time, data and noise.

Boopathy & Fiete (2024, "Unified Neural Network Scaling Laws and Scale-time Equivalence", arXiv
2409.05782) combine scale-time equivalence with a linear-model analysis of double descent into one law
of model size, training time and data, and say it explains (i) double descent itself, (ii) the heightened
sensitivity of overparameterized models to label noise and (iii) cases where a larger model does not
help. Their equations are not reproduced in any source this project could reach (only the abstract and
reviews: the peak comes from fitting label noise, the law is derived for linear models). The form fitted
here is therefore our own, built from those two ingredients (`unified` in forms.py):

    L(p, t, n, noise) = E + A·(p·t)^-alpha + B·n^-beta + C·(s0 + noise)·exp(-z²/2),   z = ln(p·t / (k·n)) / w

- E + A·(p·t)^-alpha is the scale-time law: size and training time enter only as their product;
- B·n^-beta is the data term (folded into E when the data hold one n);
- the last term is the double-descent peak: it sits where the effective size p·t reaches k·n (the
  interpolation threshold moves with the training set), its height grows linearly with the label noise
  (s0 is the noise-equivalent of what the model cannot fit without any), and w is its width in
  ln(p·t): a small w is a sharp peak. With one n in the data, n is folded (taken as 1) and k is the
  threshold's p·t itself (`threshold_pt`).

Model-free measurements, on the mean test error over runs at the last step, one curve per noise level:

- `peak`: for each interior size i, prominence_i = err_i - max(min err left of i, min err right of i);
  the peak is the size of largest prominence, and a curve with no interior rise has prominence 0 (no
  double descent). A curve that still rises at its largest size is flagged: its peak may lie beyond.
- growth with noise: the prominence at the largest noise minus that at the smallest.
- with several training-set sizes n (peaks are then read at the largest): `data_exponent` delta, the n
  needed to reach an error going as p^-delta at the lowest noise; larger models need less data when
  delta > 0 (the paper's "reduced data requirements for generalization in larger models").

`study` adds a stratified run bootstrap (per size, noise and n, resample the runs with replacement; each
refit starts from the full-data optimum) and the verdicts of `RULE`:

    double descent appears (per noise)   prominence interval above FLAT (half an error point) -> holds;
                                         below FLAT -> does not hold; else inconclusive
    the peak grows with label noise      the difference's interval above 0 -> holds, below 0 -> does not
                                         hold, else inconclusive
    larger models need less data         delta's interval above 0 -> holds, below 0 -> does not hold,
                                         else (or with no error level every size reaches) inconclusive
    sharper / flatter (between precisions, `compare_sharpness`): the intervals of w do not overlap ->
                                         the one with the smaller w is sharper; else no difference shown;
                                         inconclusive when either fit has a parameter at a bound

and two held-out checks of the law: the largest size held out (does the fit predict the second
descent beyond it?) and the middle noise level held out (does the noise term interpolate?).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .data import LawData, LawDataError
from .fit import FitResult, fit_law
from .validate import HoldoutResult, holdout_largest, holdout_marked

LAW = "unified"
VARIABLES = ("p", "t", "n", "noise")
# where a store's runs keep each variable (a classification run's config and curve)
STORE_COLUMNS = {"p": "n_params", "t": "step", "n": "data.n_train", "noise": "data.label_noise"}
FLAT = 0.005
MIN_SIZES = 4
MIN_RESAMPLES = 20
RULE = ("double descent appears when the 95% interval of the peak's prominence (its rise over the lower of the "
        f"best errors on either side) lies above {FLAT:g}, and does not when it lies below it; the peak grows with noise when the interval of prominence(largest noise) - prominence(smallest) "
        "lies above 0, and does not when below; inconclusive otherwise, with fewer than "
        f"{MIN_SIZES} sizes, or an unreliable bootstrap")


@dataclass
class Peak:
    """The double-descent peak of one mean error curve over sizes (see the module docstring)."""

    sizes: np.ndarray
    errors: np.ndarray
    index: int | None  # the peak's position in sizes; None: no interior rise
    prominence: float
    rising_at_end: bool  # the error rises from the next-to-largest to the largest size

    @property
    def size(self) -> float | None:
        return None if self.index is None else float(self.sizes[self.index])


def peak(sizes: np.ndarray, errors: np.ndarray) -> Peak:
    """The largest interior prominence of `errors` over ascending `sizes` (module docstring)."""
    sizes, errors = np.asarray(sizes, dtype=float), np.asarray(errors, dtype=float)
    best, where = 0.0, None
    for i in range(1, len(errors) - 1):
        rise = errors[i] - max(errors[:i].min(), errors[i + 1:].min())
        if rise > best:
            best, where = float(rise), i
    rising = len(errors) >= 2 and bool(errors[-1] > errors[-2])
    return Peak(sizes, errors, where, best, rising)


def final_curves(data: LawData) -> dict[float, tuple[np.ndarray, np.ndarray, dict[float, np.ndarray]]]:
    """noise -> (sizes, mean error at the last step over runs, size -> that step's per-run errors), at the
    largest training set of the data."""
    data = data.subset(data.x["n"] == data.x["n"].max())
    out = {}
    for z in np.unique(data.x["noise"]):
        at = data.x["noise"] == z
        t_last = data.x["t"][at].max()
        at &= data.x["t"] == t_last
        sizes = np.unique(data.x["p"][at])
        per = {float(p): data.loss[at & (data.x["p"] == p)] for p in sizes}
        out[float(z)] = (sizes, np.array([per[float(p)].mean() for p in sizes]), per)
    return out


def data_exponent(data: LawData) -> float:
    """delta: the training set needed to reach an error goes as p^-delta (larger models need less data
    when delta > 0). Read at the last step of each run at the lowest noise, like the exchange exponent of
    `laws.scale_time` with n for t: for error levels every size reaches, the n at which each size's mean
    error over n falls to the level (log-log interpolation), and minus the slope of log n on log p."""
    from .scale_time import exchange_exponent

    at = data.x["noise"] == data.x["noise"].min()
    keep = np.zeros(data.n, dtype=bool)
    for run in np.unique(data.groups[at]):
        mine = at & (data.groups == run)
        keep |= mine & (data.x["t"] == data.x["t"][mine].max())
    return exchange_exponent(LawData({"p": data.x["p"][keep], "t": data.x["n"][keep]}, data.loss[keep],
                                     data.groups[keep], data.label))


def threshold_pt(fit: FitResult, n: float) -> float:
    """The p·t at the fitted peak, k·n (k alone when the fit folded n)."""
    return fit.params["k"] * (1.0 if "n" in fit.form.folded else n)


def _starts(data: LawData, fit_options: dict) -> dict:
    """fit_options with log k also started at the peaks measured in `data` (unless a grid is given)."""
    return {**fit_options, "grid": fit_options.get("grid") or {"log_k": _peak_starts(data)}}


def _peak_starts(data: LawData) -> list[float]:
    """Start values of log k: the law's grid and the measured peaks' ln(p·t / n) (n = 1 when it is folded).
    A sharp peak's basin is narrower than the grid's spacing; the measured peak lands in it."""
    from .forms import get_law

    fold = len(np.unique(data.x["n"])) < 2
    starts = set(get_law(LAW).grid["log_k"])
    for z, (sizes, errors, _) in final_curves(data).items():
        found = peak(sizes, errors)
        if found.size is not None:
            t_last = data.x["t"][data.x["noise"] == z].max()
            starts.add(round(math.log(found.size * t_last / (1.0 if fold else data.x["n"].max())), 3))
    return sorted(starts)


@dataclass
class DoubleDescentStudy:
    label: str
    sizes: list[float]
    noises: list[float]
    n: float  # training samples (the largest, when several)
    peaks: dict[float, Peak]
    growth: float  # prominence at the largest noise minus at the smallest
    fit: FitResult
    holdout_size: HoldoutResult | None
    holdout_noise: HoldoutResult | None
    intervals: dict[str, tuple[float, float]]  # prominence@<noise>, growth, w, threshold_pt
    verdicts: dict[str, tuple[str, str]]  # "appears@<noise>", "grows" -> (verdict, reason)
    resamples: int
    failed: int
    level: float = 0.95
    samples: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    data: LawData | None = field(default=None, repr=False)  # the points studied (after t_min)
    runs_per_cell: dict[tuple[float, float, float], int] = field(default_factory=dict)  # (p, noise, n) -> runs
    delta: float | None = None  # data_exponent, when the data hold several n

    @property
    def reliable(self) -> bool:
        """At least 20 resamples succeeded and at most MAX_FAILED_FRACTION failed."""
        from .bootstrap import MAX_FAILED_FRACTION

        return self.resamples - self.failed >= MIN_RESAMPLES and self.failed <= MAX_FAILED_FRACTION * self.resamples


def _key(z: float) -> str:
    return f"{z:g}"


def _measures(data: LawData, fit: FitResult | None, start: FitResult | None) -> dict[str, float]:
    curves = final_curves(data)
    noises = sorted(curves)
    values = {f"prominence@{_key(z)}": peak(*curves[z][:2]).prominence for z in noises}
    values["growth"] = values[f"prominence@{_key(noises[-1])}"] - values[f"prominence@{_key(noises[0])}"]
    if fit is None:
        fit = fit_law(LAW, data, grid={k: [v] for k, v in start.theta.items()}, n_polish=0, min_keep=1)
    values["w"] = fit.params["w"]
    values["threshold_pt"] = threshold_pt(fit, float(data.x["n"].max()))
    if len(np.unique(data.x["n"])) >= 2:
        values["delta"] = data_exponent(data)  # nan when no error level is reached by every size
    return values


def study(data: LawData, resamples: int = 100, seed: int = 0, level: float = 0.95, t_min: float | None = None,
          progress=None, **fit_options) -> DoubleDescentStudy:
    """Peaks, their growth with noise, the unified law's fit and held-out errors, bootstrap intervals and
    verdicts for error curves (p, t, n, noise, error) whose `groups` name the run of each point.
    `fit_options` go to every fit from scratch (the full one and the two held-out ones)."""
    missing = [v for v in VARIABLES if v not in data.x]
    if missing:
        raise LawDataError(f"double-descent study needs variables {', '.join(VARIABLES)}; missing {', '.join(missing)}")
    if data.groups is None:
        raise LawDataError("double-descent study: the points need groups naming their runs (curves from a store)")
    if t_min is not None:
        data = data.subset(data.x["t"] >= t_min)
    sizes = np.unique(data.x["p"])
    noises = [float(z) for z in np.unique(data.x["noise"])]
    fit = fit_law(LAW, data, **_starts(data, fit_options))
    point = _measures(data, fit, None)
    # the held-out fits start from the grid and the peaks of the points they see, not from the full fit
    holdout_size = None
    if len(sizes) >= MIN_SIZES:
        seen = data.subset(data.x["p"] < sizes[-1])
        holdout_size = holdout_largest(LAW, data, "p", **_starts(seen, fit_options))
    holdout_noise = None
    if len(noises) >= 3:
        middle = data.x["noise"] == noises[len(noises) // 2]
        marked = LawData(data.x, data.loss, data.groups, data.label, held_out=middle)
        holdout_noise = holdout_marked(LAW, marked, **_starts(data.subset(~middle), fit_options))

    cells: dict[tuple[float, float, float], dict] = {}
    for p in sizes:
        for z in noises:
            for n in np.unique(data.x["n"]):
                at = (data.x["p"] == p) & (data.x["noise"] == z) & (data.x["n"] == n)
                runs = np.unique(data.groups[at])
                if len(runs):
                    cells[(float(p), z, float(n))] = {r: np.flatnonzero(at & (data.groups == r)) for r in runs}
    rng = np.random.default_rng(seed)
    samples: dict[str, list[float]] = {k: [] for k in point}
    failed = 0
    for b in range(resamples):
        rows = [cell[r] for cell in cells.values() for r in rng.choice(list(cell), size=len(cell), replace=True)]
        idx = np.concatenate(rows)
        sample = LawData({k: v[idx] for k, v in data.x.items()}, data.loss[idx], data.groups[idx], data.label)
        try:
            values = _measures(sample, None, fit)
            if not all(math.isfinite(v) for k, v in values.items() if k != "delta"):
                raise ValueError("non-finite")
        except (ValueError, RuntimeError, LawDataError):
            failed += 1
        else:
            for k, v in values.items():
                if math.isfinite(v):  # delta is nan where no error level is common: counted in the verdict
                    samples[k].append(v)
        if progress is not None:
            progress(b + 1, resamples)
    q = ((1 - level) / 2, (1 + level) / 2)
    arrays = {k: np.asarray(v) for k, v in samples.items()}
    intervals = {k: tuple(float(x) for x in np.quantile(a, q)) if len(a) >= 2 else (math.nan, math.nan)
                 for k, a in arrays.items()}
    curves = final_curves(data)
    peaks = {z: peak(*curves[z][:2]) for z in noises}
    result = DoubleDescentStudy(data.label, [float(p) for p in sizes], noises, float(data.x["n"].max()), peaks,
                                point["growth"], fit, holdout_size, holdout_noise, intervals, {}, resamples,
                                failed, level, arrays, data, {k: len(v) for k, v in cells.items()},
                                point.get("delta"))
    result.verdicts = _verdicts(result)
    return result


def _verdicts(s: DoubleDescentStudy) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    guard = None
    if len(s.sizes) < MIN_SIZES:
        guard = f"{len(s.sizes)} sizes; a peak needs at least {MIN_SIZES}"
    elif min(s.runs_per_cell.values()) < 2:
        guard = "a size and noise level with a single run: the run bootstrap has nothing to resample"
    elif not s.reliable:
        guard = (f"unreliable bootstrap ({s.failed} of {s.resamples} resamples failed; at least "
                 f"{MIN_RESAMPLES} must succeed)")
    for z in s.noises:
        key = f"prominence@{_key(z)}"
        lo, hi = s.intervals[key]
        shown = f"prominence {s.peaks[z].prominence:.3f} [{lo:.3f}, {hi:.3f}]"
        if s.peaks[z].rising_at_end:
            shown += "; the error still rises at the largest size, so a peak may lie beyond it"
        if guard:
            out[f"appears@{_key(z)}"] = ("inconclusive", guard)
        elif lo > FLAT:
            out[f"appears@{_key(z)}"] = ("holds", shown)
        elif hi < FLAT:
            out[f"appears@{_key(z)}"] = ("does not hold", shown)
        else:
            out[f"appears@{_key(z)}"] = ("inconclusive", shown)
    if len(s.noises) < 2:
        out["grows"] = ("inconclusive", "one noise level")
    else:
        lo, hi = s.intervals["growth"]
        shown = (f"prominence {s.peaks[s.noises[-1]].prominence:.3f} at noise {s.noises[-1]:g} against "
                 f"{s.peaks[s.noises[0]].prominence:.3f} at {s.noises[0]:g}: difference {s.growth:.3f} [{lo:.3f}, {hi:.3f}]")
        out["grows"] = (("inconclusive", guard) if guard else ("holds", shown) if lo > 0
                        else ("does not hold", shown) if hi < 0 else ("inconclusive", shown))
    if s.delta is not None:
        lo, hi = s.intervals.get("delta", (math.nan, math.nan))
        shown = f"n* ∝ p^-delta: delta = {s.delta:.2f} [{lo:.2f}, {hi:.2f}]"
        common = math.isfinite(s.delta) and len(s.samples.get("delta", ())) >= 0.8 * (s.resamples - s.failed)
        out["less_data"] = (("inconclusive", guard) if guard else
                            ("inconclusive", "no error level is reached by every size (in the data or in over 20% "
                             "of the resamples)") if not common else
                            ("holds", shown) if lo > 0 else ("does not hold", shown) if hi < 0
                            else ("inconclusive", shown))
    return out


def compare_sharpness(a: DoubleDescentStudy, b: DoubleDescentStudy) -> tuple[str, str]:
    """Is `b`'s peak sharper or flatter than `a`'s? By the fitted width w (module docstring)."""
    for s in (a, b):
        pinned = s.fit.at_bound  # w is read off the whole fit: any pinned parameter leaves it untrusted
        if pinned:
            return "inconclusive", f"{s.label}: {', '.join(f'{k} at its {v} bound' for k, v in pinned.items())}"
        if not s.reliable:
            return "inconclusive", f"{s.label}: unreliable bootstrap"
    (alo, ahi), (blo, bhi) = a.intervals["w"], b.intervals["w"]
    shown = (f"w = {b.fit.params['w']:.2f} [{blo:.2f}, {bhi:.2f}] for {b.label} against "
             f"{a.fit.params['w']:.2f} [{alo:.2f}, {ahi:.2f}] for {a.label}")
    if bhi < alo:
        return "sharper", shown
    if blo > ahi:
        return "flatter", shown
    return "no difference shown", shown


def study_dict(st: DoubleDescentStudy, sharpness: "tuple[str, str] | None" = None) -> dict:
    """A DoubleDescentStudy as plain JSON values (what `bitscale double-descent --json` writes and the report
    keeps); `sharpness`: its `compare_sharpness` against the reference precision."""
    def held(h):
        return None if h is None else {"mean_abs_relative_error": h.mean_abs_relative_error,
                                       "max_abs_relative_error": h.max_abs_relative_error}
    return {
        "label": st.label, "sizes": st.sizes, "noises": st.noises, "n": st.n,
        "peaks": {f"{z:g}": {"size": pk.size, "prominence": pk.prominence, "rising_at_end": pk.rising_at_end,
                             "errors": pk.errors.tolist()} for z, pk in st.peaks.items()},
        "growth": st.growth, "law": st.fit.law, "params": st.fit.params, "at_bound": st.fit.at_bound,
        "holdout_largest_size": held(st.holdout_size), "holdout_middle_noise": held(st.holdout_noise),
        "intervals": {k: list(v) for k, v in st.intervals.items()}, "level": st.level,
        "verdicts": {k: list(v) for k, v in st.verdicts.items()}, "resamples": st.resamples, "failed": st.failed,
        "sharpness": None if sharpness is None else list(sharpness), "delta": st.delta,
    }
