"""Answers read off a fitted law, each with a bootstrap percentile interval when samples are given.

Compute-optimal frontier (Hoffmann et al. 2022, arXiv 2203.15556, eq. 4 / App. A). For
L(N, D) = E + A·N^-alpha + B·D^-beta under the budget C = 6·N·D, minimizing over N gives

    N_opt(C) = G·(C/6)^(beta/(alpha+beta)),   D_opt(C) = G^-1·(C/6)^(alpha/(alpha+beta)),
    G = (alpha·A / (beta·B))^(1/(alpha+beta)),

and D_opt/N_opt data points (samples or tokens) per parameter. C = 6·N·D counts each of the D samples
once; with several epochs over D the training FLOPs are larger than this C.

Precision. For the `precision_multiplier` law, L = E + A·(c_Q·N)^-alpha + B·D^-beta: one parameter
stored at precision Q is worth c_Q / c_full full-precision parameters (c is 1 for the fit's reference
label, the first sorted). For the `precision` law (Kumar et al. 2024, arXiv 2411.04330) the effective
fraction of a P-bit parameter is 1 - exp(-P/gamma).

Matching size: the N at which a model with multiplier c reaches a target loss L* at data D,

    E + A·(c·N)^-alpha + B·D^-beta = L*   =>   N = (A / (L* - E - B·D^-beta))^(1/alpha) / c,

infinite (feasible = False) when L* is at or below that model's floor E + B·D^-beta.

Intervals are percentiles of the quantity computed for every bootstrap sample of the parameters (the
central `boot.level` range); samples with a non-finite parameter are left out.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np

from .data import LawData, LawDataError

PRECISION_BITS = (1.0, 1.58, 2.0, 4.0, 8.0, 16.0)
FULL_PRECISION = ("fp32", "fp16", "bf16")  # labels taken as "full precision", first match wins
_CHINCHILLA = ("E", "A", "alpha", "B", "beta")


class Answer(dict):
    """A JSON-able dict (non-finite numbers are None) that prints as one readable line."""

    def __str__(self) -> str:
        parts = []
        for key, value in self.items():
            if key.endswith("_interval") or key in ("rests_on", "unreliable"):
                continue
            text = _fmt(value)
            interval = self.get(f"{key}_interval")
            if interval is not None:
                text += f" [{_fmt(interval[0])}, {_fmt(interval[1])}]"
            parts.append(f"{key} {text}")
        warn = ([f"rests on {', '.join(self['rests_on'])} at a bound"] if self.get("rests_on") else []) + \
            (["bootstrap unreliable"] if self.get("unreliable") else [])
        return ", ".join(parts) + (f"  (not a finding: {'; '.join(warn)})" if warn else "")


def flag(answer: Answer, fit: Any, boot: Any, uses: tuple[str, ...] | None = None) -> Answer:
    """Mark `answer` with the parameters at a bound it rests on (of `uses`, all when None; a name
    matches its per-label forms 'E[q]' too) and whether the bootstrap behind its intervals is
    unreliable; an Answer so marked prints "not a finding"."""
    pinned = getattr(fit, "at_bound", {}) or {}
    hits = sorted(k for k in pinned if uses is None or k.partition("[")[0] in uses or k in uses)
    if hits:
        answer["rests_on"] = hits
    if boot is not None and not getattr(boot, "reliable", True):
        answer["unreliable"] = True
    return answer


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _finite(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _params(fit_or_params: Any) -> dict[str, float]:
    return dict(getattr(fit_or_params, "params", fit_or_params))


def _need(params: Mapping[str, float], names: tuple[str, ...], what: str) -> None:
    missing = [p for p in names if p not in params]
    if missing:
        raise LawDataError(f"{what} needs parameters {', '.join(names)}; missing {', '.join(missing)}")


def _samples(boot: Any, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The bootstrap samples of `names` as (B, 1) columns, rows with a non-finite value dropped."""
    cols = np.column_stack([np.asarray(boot.samples[p], dtype=float) for p in names])
    cols = cols[np.all(np.isfinite(cols), axis=1)]
    return {p: cols[:, [i]] for i, p in enumerate(names)}


