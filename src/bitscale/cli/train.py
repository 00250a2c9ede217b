"""`bitscale train` and `bitscale demo`: one run from a config, and the main job (bitscale.main_job)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from .common import app, console, fail, load_run_config, progress_bar


@app.command("train")
def train_command(
    config: Path = typer.Argument(..., help="run config (TOML with [model], [task], [train] tables; or "
                                  "kind = \"classification\" with [model], [data], [train])"),
    out: Optional[Path] = typer.Option(None, help="directory for model.safetensors, config.json, result.json"),
) -> None:
    """Train one model from a TOML config and print its final losses."""
    from ..nn import summary
    from ..runs import kind_for
    from ..train import build_model, build_task, train
    from ..train.classification import ClassificationRunConfig, build_classifier, build_dataset
    from ..train.checkpoint import check_run_dir_target

    run_config = load_run_config(config)
    if out is not None:
        try:  # before training, not after: a file, a link or a folder that is not a run
            check_run_dir_target(out)
        except ValueError as e:
            fail(str(e))
    kind_for(run_config).check_fits(run_config, str(config))
    try:
        if isinstance(run_config, ClassificationRunConfig):
            task = build_dataset(run_config.data)
            model = build_classifier(run_config.model, run_config.data.length, run_config.train.seed)
        else:
            task = build_task(run_config.task)
            model = build_model(run_config.model, task.d, run_config.train.seed)
    except (ValueError, TypeError) as e:  # e.g. an option the target function does not take
        fail(f"{config}: {e}")
    size = summary(model)
    console.print(
        f"{task.name}: n_train={task.n_train}, n_test={task.n_test} | {run_config.model.kind} width {run_config.model.width}, "
        f"{size.params:,} parameters"
        + (f", quantized weights at P = {size.precision_bits:.3f} precision bits, {size.storage_bits_per_weight:.2f} "
           "storage bits/weight" if size.quantized_weights else ", full precision")
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
        console.print(f"[red]diverged at step {result.diverged_at}[/red]" + (f": nothing written to {out}" if out is not None else ""))
    elif out is not None:
        kind_for(run_config).save_dir(out, model, run_config, result)
        console.print(f"wrote {out}/model.safetensors, config.json, result.json")
    if result.status != "done":
        raise typer.Exit(1)


@app.command("demo")
def demo_command(
    quick: bool = typer.Option(False, "--quick", help="fewer steps and a smaller theory study: about a minute"),
    out: Path = typer.Option(Path("runs/demo"), help="where the store, sweep files, theory outputs and report go"),
) -> None:
    """The 1-bit scaling study end to end: width sweep, LM sweep, MNIST-1D scale-time and double-descent
    sweeps, theory, fits and an HTML report."""
    from ..atomic import check_directory_target
    from ..main_job import FULL, QUICK, run_main_job
    from ..report import ReportError
    from ..sweep.store import StoreError

    check_directory_target(out)
    plan = QUICK if quick else FULL
    console.print(
        f"TwoLayerNet {', '.join(plan.quants)}: {len(plan.widths)} widths x {len(plan.seeds)} seeds x 2 targets, "
        f"{plan.steps} full-batch GD steps | decoder LM {len(plan.lm_sizes)} sizes x fp32/bitnet-b1.58 x "
        f"{len(plan.lm_seeds)} seeds, {plan.lm_steps} steps | MNIST-1D CNN {len(plan.st_widths)} widths x "
        f"{plan.st_steps} steps and MLP {len(plan.dd_widths)} widths x label noise "
        f"{'/'.join(f'{z:g}' for z in plan.dd_noises)}, fp32/bitnet | theory study | report -> {out}/report/report.html"
    )
    with progress_bar() as progress:
        bars: dict[str, int] = {}

        def on_progress(name: str, done: int, total: int) -> None:
            if name not in bars:
                bars[name] = progress.add_task(name, total=total or None)
            progress.update(bars[name], completed=done)

        try:
            result = run_main_job(plan, out, on_progress=on_progress,
                                  on_stage=lambda message: progress.console.print(message, highlight=False))
        except (ReportError, StoreError) as e:
            fail(str(e))
    report = result["report"]
    for claim in report.claims:
        console.print(f"{claim.verdict}: {claim.claim} ({claim.scope})", highlight=False, markup=False)
    console.print(f"wrote {report.html_path}")
