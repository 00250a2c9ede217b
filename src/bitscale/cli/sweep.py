"""`bitscale sweep` and `bitscale runs list|show|export`: many runs and the results store."""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.table import Table

from .common import app, console, DEFAULT_STORE, err_console, fail, progress_bar_with_failures
from .fit import check_count


@app.command("sweep")
def sweep_command(
    config: Path = typer.Argument(..., help="sweep file (TOML: \\[base] run config, \\[grid] and \\[\\[zip]] axes)"),
    store: Path = typer.Option(DEFAULT_STORE, help="results store (SQLite); created if missing"),
    executor: str = typer.Option("serial", help="serial | processes | batched | ray"),
    workers: Optional[int] = typer.Option(None, help="worker processes (processes) or CPUs of a local Ray instance"),
    address: Optional[str] = typer.Option(None, help="ray: 'auto' or HOST:PORT of a running cluster; default starts one"),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="train runs recorded as failed again"),
    quiet: bool = typer.Option(False, "--quiet", help="plain log lines instead of a progress bar"),
) -> None:
    """Train every run of a sweep that the store has not finished; safe to kill and re-run."""
    from ..sweep.executors import EXECUTORS, make_executor
    from ..sweep.runner import run_sweep
    from ..sweep.spec import SweepError, load_sweep
    from ..sweep.store import StoreError

    if executor not in EXECUTORS:
        fail(f"--executor: expected one of {', '.join(EXECUTORS)}, got {executor!r}")
    if workers is not None:
        check_count("--workers", workers, 1)
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
    except (StoreError, SweepError, RuntimeError) as e:  # SweepError: a run that cannot fit in memory
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


runs_app = typer.Typer(help="Inspect and export the runs in a results store.", no_args_is_help=True)
app.add_typer(runs_app, name="runs")


def open_store(path: Path):
    from ..sweep.store import Store, StoreError

    if not path.exists():
        fail(f"{path}: no such store")
    try:
        return Store(path, create=False)
    except StoreError as e:
        fail(str(e))


@contextmanager
def store_errors():
    """A StoreError raised inside (a damaged page met while reading, say) becomes the one-line
    `error: ...` and exit 2 of every user mistake."""
    from ..sweep.store import StoreError

    try:
        yield
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
    from ..runs.kinds import KINDS, kind_of
    from ..sweep.store import STATUSES

    if status is not None and status not in STATUSES:
        fail(f"--status: expected one of {', '.join(STATUSES)}, got {status!r}")
    with store_errors(), open_store(store) as db:
        rows = db.runs(sweep=sweep, status=status)
        counts = db.counts(sweep)
    caption = (", ".join(f"{n} {s}" for s, n in counts.items() if n)
               + "; width: m (or d_model x n_layer for decoders); data: n_train (or tokens seen); "
               "train/test: final losses (LM: validation as test); s: wall seconds")
    table = Table(box=box.SIMPLE_HEAD, caption=caption, pad_edge=False)
    for column in ("id", "status", "model", "quant", "width", "data", "steps", "seed", "train", "test", "s"):
        table.add_column(column, justify="left" if column in ("id", "status", "model", "quant") else "right", no_wrap=True)
    for r in rows:
        c = r["config"]
        quant = c["model"]["quant"] if isinstance(c["model"]["quant"], str) else "custom"
        model, width, data = KINDS[kind_of(c)].summary(c, r["samples_seen"])
        table.add_row(
            r["id"], r["status"], model, quant, width, data,
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

    with store_errors(), open_store(store) as db:
        r = db.get_run(run_id)
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
    from ..atomic import check_output
    from ..sweep.store import StoreError, export_runs

    if format not in ("csv", "parquet", "json"):
        fail(f"--format: expected csv, parquet or json, got {format!r}")
    if format == "parquet" and out is None:
        fail("--format parquet needs --out FILE")
    if out is not None:
        check_output(out, inputs=[store])
    open_store(store).close()
    try:
        export_runs(store, out, format, sweep)  # csv/json without --out go to stdout
    except StoreError as e:
        fail(str(e))
    if out is not None:
        err_console.print(f"wrote {out}")


@app.command("compare")
def compare_command(
    store: Path = typer.Option(DEFAULT_STORE, help="results store"),
    sweep: Optional[str] = typer.Option(None, help="only this sweep's runs"),
    by: str = typer.Option("model.quant", help="the config column whose values are compared"),
    size: str = typer.Option("model.width", help="the config column that says which runs are the same size "
                                                 "(model.width; model.d_model for decoders)"),
    reference: str = typer.Option("fp32", help="the value of --by that the others are compared with"),
    metric: str = typer.Option("final_test_loss", help="the run column compared (LM: validation loss)"),
    n_column: str = typer.Option("n_params_non_embedding", "--n-column", help="the parameter count shown and plotted"),
    markdown: Optional[Path] = typer.Option(None, help="also write the table as markdown to this file"),
    plot: Optional[Path] = typer.Option(None, help="write a plot: metric and gap to the reference against N"),
    json_out: bool = typer.Option(False, "--json", help="print JSON records instead of a table"),
) -> None:
    """Each variant's loss at each size, over seeds, and its gap to the reference (e.g. ternary vs fp32)."""
    from ..atomic import atomic_write, check_output
    from ..sweep.compare import CompareError, compare_runs, plot_comparison, to_markdown

    if not store.exists():
        fail(f"{store}: no such store")
    for output in (markdown, plot):
        if output is not None:
            check_output(output, inputs=[store])
    if markdown is not None and plot is not None and markdown.resolve() == plot.resolve():
        fail("--markdown and --plot name the same file")
    try:
        with store_errors():
            table = compare_runs(store, sweep=sweep, by=by, size=size, reference=reference, metric=metric,
                                 n_column=n_column)
    except CompareError as e:
        fail(" ".join(str(e).split()))
    if json_out:
        print(table.to_json(orient="records", indent=2))
    else:
        out = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, caption=f"gap: mean {metric} minus {reference}'s at the same {size} (± Welch s.e.); "
                    "paired s.e.: over the seeds both were run with; min and max: --markdown or --json")
        for column in (size, "variant", "N", "seeds", "mean ± std", "gap", "paired s.e.", "relative"):
            out.add_column(column, justify="left" if column == "variant" else "right", no_wrap=True)
        for r in table.itertuples(index=False):
            gap = _num(r.gap, "+.4f") + ("" if math.isnan(r.gap_se) else f" ± {r.gap_se:.4f}")
            out.add_row(str(r.size), r.label, f"{r.N:,.0f}", str(r.n), f"{_num(r.mean, '.4f')} ± {_num(r.std, '.4f')}",
                        gap, _num(r.gap_se_paired, ".4f"), "-" if math.isnan(r.gap_relative) else f"{100 * r.gap_relative:+.1f}%")
        console.print(out)
    if markdown is not None:
        text = to_markdown(table, size=size, metric=metric, reference=reference)
        atomic_write(markdown, lambda tmp: Path(tmp).write_text(text))
        err_console.print(f"wrote {markdown}")
    if plot is not None:
        plot_comparison(table, plot, metric=metric, reference=reference, title=sweep or "")
        err_console.print(f"wrote {plot}")
