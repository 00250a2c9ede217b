"""Plots of the theory study (matplotlib, Agg; each PNG written atomically)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..atomic import atomic_write


def _save(fig: Figure, path: Path) -> str:
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    return path.name


def _mean_by(rows: list[dict[str, Any]], keys: tuple[str, ...], x: str, y: str) -> dict[tuple, tuple]:
    """{key values: (sorted x, mean y over the other columns, std y)}."""
    groups: dict[tuple, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        groups[tuple(r[k] for k in keys)][r[x]].append(r[y])
    out = {}
    for key, by_x in groups.items():
        xs = sorted(by_x)
        out[key] = (np.array(xs), np.array([np.mean(by_x[v]) for v in xs]), np.array([np.std(by_x[v]) for v in xs]))
    return out


def _loglog(ax, series: dict[tuple, tuple], label) -> None:
    for key, (xs, ys, sd) in sorted(series.items()):
        ax.errorbar(xs, ys, yerr=sd, marker="o", capsize=3, label=label(key))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def plot_study(out: Path, kernel_rows, gen_rows, kappa_rows, ntk_rows, traces, cfg) -> list[str]:
    names = []

    panels = [
        ("kernel_vs_width.png", kernel_rows, ("target", "precision"), "width", "width m", [
            ("movement_end", "relative kernel movement ||H(T)-H(0)||/||H(0)||"),
            ("linearized_distance_end", "distance from the linearized model")]),
        ("gendiff_vs_width.png", gen_rows, ("target",), "width", "width m", [
            (y, f"generalization difference: {y} |f_1bit - f_fp32| on test inputs") for y in ("mean_abs", "mean_rel")]),
        ("gendiff_vs_kappa.png", kappa_rows, ("target",), "kappa", "kappa (output scale)", [
            (y, f"{y} difference vs kappa at m={cfg.kappa_width}") for y in ("mean_abs", "mean_rel")]),
    ]
    for name, rows, keys, x, xlabel, columns in panels:
        fig = Figure(figsize=(11, 4))
        for ax, (y, title) in zip(fig.subplots(1, 2), columns):
            _loglog(ax, _mean_by(rows, keys, x, y), lambda k: ", ".join(str(v) for v in k))
            ax.set_xlabel(xlabel)
            ax.set_title(title, fontsize=9)
        names.append(_save(fig, out / name))

    fig = Figure(figsize=(11, 4.5))
    axes = fig.subplots(1, 2)
    seed, first = cfg.seeds[0], f"{cfg.targets[0].function}-d{cfg.targets[0].d}"
    for ax, precision in zip(axes, (cfg.quant, "fp32")):
        handles = []
        for (target, width, s, p), trace in sorted(traces.items()):
            if s != seed or p != precision or target != first:
                continue
            line = ax.plot(trace.steps, trace.train_loss, marker="o", markersize=3, label=f"m={width}")[0]
            ax.plot(trace.steps, trace.predicted_loss, linestyle="--", color=line.get_color())
            ax.plot(trace.steps, trace.loss_bound, linestyle=":", color=line.get_color())
            handles.append(line)
        # one entry per width (colour) and one per kind of curve (line style), instead of widths x kinds
        handles += [Line2D([], [], color="k", marker="o", markersize=3, label="measured"),
                    Line2D([], [], color="k", linestyle="--", label="linearized model"),
                    Line2D([], [], color="k", linestyle=":", label="rate bound L0 (1 - 2 eta lmin / n)^2t")]
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(f"{precision} ({first}, seed {seed}): training loss vs the kernel's predictions", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(handles=handles, fontsize=6, loc="lower left", ncol=2)
    names.append(_save(fig, out / "convergence.png"))

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    _loglog(ax, _mean_by(ntk_rows, ("target", "precision"), "width", "relative_error"), lambda k: f"{k[0]}, {k[1]}")
    ax.set_xlabel("width m")
    ax.set_title("empirical NTK at init vs the analytic limit (relative Frobenius error)", fontsize=9)
    names.append(_save(fig, out / "ntk_vs_analytic.png"))
    return names
