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
"""

from __future__ import annotations

from dataclasses import dataclass

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


def collapse(data: LawData, **fit_options) -> Collapse:
    """Joint scale-time fit against one power law in t per model size (see the module docstring)."""
    sizes = _sizes(data)
    joint = fit_law("scale_time", data, **fit_options)
    per_size, residuals = {}, []
    for p in sizes:
        mask = data.x["p"] == p
        subset = data.subset(mask)
        own = LawData(x={"t": subset.x["t"]}, loss=subset.loss, groups=subset.groups, label=f"p={p:g}")
        per_size[float(p)] = fit_law("power_t", own, **fit_options)
        residuals.append(per_size[float(p)].residuals)
    rms_joint = _rms(joint.residuals)
    rms_sep = _rms(np.concatenate(residuals))
    ratio = rms_joint / rms_sep if rms_sep > 0 else float("inf") if rms_joint > 0 else 1.0
    return Collapse(joint, per_size, rms_joint, rms_sep, ratio, collapse_spread(data))


def predict_from_small(data: LawData, **fit_options) -> SmallToLarge:
    """Fit the scale-time law on all sizes but the largest and predict the largest size's curve."""
    sizes = _sizes(data)
    largest = sizes[-1]
    held = data.x["p"] == largest
    fit = fit_law("scale_time", data.subset(~held), **fit_options)
    x = {name: values[held] for name, values in data.x.items()}
    predicted = fit.predict(x)
    actual = data.loss[held]
    errors = (predicted - actual) / actual
    return SmallToLarge(fit, float(largest), x["t"], predicted, actual, errors, float(np.mean(np.abs(errors))))
