"""`bitscale theory`: the paper's claims measured over widths."""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich import box
from rich.table import Table

from .common import app, console, load_config, progress_bar


@app.command("theory")
def theory_command(
    config: Path = typer.Argument(..., help="theory study config (TOML; every field optional, see configs/theory.toml)"),
    out: Path = typer.Option(Path("runs/theory"), help="directory for the tables (CSV, JSON) and plots (PNG)"),
) -> None:
    """Measure the paper's claims over widths: NTK vs its limit, kernel movement, generalization difference."""
    from ..atomic import check_directory_target
    from ..theory.study import TheoryConfig, run_study

    cfg = load_config(config, TheoryConfig)
    check_directory_target(out)
    total = len(cfg.targets) * (len(cfg.widths) * len(cfg.seeds) + len(cfg.ntk_widths))
    with progress_bar() as progress:
        bar = progress.add_task("theory", total=total)
        summary = run_study(cfg, out, on_step=lambda message: progress.update(bar, advance=1, description=message))
    table = Table(title="generalization difference ~ C * m^(-gamma)", box=box.SIMPLE_HEAD)
    for column in ("target", "measure", "gamma", "interval", "movement slope (1-bit / fp32)"):
        table.add_column(column, justify="right")
    for target, result in summary["targets"].items():
        slopes = result["movement_exponent"]
        slope_text = " / ".join(f"{v:.2f}" for v in slopes.values())
        for measure in ("mean_abs", "mean_rel"):
            fit = result[measure]
            lo, hi = fit.get("ci", (math.nan, math.nan))
            table.add_row(target, measure, f"{fit['gamma']:.3f}", f"[{lo:.3f}, {hi:.3f}]", slope_text)
    console.print(table)
    console.print(f"wrote {out}/kernel.csv, gendiff.csv, kappa.csv, ntk.csv, summary.json and plots")