def percentile_interval(values: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Central `level` percentile range along axis 0. NaN are ignored; +inf counts as a value (so a
    bound may be inf), read off by the nearest rank since inf cannot be interpolated."""
    values = np.asarray(values, dtype=float)
    tail = 100 * (1 - level) / 2
    method = "nearest" if np.isinf(values).any() else "linear"
    with np.errstate(all="ignore"):
        lo, hi = np.nanpercentile(values, [tail, 100 - tail], axis=0, method=method)
    return lo, hi


def compute_optimal(fit_or_params: Any, C: float | np.ndarray, boot: Any = None) -> dict[str, Any]:
    """N_opt, D_opt, ratio = D_opt/N_opt and the loss at the optimum for budget(s) C = 6·N·D.

    `fit_or_params` is a FitResult or its natural params (E, A, alpha, B, beta). Returns arrays shaped
    like C (floats for a scalar C); with a BootstrapResult also "<name>_interval": (lo, hi) each."""
    params = _params(fit_or_params)
    _need(params, _CHINCHILLA, "compute_optimal")
    scalar = np.ndim(C) == 0
    C = np.atleast_1d(np.asarray(C, dtype=float))
    if np.any(~(C > 0)):
        raise LawDataError("compute_optimal: the compute budget C must be > 0")
    point = _frontier({p: np.array([[params[p]]]) for p in _CHINCHILLA}, C)
    out: dict[str, Any] = {"C": C, **{k: v[0] for k, v in point.items()}}
    if boot is not None:
        for key, values in _frontier(_samples(boot, _CHINCHILLA), C).items():
            out[f"{key}_interval"] = percentile_interval(values, boot.level)
    if scalar:  # back to floats: (1,) arrays, and (lo, hi) pairs of them
        out = {k: tuple(float(b[0]) for b in v) if isinstance(v, tuple) else float(v[0]) for k, v in out.items()}
    return out


def _frontier(p: dict[str, np.ndarray], C: np.ndarray) -> dict[str, np.ndarray]:
    """The frontier for parameter columns (B, 1) and budgets (m,): arrays (B, m)."""
    E, A, alpha, B, beta = (p[k] for k in _CHINCHILLA)
    with np.errstate(all="ignore"):
        G = (alpha * A / (beta * B)) ** (1 / (alpha + beta))
        n_opt = G * (C / 6) ** (beta / (alpha + beta))
        d_opt = (C / 6) ** (alpha / (alpha + beta)) / G
        loss = E + A * n_opt ** -alpha + B * d_opt ** -beta
    return {"N_opt": n_opt, "D_opt": d_opt, "ratio": d_opt / n_opt, "loss": loss}


def full_precision_label(labels: list[str]) -> str:
    """The label taken as full precision: the first of FULL_PRECISION present, else the reference."""
    return next((f for f in FULL_PRECISION if f in labels), labels[0])


def precision_multipliers(fit: Any, boot: Any = None, *, full: str | None = None) -> dict[str, dict[str, Any]]:
    """For a precision_multiplier FitResult: per precision label, how many `full`-precision
    parameters one of its parameters is worth (c_Q / c_full), with an interval from `boot`."""
    labels = list(next(iter(fit.categories.values()), []))
    if not labels:
        raise LawDataError(f"precision multipliers need a precision_multiplier fit (got '{fit.law}')")
    full = full_precision_label(labels) if full is None else full
    if full not in labels:
        raise LawDataError(f"full-precision label {full!r} is not one of the fitted labels {', '.join(labels)}")

    def c(params: Mapping[str, Any], label: str) -> Any:
        return 1.0 if label == labels[0] else params[f"c[{label}]"]

    out = {}
    samples = _samples(boot, tuple(f"c[{q}]" for q in labels[1:])) if boot is not None else None
    for q in labels:
        out[q] = {"worth": c(fit.params, q) / c(fit.params, full)}
        if samples is not None:
            ratio = np.ravel(c(samples, q) / np.asarray(c(samples, full)))
            out[q]["interval"] = tuple(float(v) for v in percentile_interval(ratio, boot.level))
    return out


def effective_fraction(fit_or_params: Any, P: Any = PRECISION_BITS, boot: Any = None) -> dict[float, dict[str, Any]]:
    """For a precision (Kumar) fit: the effective fraction 1 - exp(-P/gamma) of a P-bit parameter."""
    gamma = _params(fit_or_params).get("gamma")
    if gamma is None:
        raise LawDataError("effective_fraction needs a 'precision' or 'precision_size' law fit (parameter gamma)")
    out = {}
    for bits in np.atleast_1d(np.asarray(P, dtype=float)):
        out[float(bits)] = {"fraction": float(-np.expm1(-bits / gamma))}
        if boot is not None:
            g = _samples(boot, ("gamma",))["gamma"].ravel()
            out[float(bits)]["interval"] = tuple(float(v) for v in percentile_interval(-np.expm1(-bits / g), boot.level))
    return out


def _multiplier(law: str, params: Mapping[str, Any], category: str | None, P: float | None) -> Any:
    if law == "precision_multiplier":
        if category is None:
            return 1.0
        if f"c[{category}]" not in params:
            raise LawDataError(f"no multiplier c[{category}] in the fit; the reference label has c = 1 "
                               f"(pass category=None for it)")
        return params[f"c[{category}]"]
    if law == "precision":
        if P is None:
            raise LawDataError("matching_size with the 'precision' law needs P (bits per weight)")
        return -np.expm1(-P / np.asarray(params["gamma"]))
    if law == "chinchilla":
        return 1.0
    raise LawDataError(f"matching_size supports chinchilla, precision and precision_multiplier, not '{law}'")


def matching_size(fit_or_params: Any, law: Any, target_loss: float | Callable[[dict], float], D: float, *,
                  category: str | None = None, P: float | None = None, boot: Any = None) -> dict[str, Any]:
    """N at which a model (precision label `category`, or P bits for the Kumar law) reaches
    `target_loss` at data D; see the module docstring. `target_loss` may be a function of the params
    (e.g. a full-precision model's predicted loss) so that bootstrap samples recompute it too.
    Returns N (inf when infeasible), feasible, floor (E + B·D^-beta) and with `boot` an interval and
    the fraction of samples for which the target is infeasible."""
    params = _params(fit_or_params)
    _need(params, ("E", "A", "alpha"), "matching_size")
    law = getattr(law, "base", getattr(law, "name", law))  # a Law or its name
    target = target_loss if callable(target_loss) else (lambda _p, t=float(target_loss): t)

    def solve(p: Mapping[str, Any]) -> tuple[Any, Any]:
        c = _multiplier(law, p, category, P)
        floor = p["E"] + (p["B"] * D ** -p["beta"] if "B" in p else 0.0)  # no B: D folded into E
        headroom = np.asarray(target(p), dtype=float) - floor
        with np.errstate(all="ignore"):
            n = np.where(headroom > 0, (p["A"] / np.where(headroom > 0, headroom, 1.0)) ** (1 / p["alpha"]) / c, np.inf)
        return n, floor

    n, floor = solve(params)
    out: dict[str, Any] = {"N": float(n), "feasible": bool(np.isfinite(n)), "floor": float(floor),
                           "target_loss": float(target(params))}
    if boot is not None:
        names = tuple(k for k in boot.samples if k in params)
        cols = _samples(boot, names)
        rows = [{k: float(cols[k][i, 0]) for k in names} for i in range(len(cols[names[0]]))]
        ns = np.array([float(solve(r)[0]) for r in rows])
        out["interval"] = tuple(float(v) for v in percentile_interval(ns, boot.level))
        out["infeasible_fraction"] = float(np.mean(~np.isfinite(ns))) if len(ns) else math.nan
    return out


def _answer(**fields: Any) -> Answer:
    """An Answer with non-finite numbers as None and intervals as [lo, hi] lists (JSON-able)."""
    out = Answer()
    for key, value in fields.items():
        if isinstance(value, (tuple, list)):
            out[key] = [_finite(v) for v in value]
        elif isinstance(value, (float, int, np.floating)) and not isinstance(value, bool):
            out[key] = _finite(value)
        else:
            out[key] = value
    return out


def answers(law: str, fit: Any, boot: Any = None, data: LawData | None = None) -> dict[str, Answer]:
    """The derived answers `bitscale fit` reports for a fit of `law` (empty for laws without any):

    chinchilla: the compute-optimal N, D, D/N and loss at 1x, 10x and 100x the largest budget
      6·N·D in the data; precision_multiplier: for each label, what one of its parameters is worth in
      full-precision parameters ("<full>_params_per_param") and the N at which it matches a
      full-precision model of the data's largest N at its median D ("matching_N"); precision and
      precision_size: the effective fraction at PRECISION_BITS."""
    out: dict[str, Answer] = {}
    if law == "chinchilla" and data is not None and {"N", "D"} <= set(data.x):
        c_max = float(np.max(6 * data.x["N"] * data.x["D"]))
        for C in (c_max, 10 * c_max, 100 * c_max):
            r = compute_optimal(fit, C, boot)
            fields = {}
            for key, label in (("N_opt", "N_opt"), ("D_opt", "D_opt"), ("ratio", "D/N"), ("loss", "loss")):
                fields[label] = r[key]
                if boot is not None:
                    fields[f"{label}_interval"] = r[f"{key}_interval"]
            out[f"compute-optimal at C={C:.3g}"] = flag(_answer(**fields), fit, boot, _CHINCHILLA)
    elif law == "precision_multiplier":
        labels = list(next(iter(fit.categories.values()), []))
        full = full_precision_label(labels)
        n_full = float(np.max(data.x["N"])) if data is not None else None
        d_mid = float(np.median(data.x["D"])) if data is not None and "D" in data.x else 1.0
        ref = None if full == labels[0] else full

        def full_loss(p: Mapping[str, Any]) -> Any:
            c = _multiplier(law, p, ref, None)
            data_term = p["B"] * d_mid ** -p["beta"] if "B" in p else 0.0   # no B: D folded into E
            return p["E"] + p["A"] * (c * n_full) ** -p["alpha"] + data_term

        for q, r in precision_multipliers(fit, boot, full=full).items():
            if q == full:
                continue
            worth = f"{full}_params_per_param"
            fields: dict[str, Any] = {worth: r["worth"]}
            if boot is not None:
                fields[f"{worth}_interval"] = r["interval"]
            key = f"{q} vs {full}"
            if n_full is not None:
                m = matching_size(fit, law, full_loss, d_mid, category=None if q == labels[0] else q, boot=boot)
                fields["matching_N"] = m["N"]
                if boot is not None:
                    fields["matching_N_interval"] = m["interval"]
                key += f" (matching_N: the {q} size whose loss equals {full} at N={n_full:.3g}, D={d_mid:.3g})"
            out[key] = flag(_answer(**fields), fit, boot)
    elif law in ("precision", "precision_size", "precision_ptq") and "gamma" in _params(fit):
        for bits, r in effective_fraction(fit, boot=boot).items():
            fields = {"fraction": r["fraction"]}
            if boot is not None:
                fields["fraction_interval"] = r["interval"]
            out[f"effective fraction 1-exp(-P/gamma) at P={bits:g}"] = flag(_answer(**fields), fit, boot, ("gamma",))
    return out
