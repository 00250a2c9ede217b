"""The theory study behind `bitscale theory CONFIG.toml`: the paper's claims, measured over widths.

For every target, width and seed it builds a 1-bit TwoLayerNet and its fp32 twin from one
initialization, trains both with full-batch gradient descent, and records
- the kernel diagnostics of each (`diagnostics.kernel_trace`): lambda_min of the training Gram matrix,
  relative kernel movement, distance from the linearized (kernel-regression) model, and the training
  loss beside the loss the linearized model predicts;
- the generalization difference between the two (`generalization.generalization_difference`);
and, at `ntk_widths`, the empirical NTK at initialization against the analytic infinite-width kernel.
A kappa sweep at one width shows why the difference must be measured relative to the output scale.

Outputs in the study directory: kernel.csv, gendiff.csv, kappa.csv, ntk.csv, summary.json (fitted
decay exponents with bootstrap intervals) and plots (PNG).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import numpy as np
import torch
from pydantic import BaseModel, Field

from ..limits import MAX_SAMPLES, MAX_SEED, MAX_STEPS, MAX_WIDTH, STRICT

from ..atomic import atomic_write
from ..train import TaskSpec, TrainConfig, build_task


class Target(BaseModel):
    model_config = STRICT

    function: str = "teacher"
    d: int = Field(128, ge=1, le=MAX_WIDTH)


class TheoryConfig(BaseModel):
    """What `bitscale theory` runs (all fields optional in the TOML file)."""

    model_config = STRICT

    widths: list[Annotated[int, Field(ge=1, le=MAX_WIDTH)]] = Field(default_factory=lambda: [64, 256, 1024, 4096, 16384], min_length=2)
    seeds: list[Annotated[int, Field(ge=-MAX_SEED, le=MAX_SEED)]] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    targets: list[Target] = Field(
        default_factory=lambda: [Target(function="sines", d=16), Target(function="teacher", d=128)], min_length=1
    )
    quant: str = "paper-1bit"
    n_train: int = Field(128, ge=2, le=MAX_SAMPLES)
    n_test: int = Field(512, ge=1, le=MAX_SAMPLES)
    steps: int = Field(400, ge=1, le=MAX_STEPS)
    lr: float = Field(1.0, gt=0)
    every: int = Field(100, ge=1, le=MAX_STEPS, description="kernel diagnostics every this many steps")
    kappa: float = Field(1.0, gt=0)
    kappas: list[Annotated[float, Field(gt=0)]] = Field(default_factory=lambda: [0.01, 0.1, 1.0, 10.0])
    kappa_width: int = Field(1024, ge=1, le=MAX_WIDTH)
    ntk_widths: list[Annotated[int, Field(ge=1, le=MAX_WIDTH)]] = Field(default_factory=lambda: [256, 4096, 16384])
    ntk_points: int = Field(64, ge=2, le=MAX_SAMPLES)


def _task(cfg: TheoryConfig, target: Target, seed: int = 0):
    spec = TaskSpec(function=target.function, d=target.d, n_train=cfg.n_train, n_test=cfg.n_test,
                    input_dist="sphere", seed=seed)
    return build_task(spec)


def _train_cfg(cfg: TheoryConfig, seed: int) -> TrainConfig:
    return TrainConfig(lr=cfg.lr, steps=cfg.steps, seed=seed, eval_every=cfg.every)


def _row(obj: Any, **extra: Any) -> dict[str, Any]:
    data = asdict(obj) if is_dataclass(obj) else dict(obj)
    return {**extra, **{k: v for k, v in data.items() if not isinstance(v, (list, dict))}}


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    columns = list(rows[0])

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, columns)
            w.writeheader()
            w.writerows(rows)

    atomic_write(path, write)


def run_study(cfg: TheoryConfig, out: Path, on_step: Optional[Callable[[str], None]] = None) -> dict[str, Any]:
    """Run every measurement of `cfg`, write the tables and plots under `out`, return the summary."""
    from ..models import TwoLayerNet
    from .analytic import analytic_ntk
    from .diagnostics import kernel_trace
    from .generalization import decay_exponent, generalization_difference
    from .ntk import empirical_ntk

    out.mkdir(parents=True, exist_ok=True)
    step = on_step or (lambda message: None)
    kernel_rows, gen_rows, kappa_rows, ntk_rows, traces = [], [], [], [], {}
    summary: dict[str, Any] = {"config": cfg.model_dump(), "targets": {}}
    for target in cfg.targets:
        name = f"{target.function}-d{target.d}"
        task = _task(cfg, target)
        points = []
        for width in cfg.widths:
            for seed in cfg.seeds:
                train_cfg = _train_cfg(cfg, seed)
                for precision in (cfg.quant, "fp32"):
                    model = TwoLayerNet(target.d, width, cfg.kappa, precision, seed=seed)
                    trace = kernel_trace(model, task, train_cfg, every=cfg.every)
                    traces[(name, width, seed, precision)] = trace
                    kernel_rows.append({
                        "target": name, "width": width, "seed": seed, "precision": precision,
                        "lambda_min_0": trace.lambda_min[0], "lambda_min_end": trace.lambda_min[-1],
                        "movement_end": trace.movement[-1], "linearized_distance_end": trace.linearized_distance[-1],
                        "train_loss_end": trace.train_loss[-1], "predicted_loss_end": trace.predicted_loss[-1],
                    })
                point = generalization_difference(task, width, seed=seed, kappa=cfg.kappa, train_cfg=train_cfg,
                                                  quant=cfg.quant)
                points.append(point)
                gen_rows.append(_row(point, target=name))
                step(f"{name} m={width} seed={seed}")
        for kappa in cfg.kappas:
            for seed in cfg.seeds:
                point = generalization_difference(task, cfg.kappa_width, seed=seed, kappa=kappa,
                                                  train_cfg=_train_cfg(cfg, seed), quant=cfg.quant)
                kappa_rows.append(_row(point, target=name))
        x = task.x_train[: cfg.ntk_points].double()
        for width in cfg.ntk_widths:
            for precision in ("fp32", cfg.quant):
                model = TwoLayerNet(target.d, width, cfg.kappa, precision, seed=0).double()
                emp = empirical_ntk(model, x)
                quantized = precision != "fp32"  # the sign network's limit under its own STE
                ana = analytic_ntk(x, kappa=cfg.kappa, quant="sign" if quantized else "fp32",
                                   ste=model.config.ste if quantized else "identity", ste_clip=model.config.ste_clip)
                err = float(torch.linalg.norm(emp - ana) / torch.linalg.norm(ana))
                ntk_rows.append({"target": name, "width": width, "precision": precision, "relative_error": err})
            step(f"{name} NTK m={width}")
        summary["targets"][name] = {
            measure: decay_exponent(points, measure=measure) for measure in ("mean_abs", "mean_rel")
        }
        summary["targets"][name]["movement_exponent"] = _movement_exponent(kernel_rows, name, cfg.quant)
    _write_csv(out / "kernel.csv", kernel_rows)
    _write_csv(out / "gendiff.csv", gen_rows)
    _write_csv(out / "kappa.csv", kappa_rows)
    _write_csv(out / "ntk.csv", ntk_rows)
    from .plots import plot_study

    summary["plots"] = plot_study(out, kernel_rows, gen_rows, kappa_rows, ntk_rows, traces, cfg)
    atomic_write(out / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2, default=_json)))
    return summary


def _json(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _movement_exponent(rows: list[dict[str, Any]], target: str, precision: str) -> dict[str, float]:
    """Least-squares slope of log(movement at the end) against log(width), per precision."""
    out = {}
    for p in (precision, "fp32"):
        sel = [(r["width"], r["movement_end"]) for r in rows if r["target"] == target and r["precision"] == p]
        w = np.log([s[0] for s in sel])
        v = np.log([max(s[1], 1e-300) for s in sel])
        out[p] = float(np.polyfit(w, v, 1)[0]) if len(set(w)) > 1 else math.nan
    return out


__all__ = ["TheoryConfig", "Target", "run_study"]
