"""Scale-time equivalence (Boopathy & Fiete 2024, "Unified Neural Network Scaling Laws and Scale-time
Equivalence", arXiv 2409.05782): training a network of p parameters for t steps does about as well as
training one of k·p parameters for t/k steps, so loss is, to first order, a function of p·t alone:

    L(p, t) = E + A · (p·t)^(-alpha)                               (the `scale_time` law in forms.py)

Three measurements make the claim checkable on any set of training curves (points = (p, t, loss), one
curve per model size p):

- `collapse_spread`: put every curve on the axis log(p·t); on the range where at least two sizes overlap,
  interpolate each curve's log L at common points and take the standard deviation of log L across sizes.
  Its mean over the overlap is ~0 when the curves collapse onto one, and grows when size and time are not
  interchangeable. Assumption-free: no law is fitted.
- `collapse`: fit the scale-time law to all curves jointly, and a curve of its own to each size
  (L = E_k + A_k · t^(-alpha_k)); the ratio of the joint fit's RMS log-residual to the per-size fits' is
  ~1 when one curve of p·t explains the data as well as separate curves do, and >> 1 when it does not.
- `predict_from_small`: fit the law on the smaller models only (trained longer) and predict the largest
  model's losses along its curve; report the relative errors. This is the paper's practical promise:
  small models trained longer predict large models.

- `exchange_exponent`: the paper's own test (its Fig. 1: the training time to reach a loss against model
  size, beside a 1:1 line). For loss levels every size reaches, t*(L; p) is the first step at which the
  mean curve of size p falls to L (interpolated in log-log); gamma is minus the slope of log t* on log p,
  levels pooled with an intercept each. Scale-time equivalence (t ∝ 1/p at equal loss) is gamma = 1;
  gamma = 0 is a size that buys no time at all.

`study` puts them together on a real sweep, one curve per run (groups = run ids; several seeds per
size), with bootstrap intervals: each resample draws, for every size, as many runs as it has, with
replacement (a stratified run bootstrap), and recomputes every measure (each refit starts from the
full-data optimum). Its verdict follows a stated rule (`RULE`), on 95% percentile intervals:

    holds           gamma within [1/GAMMA_BAND, GAMMA_BAND]  and  ratio upper bound <= RATIO_LIMIT
    does not hold   ratio lower bound > RATIO_LIMIT, or gamma's interval wholly outside the band
    inconclusive    otherwise; also (checked first) with fewer than 3 sizes, a joint fit with a parameter
                    at its bound or an unreliable bootstrap (over 20% of the resamples failed, or fewer
                    than 20 distinct resamples), and, when the ratio does not settle it, with no loss
                    level every size reaches (in the data or in over 20% of the resamples)

GAMMA_BAND = 1.5: a 10x larger model reaches a loss in 1/32 to 1/4.6 of the time rather than 1/10.
RATIO_LIMIT = 2: one curve of p·t leaves residuals at most twice those of a separate curve per size.
The prediction error of the largest size is reported beside them; it is not in the rule, as its size
depends on how far the loss falls over the sweep.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .data import LawData, LawDataError
from .fit import FitResult, fit_law


@dataclass
class Collapse:
    joint: FitResult  # scale_time law on all curves
    per_size: dict[float, FitResult]  # L = E + A t^-alpha per model size p
    rms_joint: float  # RMS of the joint fit's log residuals
    rms_per_size: float  # RMS of the per-size fits' log residuals, pooled
    ratio: float  # rms_joint / rms_per_size: ~1 collapses, >> 1 does not
    spread: float  # collapse_spread(data)


@dataclass
class SmallToLarge:
    fit: FitResult  # scale_time law fitted on sizes below the largest
    size: float  # the held-out (largest) p
    t: np.ndarray  # its steps
    predicted: np.ndarray
    actual: np.ndarray
    relative_errors: np.ndarray  # (predicted - actual) / actual
    mean_abs_relative_error: float


def _sizes(data: LawData) -> np.ndarray:
    for name in ("p", "t"):
        if name not in data.x:
            raise LawDataError(f"scale-time analysis needs variables p and t; missing {name!r}")
    sizes = np.unique(data.x["p"])
    if len(sizes) < 2:
        raise LawDataError(f"scale-time analysis needs curves of at least 2 model sizes, got {len(sizes)}")
    return sizes


def _rms(residuals: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(residuals))))


def collapse_spread(data: LawData, points: int = 50) -> float:
    """Mean over the overlap of the std across sizes of log L at equal log(p·t); nan if no two curves
    overlap."""
    sizes = _sizes(data)
    curves = []
    for p in sizes:
        mask = data.x["p"] == p
        u = np.log(p * data.x["t"][mask])
        order = np.argsort(u)
        curves.append((u[order], np.log(data.loss[mask][order])))
    lo = min(c[0][0] for c in curves)
    hi = max(c[0][-1] for c in curves)
    grid = np.linspace(lo, hi, points)
    stds = []
    for u in grid:
        values = [np.interp(u, cu, cl) for cu, cl in curves if cu[0] <= u <= cu[-1]]
        if len(values) >= 2:
            stds.append(np.std(values))
    return float(np.mean(stds)) if stds else float("nan")


def collapse(data: LawData, start: "Collapse | None" = None, **fit_options) -> Collapse:
    """Joint scale-time fit against one power law in t per model size (see the module docstring).
    `start`: a previous Collapse whose optima each fit restarts from alone (`_warm`), as the bootstrap does."""
    sizes = _sizes(data)
    joint = fit_law("scale_time", data, **(_warm(start.joint) if start else fit_options))
    per_size, residuals = {}, []
    for p in sizes:
        mask = data.x["p"] == p
        own = LawData(x={"t": data.x["t"][mask]}, loss=data.loss[mask], label=f"p={p:g}")
        per_size[float(p)] = fit_law("power_t", own, **(_warm(start.per_size[float(p)]) if start else fit_options))
        residuals.append(per_size[float(p)].residuals)
    rms_joint = _rms(joint.residuals)
    rms_sep = _rms(np.concatenate(residuals))
    ratio = rms_joint / rms_sep if rms_sep > 0 else float("inf") if rms_joint > 0 else 1.0
    return Collapse(joint, per_size, rms_joint, rms_sep, ratio, collapse_spread(data))


def predict_from_small(data: LawData, start: "SmallToLarge | None" = None, **fit_options) -> SmallToLarge:
    """Fit the scale-time law on all sizes but the largest and predict the largest size's curve (from
    `start`'s optimum alone when given)."""
    sizes = _sizes(data)
    largest = sizes[-1]
    held = data.x["p"] == largest
    fit = fit_law("scale_time", data.subset(~held), **(_warm(start.fit) if start else fit_options))
    x = {name: values[held] for name, values in data.x.items()}
    predicted = fit.predict(x)
    actual = data.loss[held]
    errors = (predicted - actual) / actual
    return SmallToLarge(fit, float(largest), x["t"], predicted, actual, errors, float(np.mean(np.abs(errors))))


