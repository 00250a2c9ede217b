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
from rich.markup import escape
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

DEFAULT_STORE = Path("runs/bitscale.db")


@app.command("sweep")
def sweep_command(
    config: Path = typer.Argument(..., help="sweep file (TOML: [base] run config, [grid] and [[zip]] axes)"),
    store: Path = typer.Option(DEFAULT_STORE, help="results store (SQLite); created if missing"),
    executor: str = typer.Option("serial", help="serial | processes | batched | ray"),
    workers: Optional[int] = typer.Option(None, help="worker processes (processes) or CPUs of a local Ray instance"),
    address: Optional[str] = typer.Option(None, help="ray: 'auto' or HOST:PORT of a running cluster; default starts one"),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="train runs recorded as failed again"),
    quiet: bool = typer.Option(False, "--quiet", help="plain log lines instead of a progress bar"),
) -> None:
    """Train every run of a sweep that the store has not finished; safe to kill and re-run."""
    from .sweep.executors import EXECUTORS, make_executor
    from .sweep.runner import run_sweep
    from .sweep.spec import SweepError, load_sweep
    from .sweep.store import StoreError

    if executor not in EXECUTORS:
        fail(f"--executor: expected one of {', '.join(EXECUTORS)}, got {executor!r}")
    if workers is not None and workers < 1:
        fail(f"--workers: expected a positive integer, got {workers}")
    try:
        sweep, specs = load_sweep(config)
    except SweepError as e:
        fail(str(e))

    progress = None if quiet else progress_bar_with_failures()
    state = {"bar": None, "n": 0, "total": 0}

    def on_plan(total: int, finished_before: int) -> None:
        state["total"], state["n"] = total, finished_before
        message = f"{sweep.name}: {total} runs, {finished_before} already finished, {total - finished_before} to train ({executor})"
        if progress is None:
            print(message, flush=True)
        else:
            console.print(message)
            state["bar"] = progress.add_task(sweep.name, total=total, completed=finished_before, failed=0)

    def on_outcome(outcome) -> None:
        state["n"] += 1
        if progress is not None:
            if outcome.status != "done":
                progress.update(state["bar"], failed=progress.tasks[state["bar"]].fields["failed"] + 1)
            progress.advance(state["bar"])
            if outcome.status == "failed":
                progress.console.print(f"[red]{outcome.id} failed:[/red] {outcome.error}", markup=True, highlight=False)
            return
        losses = "" if outcome.final_train_loss is None else f" train {outcome.final_train_loss:.4g} test {outcome.final_test_loss:.4g}"
        detail = f" ({outcome.error})" if outcome.error else ""
        print(f"[{state['n']}/{state['total']}] {outcome.id} {outcome.status}{losses} {outcome.wall_time_s:.1f}s{detail}", flush=True)

    try:
        with make_executor(executor, workers, address) as engine:
            if progress is not None:
                progress.start()
            try:
                report = run_sweep(sweep, specs, store, engine, retry_failed=retry_failed, on_plan=on_plan, on_outcome=on_outcome)
            finally:
                if progress is not None:
                    progress.stop()
    except (StoreError, RuntimeError) as e:
        fail(str(e))
    except KeyboardInterrupt:
        err_console.print("interrupted: finished runs are stored; run the same command again to resume")
        raise typer.Exit(130)
    failed, diverged = report.count("failed"), report.count("diverged")
    print(
        f"{sweep.name}: trained {len(report.outcomes)} ({report.count('done')} done, {diverged} diverged, {failed} failed), "
        f"skipped {report.finished_before} finished; store {store}",
        flush=True,
    )
    if failed:
        raise typer.Exit(1)


def progress_bar_with_failures() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed/diverged"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


runs_app = typer.Typer(help="Inspect and export the runs in a results store.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")


def open_store(path: Path):
    from .sweep.store import Store, StoreError

    if not path.exists():
        fail(f"{path}: no such store")
    try:
        return Store(path, create=False)
    except StoreError as e:
        fail(str(e))


def _num(x, spec: str = ".4g") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


