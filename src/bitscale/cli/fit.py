"""`bitscale fit`: a scaling law with bootstrap intervals, a held-out check and the catch-up answers."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from .common import app, console, DEFAULT_STORE, err_console, fail

_HOLDOUT_KINDS = ("largest", "groups", "none")
MAX_BOOTSTRAP = 100_000  # resample counts are held as one (resamples x points) array


def check_count(option: str, value: int, minimum: int = 0, maximum: Optional[int] = None) -> int:
    """A whole-number option within [minimum, maximum], or a one-line error naming it
    ("--bootstrap: expected an integer >= 0, got -1"). Shared by the commands that take counts."""
    if value < minimum:
        fail(f"{option}: expected an integer >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        fail(f"{option}: expected an integer <= {maximum}, got {value}")
    return value


def check_positive_float(option: str, value: float) -> float:
    """A finite number > 0 (typer also parses "inf" and "nan" as floats), or a one-line error naming it."""
    if not (math.isfinite(value) and value > 0):
        fail(f"{option}: expected a finite number > 0, got {value}")
    return value


def parse_sizes(text: Optional[str]) -> Optional[list[float]]:
    """--at "1e8,1e9,1e10" -> [1e8, 1e9, 1e10]; one-line error unless every item is a positive number."""
    if text is None:
        return None
    sizes = []
    for item in text.split(","):
        try:
            value = float(item)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            fail(f"--at: expected positive numbers separated by commas (e.g. 1e8,1e9,1e10), got {item.strip()!r}")
        sizes.append(value)
    return sizes


def _user_message(err: Exception) -> str:
    """One line; a message about a selection (where:, holdout:) names its flag."""
    text = " ".join(str(err).split())
    return "--" + text if text.startswith(("where:", "holdout:")) else text


@app.command("fit")
def fit_command(
    law: str = typer.Option(..., "--law", help="chinchilla | kaplan | power_N | curve | precision | precision_size | "
                            "precision_multiplier | precision_power | precision_ptq | scale_time | ntk"),
    store: Optional[Path] = typer.Option(None, help=f"fit the runs of this results store (default {DEFAULT_STORE} unless --csv)"),
    sweep: Optional[str] = typer.Option(None, help="only this sweep's runs (with --store)"),
    by: Optional[str] = typer.Option(None, help="one fit per value of this config key or column, e.g. model.quant"),
    csv: Optional[Path] = typer.Option(None, "--csv", help="fit the rows of this CSV file instead"),
    columns: Optional[str] = typer.Option(None, help="N=col,D=FLOP/(6*N),loss=col (safe arithmetic); required with --csv, "
                                          "with --store it overrides the defaults, e.g. N=n_params_non_embedding"),
    where: Optional[str] = typer.Option(None, "--where", help="keep only the rows where this is true, e.g. \"N >= 1e8 and family != 'QuantLM'\""),
    group: Optional[str] = typer.Option(None, help="with --csv: column of resampling groups (e.g. seed)"),
    split: str = typer.Option("test", help="with --store: fit test or train loss"),
    curves: bool = typer.Option(False, "--curves", help="with --store: every evaluation step of every run is a point"),
    drop_top: int = typer.Option(0, "--drop-top", help="drop the K highest-loss points before fitting"),
    bootstrap: int = typer.Option(0, "--bootstrap", help="bootstrap resamples for intervals (e.g. 1000)"),
    resample: str = typer.Option("points", help="bootstrap over points or groups"),
    holdout: str = typer.Option("largest", help="largest (refit without the largest N or C) | groups | none | an "
                                "expression naming the rows to hold out, e.g. \"N >= 1e9\""),
    share: Optional[str] = typer.Option(None, "--share", help="per-label parameters tied across labels, e.g. alpha "
                                        "(precision_power: Spectra's form) or E,alpha"),
    reference: Optional[str] = typer.Option(None, "--reference", help="the label the others are compared with "
                                            "(default: the full-precision one, fp32/fp16/bf16)"),
    at: Optional[str] = typer.Option(None, "--at", help="sizes N for the gap, matching and memory-matched answers, "
                                     "e.g. 1e8,1e9,1e10 (default: the largest N, 10x and 100x)"),
    loss: str = typer.Option("huber", help="huber (on log residuals) | lsq"),
    delta: float = typer.Option(1e-3, help="Huber delta"),
    json_out: bool = typer.Option(False, "--json", help="print JSON instead of tables"),
    plot: Optional[Path] = typer.Option(None, help="write a log-log plot of points, fits, bands, held-out points and crossings"),
) -> None:
    """Fit a scaling law with bootstrap intervals and a held-out extrapolation check; with several
    precisions, say when (and whether) each catches up with the reference."""
    import json

    from ..atomic import check_output
    from ..laws import LawDataError, analyze, from_csv, from_store, get_law, parse_columns
    from ..laws.analysis import catch_up_groups
    from ..laws.catch_up import reference_label
    from ..laws.inputs import check_expression_size
    from ..sweep.store import StoreError

    if store is not None and csv is not None:
        fail("give --store DB or --csv FILE, not both")
    if plot is not None:  # before any fitting: a link, a device or the input itself is refused
        check_output(plot, inputs=[p for p in (csv, store) if p is not None])
    if csv is None and store is None:
        store = DEFAULT_STORE
    if csv is not None and not columns:
        fail("--csv needs --columns, e.g. N=params,D=tokens,loss=loss")
    if loss not in ("huber", "lsq"):
        fail(f"--loss: expected huber or lsq, got {loss!r}")
    check_count("--bootstrap", bootstrap, 0, MAX_BOOTSTRAP)
    check_count("--drop-top", drop_top, 0)
    check_positive_float("--delta", delta)
    sizes = parse_sizes(at)
    holdout_expr = None if holdout in _HOLDOUT_KINDS else holdout
    try:
        for option, text in (("--where", where), ("--holdout", holdout_expr)):
            if text is not None:
                check_expression_size(text, option.lstrip("-"))
        form = get_law(law).share(share.split(",") if share else ())
        if store is not None:
            if not store.exists():
                fail(f"{store}: no such store")
            datasets = from_store(store, sweep=sweep, by=by, split=split, curves=curves,
                                  variables=parse_columns(columns) if columns else None,
                                  where=where, holdout=holdout_expr)
        else:
            datasets = from_csv(csv, parse_columns(columns), by=by, group=group, where=where, holdout=holdout_expr)
        if reference is not None:   # checked before any fit, so a wrong label costs nothing
            if form.categorical:
                labels = sorted({str(q) for d in datasets if form.categorical in d.x for q in d.x[form.categorical]})
            else:
                labels = [d.label.split("=", 1)[-1] for d in datasets]
            reference_label(labels, reference)
    except (LawDataError, ValueError, StoreError) as e:
        fail(_user_message(e))

    analyses, failures = [], []
    options = dict(bootstrap_n=bootstrap, resample=resample, holdout="marked" if holdout_expr else holdout,
                   drop_top=drop_top, loss=loss, delta=delta, reference=reference, at=sizes)
    with _progress(len(datasets)) as advance:
        for data in datasets:
            try:
                analyses.append(analyze(form, data, **options))
            except (LawDataError, ValueError, RuntimeError) as e:
                if len(datasets) == 1:
                    fail(_user_message(e))
                failures.append(f"{data.label}: not fitted: {_user_message(e)}")
            advance()
    for line in failures:
        err_console.print(f"warning: {line}", highlight=False, markup=False, soft_wrap=True)
    if not analyses:
        fail(f"no group could be fitted ({len(failures)} tried; see the warnings above)")
    try:
        if not form.categorical:
            catch_up_groups(analyses, reference=reference, at=sizes)
        if plot is not None:
            _plot(form, analyses, plot)
    except (LawDataError, ValueError) as e:
        fail(_user_message(e))
    if json_out:
        print(json.dumps([a.to_dict() for a in analyses], indent=2, allow_nan=False))
        return
    console.print(f"[bold]{escape(form.name)}[/bold]: {escape(form.formula)}  ({escape(form.citation)})", highlight=False)
    for a in analyses:
        print_analysis(a)
    if plot is not None:
        console.print(f"wrote {plot}")


class _progress:
    """A transient progress bar on stderr over the datasets (only when there are several)."""

    def __init__(self, total: int):
        self.total, self.bar, self.task = total, None, None

    def __enter__(self):
        if self.total > 1:
            from rich.progress import Progress

            self.bar = Progress(console=err_console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task("fitting", total=self.total)
        return lambda: self.bar.advance(self.task) if self.bar is not None else None

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()


def _plot(form, analyses, path: Path) -> None:
    from ..laws.plot import crossing_markers, plot_fits

    x = "C" if "C" in form.variables and "N" not in form.variables else form.variables[0]
    plot_fits([a.data for a in analyses], [a.fit for a in analyses], path, x=x,
              boots=[a.boot for a in analyses], holdouts=[a.holdouts[0] if a.holdouts else None for a in analyses],
              title=f"{form.name}: {form.formula}", markers=crossing_markers(analyses) if x == "N" else None)


def print_analysis(a) -> None:
    d = a.to_dict()
    held = d["holdout"]
    error = held["mean_abs_relative_error"]
    if a.holdout_failure:
        check = f"held-out check failed ({a.holdout_failure}): this fit's extrapolation error is unknown"
    elif not held["kind"]:
        check = "held-out check: none (--holdout none): this fit's extrapolation error is unknown"
    else:
        check = f"held-out ({', '.join(held['kind'])}, {held['n_held_out']} points): mean |rel. error| " + (
            "-" if error is None else f"{100 * error:.2f}%"
        )
    if a.boot is not None:
        check += f"\nbootstrap: {a.boot.describe()}"
    table = Table(title=escape(f"{a.label or 'all'}: {a.fit.n_points} points, objective {a.fit.objective:.4g}"
                               + (f" ({a.fit.law})" if a.fit.law != a.fit.form.base else "")),
                  caption=check, box=box.SIMPLE_HEAD)
    level = f"{100 * a.boot.level:.0f}% interval" if a.boot else "interval"
    for column in ("parameter", "estimate", level, "std. error", "flag"):
        table.add_column(column, justify="right")
    unreliable = a.boot is not None and not a.boot.reliable
    for name, value in a.fit.params.items():
        lo, hi = a.boot.intervals.get(name, (math.nan, math.nan)) if a.boot else (math.nan, math.nan)
        se = a.boot.std_errors.get(name, math.nan) if a.boot else math.nan
        interval = "-" if math.isnan(lo) else f"[{lo:.4g}, {hi:.4g}]" + (" unreliable" if unreliable else "")
        side = a.fit.at_bound.get(name)
        table.add_row(escape(name), f"{value:.4g}", interval, "-" if math.isnan(se) else f"{se:.3g}",
                      f"{name} at {side} bound" if side else "")
    console.print(table)
    if a.fit.at_bound:
        pinned = ", ".join(f"{k} at {v} bound" for k, v in a.fit.at_bound.items())
        console.print(f"  warning: {pinned}: the estimate is the bound's, not the data's; answers resting on it "
                      f"are not findings", highlight=False, markup=False)
    for key, value in a.derived.items():
        console.print(f"  {key}: {value}", highlight=False, markup=False)
    from ..laws.catch_up import describe

    for key, answer in a.catch_up.items():
        for line in describe(key, answer):
            console.print(f"  {line}", highlight=False, markup=False, soft_wrap=True)