def _warm(fit: FitResult) -> dict:
    """fit_law options that refit from `fit`'s optimum alone (one start, no scipy polish: the batched
    L-BFGS from a nearby optimum converges)."""
    return {"grid": {name: [value] for name, value in fit.theta.items()}, "n_polish": 0, "min_keep": 1}

RATIO_LIMIT = 2.0
GAMMA_BAND = 1.5
RULE = (f"holds if the 95% intervals put the exchange exponent gamma within [{1 / GAMMA_BAND:.2f}, {GAMMA_BAND:g}] "
        f"(scale-time: gamma = 1) and the collapse ratio at most {RATIO_LIMIT:g}; does not hold if gamma's interval "
        "lies wholly outside that band or the ratio's wholly above its limit; inconclusive otherwise, or with an "
        "unreliable bootstrap, fewer than 3 sizes, no loss level every size reaches, or a fit at a bound")


def mean_curves(data: LawData) -> dict[float, tuple[np.ndarray, np.ndarray]]:
    """p -> (steps, mean loss over the runs at each step), steps ascending."""
    curves = {}
    for p in _sizes(data):
        mask = data.x["p"] == p
        t = np.unique(data.x["t"][mask])
        curves[float(p)] = (t, np.array([data.loss[mask & (data.x["t"] == s)].mean() for s in t]))
    return curves