@runs_app.command("list")
def runs_list(
    store: Path = typer.Option(DEFAULT_STORE, help="results store"),
    sweep: Optional[str] = typer.Option(None, help="only this sweep's runs"),
    status: Optional[str] = typer.Option(None, help="queued | running | done | failed | diverged"),
) -> None:
    """One line per run: id, status, model, data, final losses."""
    with open_store(store) as db:
        rows = db.runs(sweep=sweep, status=status)
        counts = db.counts(sweep)
    caption = ", ".join(f"{n} {s}" for s, n in counts.items() if n) + "; train/test: final losses, s: wall seconds"
    table = Table(box=box.SIMPLE_HEAD, caption=caption, pad_edge=False)
    for column in ("id", "status", "model", "quant", "width", "n_train", "steps", "seed", "train", "test", "s"):
        table.add_column(column, justify="left" if column in ("id", "status", "model", "quant") else "right", no_wrap=True)
    for r in rows:
        c = r["config"]
        quant = c["model"]["quant"] if isinstance(c["model"]["quant"], str) else "custom"
        table.add_row(
            r["id"], r["status"], c["model"]["kind"], quant, str(c["model"]["width"]), str(c["task"]["n_train"]),
            str(c["train"]["steps"]), str(c["train"]["seed"]), _num(r["final_train_loss"]), _num(r["final_test_loss"]),
            _num(r["wall_time_s"], ".1f"),
        )
    console.print(table)


@runs_app.command("show")
def runs_show(
    run_id: str = typer.Argument(..., help="run id or a unique prefix of one"),
    store: Path = typer.Option(DEFAULT_STORE, help="results store"),
) -> None:
    """Everything the store knows about one run: config, accounting, status, loss curves."""
    import json

    from .sweep.store import StoreError

    with open_store(store) as db:
        try:
            r = db.get_run(run_id)
        except StoreError as e:
            fail(str(e))
    from datetime import datetime

    metrics = r.pop("metrics")
    config = r.pop("config")
    for key, value in r.items():
        if key in ("started", "finished", "created") and value is not None:
            value = datetime.fromtimestamp(value).isoformat(sep=" ", timespec="seconds")
        console.print(f"[bold]{key}[/bold]: {value}", highlight=False)
    console.print("[bold]config[/bold]:", json.dumps(config, indent=2), highlight=False)
    table = Table(box=box.SIMPLE_HEAD, title="metrics")
    for column in ("step", "split", "name", "value"):
        table.add_column(column, justify="right")
    for m in metrics:
        table.add_row(str(m["step"]), m["split"], m["name"], _num(m["value"], ".6g"))
    console.print(table)


@runs_app.command("export")
def runs_export(
    format: str = typer.Option("csv", "--format", help="csv | parquet | json"),
    out: Optional[Path] = typer.Option(None, help="output file; default stdout (csv and json only)"),
    sweep: Optional[str] = typer.Option(None, help="only this sweep's runs"),
    store: Path = typer.Option(DEFAULT_STORE, help="results store"),
) -> None:
    """One row per run, config flattened to dotted columns (model.width, train.lr, ...)."""
    from .sweep.store import StoreError, export_runs

    if format not in ("csv", "parquet", "json"):
        fail(f"--format: expected csv, parquet or json, got {format!r}")
    if format == "parquet" and out is None:
        fail("--format parquet needs --out FILE")
    open_store(store).close()
    try:
        export_runs(store, out, format, sweep)  # csv/json without --out go to stdout
    except StoreError as e:
        fail(str(e))
    if out is not None:
        err_console.print(f"wrote {out}")


