"""`bitscale scale-time`: does a sweep's model size trade for training time (Boopathy & Fiete 2024)?

For each value of --by (a precision, by default), the runs' curves (p = parameters, t = steps, loss at
each evaluation) go to `bitscale.laws.scale_time.study`: the collapse ratio and spread on the p·t axis,
the error of predicting the largest model's curve from the smaller ones, their bootstrap intervals over
runs, and the verdict by the rule printed under the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.table import Table

from .common import DEFAULT_STORE, app, console, curve_studies


@app.command("scale-time")
def scale_time_command(
    store: Path = typer.Option(DEFAULT_STORE, help="results store (SQLite)"),
    sweep: Optional[str] = typer.Option(None, help="only this sweep's runs"),
    by: str = typer.Option("model.quant", help="one study per value of this config key"),
    metric: str = typer.Option("loss", help="the curve: loss, or a recorded metric such as error"),
    split: str = typer.Option("test", help="test or train curves"),
    t_min: float = typer.Option(1.0, "--t-min", help="leave out the evaluations before this step"),
    resamples: int = typer.Option(200, help="bootstrap resamples over runs (0: no intervals, verdict inconclusive)"),
    seed: int = typer.Option(0, help="seed of the bootstrap"),
    plot: Optional[Path] = typer.Option(None, help="write the curves against t and p·t with the fits (PNG)"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="write the measurements and verdicts as JSON"),
) -> None:
    """Scale-time equivalence per precision: collapse on p·t, small-to-large prediction, verdict."""
    from ..atomic import atomic_write_json
    from ..laws.plot import plot_scale_time
    from ..laws.scale_time import RULE, study, study_dict

    found = curve_studies("scale-time", study, store=store, sweep=sweep, by=by, split=split, metric=metric,
                          variables={"p": "n_params", "t": "step"}, t_min=t_min, resamples=resamples, seed=seed,
                          outputs=(plot, json_out))
    studies = [(st.data, st) for st in found]
    table = Table(box=box.SIMPLE_HEAD, title=f"scale-time equivalence ({split} {metric}, t >= {t_min:g})")
    for col in ("precision" if by == "model.quant" else by, "sizes", "runs", "gamma", "collapse ratio", "spread",
                "predict largest", "verdict"):
        table.add_column(col)

    def shown(value, interval, fmt):
        lo, hi = interval
        return f"{value:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]" if resamples else f"{value:{fmt}}"

    for _, st in studies:
        pr = st.prediction
        table.add_row(
            st.label.split("=", 1)[-1], str(len(st.sizes)), str(sum(st.runs_per_size.values())),
            shown(st.gamma, st.intervals["gamma"], ".2f"), shown(st.collapse.ratio, st.intervals["ratio"], ".2f"),
            shown(st.collapse.spread, st.intervals["spread"], ".3f"),
            "-" if pr is None else shown(pr.mean_abs_relative_error, st.intervals["prediction_error"], ".1%"),
            st.verdict,
        )
    console.print(table)
    console.print(f"rule: {RULE}", highlight=False, soft_wrap=True)
    for _, st in studies:
        console.print(f"  {st.label}: {st.verdict} ({st.reason})", highlight=False, soft_wrap=True)
    if plot is not None:
        plot_scale_time([d for d, _ in studies], [s for _, s in studies], plot,
                        ylabel=f"{split} {metric}", title=sweep)
        console.print(f"plot: {plot}")
    if json_out is not None:
        atomic_write_json(json_out, [study_dict(s) for _, s in studies])
        console.print(f"json: {json_out}")
