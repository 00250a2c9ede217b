"""`bitscale fit`: a scaling law with bootstrap intervals and a held-out check."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from .common import app, console, DEFAULT_STORE, fail


@app.command("fit")
def fit_command(
    law: str = typer.Option(..., "--law", help="chinchilla | kaplan | power_N | curve | precision | precision_size | precision_multiplier | scale_time | ntk"),
    store: Optional[Path] = typer.Option(None, help=f"fit the runs of this results store (default {DEFAULT_STORE} unless --csv)"),
    sweep: Optional[str] = typer.Option(None, help="only this sweep's runs (with --store)"),
    by: Optional[str] = typer.Option(None, help="one fit per value of this config key, e.g. model.quant"),
    csv: Optional[Path] = typer.Option(None, "--csv", help="fit the rows of this CSV file instead"),
    columns: Optional[str] = typer.Option(None, help="N=col,D=FLOP/(6*N),loss=col (safe arithmetic); required with --csv, "
                                          "with --store it overrides the defaults, e.g. N=n_params_non_embedding"),
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

    from ..laws import LawDataError, analyze, from_csv, from_store, get_law, parse_columns

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
            datasets = from_store(store, sweep=sweep, by=by, split=split, curves=curves,
                                  variables=parse_columns(columns) if columns else None)
        else:
            datasets = from_csv(csv, parse_columns(columns), by=by, group=group)
        analyses = [
            analyze(form.name, data, bootstrap_n=bootstrap, resample=resample, holdout=holdout,
                    drop_top=drop_top, loss=loss, delta=delta)
            for data in datasets
        ]
        if plot is not None:
            from ..laws.plot import plot_fits

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