@app.command("fit")
def fit_command(
    law: str = typer.Option(..., "--law", help="chinchilla | kaplan | power | curve | precision | precision_multiplier | scale_time | ntk"),
    store: Optional[Path] = typer.Option(None, help=f"fit the runs of this results store (default {DEFAULT_STORE} unless --csv)"),
    sweep: Optional[str] = typer.Option(None, help="only this sweep's runs (with --store)"),
    by: Optional[str] = typer.Option(None, help="one fit per value of this config key, e.g. model.quant"),
    csv: Optional[Path] = typer.Option(None, "--csv", help="fit the rows of this CSV file instead"),
    columns: Optional[str] = typer.Option(None, help="with --csv: N=col,D=FLOP/(6*N),loss=col (safe arithmetic)"),
    group: Optional[str] = typer.Option(None, help="with --csv: column of resampling groups (e.g. seed)"),
    split: str = typer.Option("test", help="with --store: fit test or train loss"),
    curves: bool = typer.Option(False, "--curves", help="with --store: every evaluation step of every run is a point"),
    drop_top: int = typer.Option(0, "--drop-top", help="drop the K highest-loss points before fitting"),
    bootstrap: int = typer.Option(0, "--bootstrap", help="bootstrap resamples for intervals (e.g. 1000)"),
    resample: str = typer.Option("points", help="bootstrap over points or groups"),
    holdout: str = typer.Option("largest", help="largest (refit without the largest N or C) | groups | none"),
    loss: str = typer.Option("huber", help="huber (on log residuals) | lsq"),
    delta: float = typer.Option(1e-3, help="Huber delta"),
    json_out: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
    plot: Optional[Path] = typer.Option(None, help="write a log-log plot of points, fits, bands and held-out points"),
) -> None:
    """Fit a scaling law with bootstrap intervals and a held-out extrapolation check."""
    import json

    from .laws import LawDataError, analyze, from_csv, from_store, get_law, parse_columns

    if store is not None and csv is not None:
        fail("give --store DB or --csv FILE, not both")
    if csv is None and store is None:
        store = DEFAULT_STORE
    if csv is not None and not columns:
        fail("--csv needs --columns, e.g. N=params,D=tokens,loss=loss")
    if loss not in ("huber", "lsq"):
        fail(f"--loss: expected huber or lsq, got {loss!r}")
    try:
        form = get_law(law)
        if store is not None:
            if not store.exists():
                fail(f"{store}: no such store")
            datasets = from_store(store, sweep=sweep, by=by, split=split, curves=curves)
        else:
            datasets = from_csv(csv, parse_columns(columns), by=by, group=group)
        analyses = [
            analyze(form.name, data, bootstrap_n=bootstrap, resample=resample, holdout=holdout,
                    drop_top=drop_top, loss=loss, delta=delta)
            for data in datasets
        ]
        if plot is not None:
            from .laws.plot import plot_fits

            x = "C" if "C" in form.variables and "N" not in form.variables else form.variables[0]
            plot_fits([a.data for a in analyses], [a.fit for a in analyses], plot, x=x,
                      boots=[a.boot for a in analyses], holdouts=[a.holdouts[0] if a.holdouts else None for a in analyses],
                      title=f"{form.name}: {form.formula}")
    except (LawDataError, ValueError) as e:
        fail(" ".join(str(e).split()))
    if json_out:
        print(json.dumps([a.to_dict() for a in analyses], indent=2, allow_nan=False))
        return
    console.print(f"[bold]{form.name}[/bold]: {escape(form.formula)}  ({escape(form.citation)})", highlight=False)
    for a in analyses:
        print_analysis(a)
    if plot is not None:
        console.print(f"wrote {plot}")


def print_analysis(a) -> None:
    held = a.to_dict()["holdout"]
    error = held["mean_abs_relative_error"]
    if not held["kind"]:
        check = "held-out check: none (--holdout none): this fit's extrapolation error is unknown"
    else:
        check = f"held-out ({', '.join(held['kind'])}, {held['n_held_out']} points): mean |rel. error| " + (
            "-" if error is None else f"{100 * error:.2f}%"
        )
    table = Table(title=escape(f"{a.label or 'all'}: {a.fit.n_points} points, objective {a.fit.objective:.4g}"),
                  caption=check, box=box.SIMPLE_HEAD)
    level = f"{100 * a.boot.level:.0f}% interval" if a.boot else "interval"
    for column in ("parameter", "estimate", level, "std. error"):
        table.add_column(column, justify="right")
    for name, value in a.fit.params.items():
        lo, hi = a.boot.intervals.get(name, (math.nan, math.nan)) if a.boot else (math.nan, math.nan)
        se = a.boot.std_errors.get(name, math.nan) if a.boot else math.nan
        interval = "-" if math.isnan(lo) else f"[{lo:.4g}, {hi:.4g}]"
        table.add_row(escape(name), f"{value:.4g}", interval, "-" if math.isnan(se) else f"{se:.3g}")
    console.print(table)
    for key, value in a.derived.items():
        console.print(f"  {key}: {value}", highlight=False, markup=False)


@app.command("theory")
def theory_command(
    config: Path = typer.Argument(..., help="theory study config (TOML; every field optional, see configs/theory.toml)"),
    out: Path = typer.Option(Path("runs/theory"), help="directory for the tables (CSV, JSON) and plots (PNG)"),
) -> None:
    """Measure the paper's claims over widths: NTK vs its limit, kernel movement, generalization difference."""
    from .theory.study import TheoryConfig, run_study
    from .train import format_validation_error

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


def main() -> None:
    try:
        app()
    except UserError as e:
        err_console.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
