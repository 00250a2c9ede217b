"""The `bitscale` command. Thin: parse, validate, call the library, print.

User mistakes (a missing file, bad TOML, a wrong config field) print one line `error: ...` to stderr
and exit with code 2, without a traceback.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Optional

import typer
from pydantic import ValidationError
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

app = typer.Typer(
    name="bitscale",
    help="Train, scale and run 1-bit and ternary neural networks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Rich assumes 80 columns when output is not a terminal; the demo's table needs a little more.
console = Console() if sys.stdout.isatty() else Console(width=110)
err_console = Console(stderr=True)


class UserError(Exception):
    """A mistake in the user's input: reported as one line, exit code 2."""


def fail(message: str) -> None:
    raise UserError(message)


def load_run_config(path: Path):
    from .train import RunConfig, format_validation_error

    if not path.is_file():
        fail(f"{path}: no such file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        fail(f"{path}: not a UTF-8 text file")
    except tomllib.TOMLDecodeError as e:
        fail(f"{path}: invalid TOML: {e}")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as e:
        fail(format_validation_error(e, str(path)))


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


@app.command("train")
def train_command(
    config: Path = typer.Argument(..., help="run config (TOML with [model], [task], [train] tables)"),
    out: Optional[Path] = typer.Option(None, help="directory for model.safetensors, config.json, result.json"),
) -> None:
    """Train one model from a TOML config and print its final losses."""
    from .nn import summary
    from .train import build_model, build_task, save_run, train

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
    from .demo import FULL, QUICK, results_json, run_demo, width_table
    from .train.checkpoint import atomic_write_json

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


def main() -> None:
    try:
        app()
    except UserError as e:
        err_console.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
