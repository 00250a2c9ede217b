"""`bitscale train` and `bitscale demo`: one run from a config, and the width demo."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.table import Table

from .common import app, console, fail, load_run_config, progress_bar


@app.command("train")
def train_command(
    config: Path = typer.Argument(..., help="run config (TOML with [model], [task], [train] tables)"),
    out: Optional[Path] = typer.Option(None, help="directory for model.safetensors, config.json, result.json"),
) -> None:
    """Train one model from a TOML config and print its final losses."""
    from ..nn import summary
    from ..train import build_model, build_task, save_run, train

    run_config = load_run_config(config)
    try:
        task = build_task(run_config.task)
        model = build_model(run_config.model, task.d, run_config.train.seed)
    except (ValueError, TypeError) as e:  # e.g. an option the target function does not take
        fail(f"{config}: {e}")
    size = summary(model)
    console.print(
        f"{task.name}: n_train={task.n_train}, n_test={task.n_test} | {run_config.model.kind} width {run_config.model.width}, "
        f"{size.params:,} parameters, {size.bits_per_weight:.2f} bits/weight packed"
    )
    with progress_bar() as progress:
        bar = progress.add_task("training", total=run_config.train.steps)
        result = train(model, task, run_config.train, callback=lambda step, loss: progress.update(bar, completed=step))
    table = Table(title=f"{config.name}: {result.status}")
    for column in ("steps", "train loss", "test loss", "wall time"):
        table.add_column(column, justify="right")
    table.add_row(
        str(result.steps_done), f"{result.final_train_loss:.4g}", f"{result.final_test_loss:.4g}", f"{result.wall_time_s:.1f} s"
    )
    console.print(table)
    if result.status == "diverged":
        console.print(f"[red]diverged at step {result.diverged_at}[/red]")
    if out is not None:
        save_run(out, model, run_config, result)
        console.print(f"wrote {out}/model.safetensors, config.json, result.json")
    if result.status != "done":
        raise typer.Exit(1)


def _fmt(pair: tuple[float, float], with_std: bool = True) -> str:
    mean, std = pair
    if math.isnan(mean):
        return "-"
    return f"{mean:.2f}±{std:.2f}" if with_std else f"{mean:.3f}"


@app.command("demo")
def demo_command(
    quick: bool = typer.Option(False, "--quick", help="fewer widths and steps: under a minute"),
    out: Path = typer.Option(Path("runs/demo"), help="where demo.json (every run and the table) is written"),
) -> None:
    """The paper's 1-bit two-layer network vs its full-precision twin across widths."""
    from ..demo import FULL, QUICK, results_json, run_demo, width_table
    from ..train.checkpoint import atomic_write_json

    settings = QUICK if quick else FULL
    configs = settings.configs()
    console.print(
        f"TwoLayerNet paper-1bit vs fp32 twin: {len(settings.widths)} widths x {len(settings.seeds)} seeds x "
        f"{len(settings.targets)} targets, {settings.steps} full-batch GD steps (lr {settings.lr}, cosine), "
        f"n_train={settings.n_train}, inputs on the unit sphere"
    )
    with progress_bar() as progress:
        bar = progress.add_task("runs", total=len(configs))
        results = run_demo(settings, on_run=lambda _: progress.advance(bar))
    rows = width_table(results)
    table = Table(
        title="1-bit (paper-1bit) vs fp32 twin, final losses",
        caption="test columns: mean±std over seeds; gap = 1-bit test − fp32 test; |Δf| = mean |f_1bit − f_fp| on test inputs",
        box=box.SIMPLE_HEAD,
    )
    for column in ("target", "m", "fp32 train", "1-bit train", "fp32 test", "1-bit test", "gap", "|Δf|"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in rows:
        table.add_row(
            row["target"].removesuffix("-sphere"),
            str(row["width"]),
            _fmt(row["fp32_train"], with_std=False),
            _fmt(row["1bit_train"], with_std=False),
            _fmt(row["fp32_test"]),
            _fmt(row["1bit_test"]),
            _fmt(row["test_gap"]),
            _fmt(row["output_difference"]),
        )
    console.print(table)
    atomic_write_json(out / "demo.json", results_json(settings, results))
    console.print(f"wrote {out / 'demo.json'}")
