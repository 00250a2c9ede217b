"""`bitscale report`: a self-contained HTML report (tables, fits, findings, verdicts) of a results store."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import app, DEFAULT_STORE, err_console, fail


@app.command("report")
def report_command(
    store: Path = typer.Option(DEFAULT_STORE, help="results store (SQLite); read only"),
    out: Path = typer.Option(..., "--out", help="output directory: report.html, report.json, the PNGs"),
    sweep: Optional[str] = typer.Option(None, help="only this sweep (default: every sweep in the store)"),
    by: str = typer.Option("model.quant", help="the config column whose values are compared"),
    size: Optional[str] = typer.Option(None, help="the size column (default: model.width for regression runs, "
                                                  "model.d_model for LM runs)"),
    reference: str = typer.Option("fp32", help="the value of --by the others are compared with"),
    law: str = typer.Option("auto", help="auto | power_N | precision_size | chinchilla | ... (see `bitscale fit`)"),
    bootstrap: int = typer.Option(200, help="bootstrap resamples per fit (0: no intervals)"),
    theory: Optional[Path] = typer.Option(None, help="a `bitscale theory` output directory to include"),
    scale_time: list[str] = typer.Option([], "--scale-time", help="a sweep to judge scale-time equivalence on "
                                         "(Boopathy & Fiete); repeatable"),
    double_descent: list[str] = typer.Option([], "--double-descent", help="a sweep across the interpolation "
                                             "threshold at several label-noise levels; repeatable"),
    study_resamples: Optional[int] = typer.Option(None, help="run-bootstrap resamples of those studies "
                                                  "(default: --bootstrap)"),
) -> None:
    """Write OUT/report.html: what was run, tables with intervals, law fits, findings and the 1-bit
    scaling paper's claims marked holds / does not hold / inconclusive / not tested, with the commands to reproduce."""
    from ..atomic import check_directory_target
    from ..report import ReportError, build_report
    from ..sweep.store import StoreError
    from .fit import MAX_BOOTSTRAP, check_count

    check_count("--bootstrap", bootstrap, 0, MAX_BOOTSTRAP)
    if study_resamples is not None:
        check_count("--study-resamples", study_resamples, 0, MAX_BOOTSTRAP)
    check_directory_target(out)
    try:
        result = build_report(store, out, sweep=sweep, by=by, size=size, reference=reference, law=law,
                              bootstrap=bootstrap, theory=theory, scale_time=scale_time,
                              double_descent=double_descent, study_resamples=study_resamples)
    except (ReportError, StoreError) as e:
        fail(str(e))
    counts = {}
    for c in result.claims:
        counts[c.verdict] = counts.get(c.verdict, 0) + 1
    err_console.print(f"wrote {result.html_path} ({', '.join(f'{n} {v}' for v, n in counts.items())})",
                      markup=False, highlight=False)
