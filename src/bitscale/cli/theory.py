"""`bitscale theory`: the paper's claims measured over widths."""

from __future__ import annotations

import math
from pathlib import Path

import typer
from pydantic import ValidationError
from rich import box
from rich.table import Table

from .common import app, console, fail, progress_bar, tomllib


@app.command("theory")
def theory_command(
    config: Path = typer.Argument(..., help="theory study config (TOML; every field optional, see configs/theory.toml)"),
    out: Path = typer.Option(Path("runs/theory"), help="directory for the tables (CSV, JSON) and plots (PNG)"),
) -> None:
    """Measure the paper's claims over widths: NTK vs its limit, kernel movement, generalization difference."""
    from ..theory.study import TheoryConfig, run_study
    from ..train import format_validation_error

    if not config.is_file():
        fail(f"{config}: no such file")
    try:
        cfg = TheoryConfig.model_validate(tomllib.loads(config.read_text(encoding="utf-8")))
    except tomllib.TOMLDecodeError as e:
        fail(f"{config}: invalid TOML: {e}")
    except ValidationError as e:
        fail(format_validation_error(e, str(config)))
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
