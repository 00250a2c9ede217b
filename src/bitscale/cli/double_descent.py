"""`bitscale double-descent`: is there a double-descent peak, does it grow with label noise, and is it
sharper for 1-bit than for fp32 (Boopathy & Fiete 2024)? With the unified law's fit and held-out errors.

For each value of --by (a precision, by default), the runs' error curves (p = parameters, t = steps,
n = data.n_train, noise = data.label_noise) go to `bitscale.laws.double_descent.study`; the sharpness of
every precision's peak is compared with the first one's (fp32 when present).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.table import Table

from .common import DEFAULT_STORE, app, console, curve_studies

@app.command("double-descent")
def double_descent_command(
    store: Path = typer.Option(DEFAULT_STORE, help="results store (SQLite)"),
    sweep: Optional[str] = typer.Option(None, help="only this sweep's runs"),
    by: str = typer.Option("model.quant", help="one study per value of this config key"),
    metric: str = typer.Option("error", help="the curve: error (classification), or loss"),
    split: str = typer.Option("test", help="test or train curves"),
    t_min: float = typer.Option(1.0, "--t-min", help="leave out the evaluations before this step"),
    resamples: int = typer.Option(100, help="bootstrap resamples over runs (0: no intervals, verdicts inconclusive)"),
    seed: int = typer.Option(0, help="seed of the bootstrap"),
    plot: Optional[Path] = typer.Option(None, help="write error against parameters per noise level (PNG)"),
    json_out: Optional[Path] = typer.Option(None, "--json", help="write the measurements and verdicts as JSON"),
) -> None:
    """Double descent per precision: peak and its growth with label noise, the unified law, verdicts."""
    from ..atomic import atomic_write_json
    from ..laws.double_descent import RULE, STORE_COLUMNS, compare_sharpness, study, study_dict, threshold_pt
    from ..laws.plot import plot_double_descent

    studies = curve_studies("double descent", study, store=store, sweep=sweep, by=by, split=split, metric=metric,
                            variables=STORE_COLUMNS, t_min=t_min, resamples=resamples, seed=seed,
                            outputs=(plot, json_out))
    reference = next((s for s in studies if s.label.endswith("=fp32")), studies[0])
    sharpness = {s.label: compare_sharpness(reference, s) for s in studies if s is not reference}

    table = Table(box=box.SIMPLE_HEAD, title=f"double descent ({split} {metric} at the last step)")
    for col in ("precision" if by == "model.quant" else by, "noise", "peak at p", "prominence", "verdict"):
        table.add_column(col)
    for st in studies:
        for z, pk in st.peaks.items():
            lo, hi = st.intervals[f"prominence@{z:g}"]
            table.add_row(st.label.split("=", 1)[-1], f"{z:g}", "-" if pk.size is None else f"{pk.size:,.0f}",
                          f"{pk.prominence:.3f} [{lo:.3f}, {hi:.3f}]", st.verdicts[f"appears@{z:g}"][0])
    console.print(table)
    law = Table(box=box.SIMPLE_HEAD, title="the unified law (ours; laws/double_descent.py)")
    for col in ("precision", "peak grows with noise", "w (peak width)", "peak p·t", "held out: largest p",
                "held out: middle noise", "at a bound", "sharpness vs " + reference.label.split("=", 1)[-1],
                "less data: delta"):
        law.add_column(col)
    for st in studies:
        w_lo, w_hi = st.intervals["w"]
        k_lo, k_hi = st.intervals["threshold_pt"]
        law.add_row(st.label.split("=", 1)[-1], st.verdicts["grows"][0],
                    f"{st.fit.params['w']:.2f} [{w_lo:.2f}, {w_hi:.2f}]",
                    f"{threshold_pt(st.fit, st.n):.3g} [{k_lo:.3g}, {k_hi:.3g}]",
                    "-" if st.holdout_size is None else f"{st.holdout_size.mean_abs_relative_error:.1%}",
                    "-" if st.holdout_noise is None else f"{st.holdout_noise.mean_abs_relative_error:.1%}",
                    ", ".join(f"{k} ({v})" for k, v in st.fit.at_bound.items()) or "none",
                    sharpness.get(st.label, ("reference", ""))[0],
                    "-" if st.delta is None else f"{st.delta:.2f} [{st.intervals['delta'][0]:.2f}, "
                    f"{st.intervals['delta'][1]:.2f}]: {st.verdicts['less_data'][0]}")
    console.print(law)
    console.print(f"rule: {RULE}", highlight=False, soft_wrap=True)
    for st in studies:
        for key, (verdict, reason) in st.verdicts.items():
            console.print(f"  {st.label} {key}: {verdict} ({reason})", highlight=False, soft_wrap=True)
    for label, (verdict, reason) in sharpness.items():
        console.print(f"  {label} peak against {reference.label}: {verdict} ({reason})", highlight=False, soft_wrap=True)
    if plot is not None:
        plot_double_descent(studies, plot, ylabel=f"{split} {metric}", title=sweep)
        console.print(f"plot: {plot}")
    if json_out is not None:
        atomic_write_json(json_out, [study_dict(s, sharpness.get(s.label)) for s in studies])
        console.print(f"json: {json_out}")
