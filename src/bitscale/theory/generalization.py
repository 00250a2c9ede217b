"""The 1-bit generalization difference |f_1bit(x) - f_fp(x)| and how it decays with width.

Daliri, Song & Yang 2024 (arXiv 2411.01663) bound the gap between a trained 1-bit TwoLayerNet and its
full-precision counterpart on unseen inputs. `generalization_difference` measures it: a 1-bit net and
its fp32 twin start from the SAME initialization (`TwoLayerNet(...).twin("fp32")` before training), are
trained on the same data with the same config, and are compared on the held-out test inputs.

Why a relative measure. f = kappa / sqrt(m) * sum_r a_r sigma(<Q(w_r), x>) is linear in kappa at
initialization, and with a fixed learning rate the function-space step is O(eta kappa^2), so for small
kappa the trained outputs, and with them |f_1bit - f_fp|, are ~ kappa times their kappa = 1 values. A
bound that shrinks with kappa can thus be met trivially by shrinking the outputs. We therefore also
report the difference relative to `output_scale` = RMS of the trained fp32 twin on the test inputs,
sqrt(mean f_fp(x*)^2), which carries the same factor of kappa (the target std would not: targets are
standardized to std ~1 whatever kappa is). `kappa_sweep` shows the effect: the absolute difference
falls ~linearly with kappa while the relative one stays put.

`decay_exponent` fits measure ~= C * width^(-gamma) by least squares in log-log (a pure power law, no
floor: numpy's polyfit on (log width, log measure), not `bitscale.laws`) and gives a bootstrap
percentile interval for gamma.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import torch

from bitscale.models import TwoLayerNet
from bitscale.train.config import TrainConfig
from bitscale.train.loop import train

MEASURES = ("mean_abs", "max_abs", "mean_rel", "max_rel")


@dataclass
class GenDiffPoint:
    """One (width, seed, kappa) comparison on the test inputs x*.

    mean_abs / max_abs: mean and max over x* of |f_1bit(x*) - f_fp(x*)|.
    output_scale: RMS of the trained fp32 twin on x*, sqrt(mean f_fp(x*)^2).
    mean_rel / max_rel: mean_abs / output_scale and max_abs / output_scale.
    fp_test_loss / bit_test_loss: final test MSE of each network (nan if its run diverged).
    """

    width: int
    seed: int
    kappa: float
    mean_abs: float
    max_abs: float
    output_scale: float
    mean_rel: float
    max_rel: float
    fp_test_loss: float
    bit_test_loss: float
    quant: str = "paper-1bit"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def generalization_difference(
    task: Any,
    width: int,
    *,
    seed: int,
    kappa: float = 1.0,
    train_cfg: TrainConfig,
    quant: str = "paper-1bit",
    activation: str = "relu",
) -> GenDiffPoint:
    """Train a `quant` TwoLayerNet(task.d, width, kappa, seed=seed) and its fp32 twin (same initial
    parameters) with `train_cfg` on `task`, and compare them on task.x_test."""
    bit = TwoLayerNet(task.d, width, kappa, quant, activation, seed=seed)
    fp = bit.twin("fp32")
    res_bit = train(bit, task, train_cfg)
    res_fp = train(fp, task, train_cfg)
    nan = math.nan
    if res_bit.status != "done" or res_fp.status != "done":
        return GenDiffPoint(width, seed, kappa, nan, nan, nan, nan, nan,
                            res_fp.final_test_loss, res_bit.final_test_loss, quant)
    with torch.no_grad():
        f_bit = bit(task.x_test).reshape(-1).double()
        f_fp = fp(task.x_test).reshape(-1).double()
    diff = (f_bit - f_fp).abs()
    mean_abs, max_abs = diff.mean().item(), diff.max().item()
    scale = f_fp.square().mean().sqrt().item()
    rel = (lambda v: v / scale) if scale > 0 else (lambda v: nan)
    return GenDiffPoint(width, seed, float(kappa), mean_abs, max_abs, scale, rel(mean_abs), rel(max_abs),
                        res_fp.final_test_loss, res_bit.final_test_loss, quant)


def width_sweep(
    task: Any, widths: Sequence[int], seeds: Sequence[int], *, kappa: float = 1.0, train_cfg: TrainConfig,
    quant: str = "paper-1bit",
) -> list[GenDiffPoint]:
    """`generalization_difference` for every (width, seed)."""
    return [generalization_difference(task, w, seed=s, kappa=kappa, train_cfg=train_cfg, quant=quant)
            for w in widths for s in seeds]


def kappa_sweep(
    task: Any, width: int, kappas: Sequence[float], *, seeds: Sequence[int] = (0,), train_cfg: TrainConfig,
    quant: str = "paper-1bit",
) -> list[GenDiffPoint]:
    """`generalization_difference` for every (kappa, seed) at one width: shows that the absolute
    difference shrinks with kappa (the outputs do) while the relative one does not."""
    return [generalization_difference(task, width, seed=s, kappa=k, train_cfg=train_cfg, quant=quant)
            for k in kappas for s in seeds]


def _fit_loglog(logw: np.ndarray, logv: np.ndarray) -> tuple[float, float]:
    """Least squares log v = log C - gamma log w; returns (gamma, C)."""
    slope, intercept = np.polyfit(logw, logv, 1)
    return float(-slope), float(np.exp(intercept))


def decay_exponent(
    points: Sequence[GenDiffPoint],
    measure: str = "mean_rel",
    n_boot: int = 1000,
    seed: int = 0,
    *,
    level: float = 0.95,
    resample: str = "within_width",
) -> dict[str, Any]:
    """Fit `measure` ~= C * width^(-gamma) over `points` (least squares on log measure vs log width)
    and a bootstrap percentile interval for gamma.

    resample="within_width" (default) redraws, for every width, that width's points (its seeds) with
    replacement, keeping the set of widths fixed; resample="points" redraws all points with
    replacement (replicates with fewer than two distinct widths are skipped). Points whose measure is
    not finite and positive are dropped (counted in "n_dropped").

    Returns {"gamma", "C", "ci": (lo, hi), "level", "boot_std", "n_boot" (replicates used), "n_points",
    "n_dropped", "widths", "measure", "resample", "method"}.
    """
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {', '.join(MEASURES)}, got {measure!r}")
    if resample not in ("within_width", "points"):
        raise ValueError(f"resample must be 'within_width' or 'points', got {resample!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    vals = [(p.width, getattr(p, measure)) for p in points]
    kept = [(w, v) for w, v in vals if w > 0 and math.isfinite(v) and v > 0]
    widths = sorted({w for w, _ in kept})
    if len(widths) < 2:
        raise ValueError(f"need finite positive {measure} at two or more widths, got widths {widths}")
    logw = np.log(np.array([w for w, _ in kept], dtype=float))
    logv = np.log(np.array([v for _, v in kept], dtype=float))
    gamma, c = _fit_loglog(logw, logv)

    rng = np.random.default_rng(seed)
    groups: dict[int, list[int]] = defaultdict(list)
    for i, (w, _) in enumerate(kept):
        groups[w].append(i)
    boots = []
    for _ in range(n_boot):
        if resample == "within_width":
            idx = np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups.values()])
        else:
            idx = rng.integers(0, len(kept), size=len(kept))
            if len(np.unique(logw[idx])) < 2:
                continue
        boots.append(_fit_loglog(logw[idx], logv[idx])[0])
    boots_arr = np.array(boots)
    alpha = (1 - level) / 2
    if len(boots_arr):
        ci = (float(np.quantile(boots_arr, alpha)), float(np.quantile(boots_arr, 1 - alpha)))
        boot_std = float(boots_arr.std(ddof=1)) if len(boots_arr) > 1 else 0.0
    else:
        ci, boot_std = (math.nan, math.nan), math.nan
    return {
        "gamma": gamma,
        "C": c,
        "ci": ci,
        "level": level,
        "boot_std": boot_std,
        "n_boot": len(boots_arr),
        "n_points": len(kept),
        "n_dropped": len(vals) - len(kept),
        "widths": widths,
        "measure": measure,
        "resample": resample,
        "method": "least squares on (log width, log measure), bootstrap percentile interval",
    }