def exchange_exponent(data: LawData, levels: int = 8) -> float:
    """gamma of the module docstring (nan when no loss level lies below every size's first evaluation
    and above every size's lowest loss)."""
    curves = mean_curves(data)
    lo = max(loss.min() for _, loss in curves.values())
    hi = min(loss[0] for _, loss in curves.values())
    if not lo < hi:
        return float("nan")
    xs, ys, ids = [], [], []
    for j, level in enumerate(np.geomspace(lo, hi, levels + 2)[1:-1]):
        for p, (t, loss) in curves.items():
            i = int(np.argmax(loss <= level))  # the first evaluation at or below the level (i >= 1)
            w = np.log(loss[i - 1] / level) / np.log(loss[i - 1] / loss[i]) if loss[i - 1] != loss[i] else 1.0
            xs.append(np.log(p))
            ys.append((1 - w) * np.log(t[i - 1]) + w * np.log(t[i]))
            ids.append(j)
    xs, ys, ids = np.asarray(xs), np.asarray(ys), np.asarray(ids)
    for j in np.unique(ids):  # an intercept per level: demean within each
        xs[ids == j] -= xs[ids == j].mean()
        ys[ids == j] -= ys[ids == j].mean()
    denominator = float(np.sum(xs * xs))
    return -float(np.sum(xs * ys)) / denominator if denominator > 0 else float("nan")
MIN_SIZES = 3


@dataclass
class ScaleTimeStudy:
    """The scale-time measurements of one set of curves with bootstrap intervals and a verdict (see the
    module docstring for the rule)."""

    label: str
    sizes: list[float]
    runs_per_size: dict[float, int]
    collapse: Collapse
    prediction: SmallToLarge | None  # None with fewer than MIN_SIZES sizes
    gamma: float  # exchange_exponent: 1 under scale-time equivalence
    intervals: dict[str, tuple[float, float]]  # ratio, spread, gamma, prediction_error -> (lo, hi)
    resamples: int
    failed: int
    verdict: str  # holds | does not hold | inconclusive
    reason: str
    level: float = 0.95
    samples: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    data: LawData | None = field(default=None, repr=False)  # the points studied (after t_min)

    @property
    def reliable(self) -> bool:
        from .bootstrap import MAX_FAILED_FRACTION, MIN_DISTINCT

        return (self.resamples - self.failed >= 2 and self.failed <= MAX_FAILED_FRACTION * self.resamples
                and _distinct_resamples(self.runs_per_size) >= MIN_DISTINCT)


def _distinct_resamples(runs_per_size: dict[float, int]) -> int:
    """Distinct stratified resamples: the product over sizes of C(2u - 1, u) for u runs."""
    import math

    total = 1
    for u in runs_per_size.values():
        total *= math.comb(2 * u - 1, u)
    return total


def study(data: LawData, resamples: int = 200, seed: int = 0, level: float = 0.95,
          t_min: float | None = None, progress=None) -> ScaleTimeStudy:
    """Scale-time collapse, small-to-large prediction, bootstrap intervals and the verdict for curves
    (p, t, loss) whose `groups` name the run of each point (see the module docstring).

    `t_min`: points at earlier steps are left out (the first steps are a transient no power law of
    p·t describes). `progress(done, total)` is called after each resample."""
    if t_min is not None:
        data = data.subset(data.x["t"] >= t_min)
    sizes = _sizes(data)
    if data.groups is None:
        raise LawDataError("scale-time study: the points need groups naming their runs (curves from a store)")
    runs = {float(p): np.unique(data.groups[data.x["p"] == p]) for p in sizes}
    predict = len(sizes) >= MIN_SIZES
    point = collapse(data)
    prediction = predict_from_small(data) if predict else None
    rng = np.random.default_rng(seed)
    names = ("ratio", "spread", "gamma") + (("prediction_error",) if predict else ())
    samples: dict[str, list[float]] = {n: [] for n in names}
    failed = 0
    index = {float(p): {g: np.flatnonzero((data.x["p"] == p) & (data.groups == g)) for g in runs[float(p)]}
             for p in sizes}
    for b in range(resamples):
        rows = [index[p][g] for p in index for g in rng.choice(runs[p], size=len(runs[p]), replace=True)]
        sample = _take(data, np.concatenate(rows))
        try:
            c = collapse(sample, start=point)
            values = {"ratio": c.ratio, "spread": c.spread, "gamma": exchange_exponent(sample)}
            if predict:
                values["prediction_error"] = predict_from_small(sample, start=prediction).mean_abs_relative_error
            if not all(np.isfinite(v) for k, v in values.items() if k != "gamma"):
                raise ValueError("non-finite")  # gamma is nan where no level is common: kept out below
        except (ValueError, RuntimeError):
            failed += 1
        else:
            for n, v in values.items():
                if np.isfinite(v):
                    samples[n].append(v)
        if progress is not None:
            progress(b + 1, resamples)
    q = ((1 - level) / 2, (1 + level) / 2)
    arrays = {n: np.asarray(v) for n, v in samples.items()}
    intervals = {n: tuple(float(x) for x in np.quantile(a, q)) if len(a) >= 2 else (float("nan"), float("nan"))
                 for n, a in arrays.items()}
    result = ScaleTimeStudy(data.label, [float(p) for p in sizes], {p: len(r) for p, r in runs.items()}, point,
                            prediction, exchange_exponent(data), intervals, resamples, failed, "", "", level, arrays,
                            data)
    result.verdict, result.reason = _verdict(result)
    return result


def _take(data: LawData, rows: np.ndarray) -> LawData:
    """The points `rows` (repeats allowed) of `data`."""
    return LawData(x={k: v[rows] for k, v in data.x.items()}, loss=data.loss[rows], groups=data.groups[rows],
                   label=data.label)


def _verdict(s: ScaleTimeStudy) -> tuple[str, str]:
    if s.prediction is None:
        return "inconclusive", f"{len(s.sizes)} sizes; the small-to-large prediction needs at least {MIN_SIZES}"
    if s.collapse.joint.at_bound:
        pinned = ", ".join(f"{k} at its {v} bound" for k, v in s.collapse.joint.at_bound.items())
        return "inconclusive", f"the joint scale-time fit has {pinned}"
    if not s.reliable:
        return "inconclusive", (f"unreliable bootstrap ({s.failed} of {s.resamples} resamples failed, "
                                f"{_distinct_resamples(s.runs_per_size)} distinct resamples possible)")
    r_lo, r_hi = s.intervals["ratio"]
    if r_lo > RATIO_LIMIT:
        return "does not hold", f"ratio in [{r_lo:.2f}, {r_hi:.2f}]"
    if not np.isfinite(s.gamma) or len(s.samples.get("gamma", ())) < 0.8 * (s.resamples - s.failed):
        return "inconclusive", (f"ratio in [{r_lo:.2f}, {r_hi:.2f}]; no loss level is reached by every size "
                                "(in the data or in over 20% of the resamples), so no time-to-loss can be compared")
    g_lo, g_hi = s.intervals["gamma"]
    shown = f"gamma in [{g_lo:.2f}, {g_hi:.2f}], ratio in [{r_lo:.2f}, {r_hi:.2f}]"
    if 1 / GAMMA_BAND <= g_lo and g_hi <= GAMMA_BAND and r_hi <= RATIO_LIMIT:
        return "holds", shown
    if g_hi < 1 / GAMMA_BAND or g_lo > GAMMA_BAND:
        return "does not hold", shown
    return "inconclusive", shown + " (an interval straddles its limit)"


def study_dict(st: ScaleTimeStudy) -> dict:
    """A ScaleTimeStudy as plain JSON values (what `bitscale scale-time --json` writes and the report keeps)."""
    pr = st.prediction
    return {
        "label": st.label, "verdict": st.verdict, "reason": st.reason, "sizes": st.sizes,
        "runs_per_size": {f"{p:g}": n for p, n in st.runs_per_size.items()},
        "ratio": st.collapse.ratio, "spread": st.collapse.spread, "gamma": st.gamma,
        "prediction_error": None if pr is None else pr.mean_abs_relative_error,
        "intervals": {k: list(v) for k, v in st.intervals.items()}, "level": st.level,
        "alpha": st.collapse.joint.params.get("alpha"), "resamples": st.resamples, "failed": st.failed,
    }
