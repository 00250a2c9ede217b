"""`build_report`: collect, fit, judge, plot and write DIR/report.html, DIR/report.json and the PNGs.

    result = build_report("runs/lm_sizes.db", "reports/lm", bootstrap=200)
    result.html_path, result.data   # the page and the numbers it shows (report.json)

Every file is written atomically. The page is self-contained: its figures are the PNGs beside it,
embedded as base64 data URIs; its styles are inline; it has no scripts and loads nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from ..atomic import atomic_write
from . import commands, figures, findings, html
from .collect import ReportError, Slice, SweepData, collect, finite, fmt_value
from .fits import AUTO, SweepFits, fit_sweep, to_json
from .boopathy import PAPER as BOOPATHY, boopathy_data
from .theory import TheoryData, load_theory, untested_claims

SIZE_HELP = "model.width for regression runs, model.d_model for LM runs"


@dataclass
class ReportResult:
    html_path: Path
    json_path: Path
    data: dict[str, Any]
    claims: list[findings.Claim]


def _t95(n: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, n - 1)) if n > 1 else math.nan


def _records(table: Any) -> list[dict[str, Any]]:
    out = []
    for r in table.to_dict(orient="records"):
        out.append({k: (finite(v) if isinstance(v, float) else (v.item() if hasattr(v, "item") else v))
                    for k, v in r.items()})
    return out


def _slice_table(sweep: SweepData, s: Slice) -> str:
    m = sweep.size
    train = {(r["size"], r["label"]): r for r in s.train_table.to_dict(orient="records")}
    rows = []
    for r in s.table.itertuples(index=False):
        half = _t95(r.n) * r.std / math.sqrt(r.n) if r.n > 1 else math.nan
        ci = "–" if not math.isfinite(half) else f"[{findings.num(r.mean - half)}, {findings.num(r.mean + half)}]"
        tr = train.get((r.size, r.label), {})
        rows.append([fmt_value(r.size), r.label, f"{r.N:,.0f}", r.n, findings.num(r.mean), findings.num(r.std), ci,
                     f"{findings.num(r.min)} – {findings.num(r.max)}",
                     "–" if math.isnan(r.gap) else findings.pm(r.gap, r.gap_se, "+.4g"),
                     findings.pct(r.gap_relative), findings.num(tr.get("mean"))])
    caption = (f"{sweep.metric} over seeds: mean, sample std, 95% t-interval of the mean, min – max. gap = mean minus "
               f"{sweep.reference}'s mean at the same {m}, ± Welch standard error; relative = gap / {sweep.reference}'s "
               f"mean. N: {sweep.n_column}. Last column: mean final train loss.")
    return html.table([m, sweep.by, "N", "seeds", "mean", "std", "95% CI of mean", "min – max",
                       f"gap to {sweep.reference}", "relative", "train loss"], rows, caption, text_columns=(1,))


def _claims_table(claims: list[findings.Claim], paper: str = findings.PAPER) -> str:
    rows = [[c.claim, c.scope, c.verdict, c.evidence, c.test] for c in claims]
    classes = {(j, 2): html.VERDICT_CLASS[c.verdict] for j, c in enumerate(claims)}
    return html.table(["claim", "for", "verdict", "evidence", "test"], rows,
                      f"Claims of {paper}; the rules are in docs/report.md.",
                      text_columns=(0, 1, 2, 3, 4), cell_classes=classes)


def _sweep_section(sweep: SweepData, fits: SweepFits | None, claims: list[findings.Claim], out: Path,
                   store: Path, options: dict[str, Any], fit_error: str | None) -> tuple[html.Section, dict]:
    a = figures.slug(sweep.name)
    record: dict[str, Any] = {"name": sweep.name, "kind": sweep.kind, "counts": sweep.counts, "by": sweep.by,
                              "size": sweep.size, "reference": sweep.reference, "metric": sweep.metric,
                              "n_column": sweep.n_column, "labels": sweep.labels,
                              "varying": {k: [_plain(v) for v in vs] for k, vs in sweep.varying.items()},
                              "slice_axes": sweep.slice_axes, "slices": [], "findings": []}
    top = html.Section(f"sweep-{a}", f"Sweep {sweep.name}")

    overview = findings.overview_sentences(sweep)
    axes_rows = [[k, ", ".join(fmt_value(x) for x in v)] for k, v in sweep.varying.items()]
    top.children.append(html.Section(f"{a}-run", "What was run", [
        html.bullets(overview),
        html.table(["varying config column", "values"], axes_rows, "Columns of the stored configs that vary "
                   "across the done runs.", text_columns=(0, 1))]))

    sentences: list[str] = []
    for s in sweep.slices:
        prefix = f"[{s.title}] " if s.key else ""
        sentences += [prefix + x for x in findings.gap_sentences(sweep, s)]
    if fits is not None:
        sentences += findings.fit_sentences(sweep, fits)
    elif fit_error:
        sentences.append(f"No law was fitted: {fit_error}.")
    record["findings"] = sentences
    verdicts = [f"{c.claim} ({c.scope}): {c.verdict}." for c in claims]
    top.children.append(html.Section(f"{a}-findings", "Findings", [
        html.bullets(sentences), html.paragraph("Verdicts (evidence and rules in the table at the top):"),
        html.bullets(verdicts)]))

    tables = html.Section(f"{a}-tables", f"{sweep.by} against {sweep.size}")
    plots: list[str] = []
    for i, s in enumerate(sweep.slices):
        png = out / f"{a}-compare-{i}.png"
        figures.compare_figure(s.table, png, metric=sweep.metric, reference=sweep.reference,
                               title=f"{sweep.name}: {s.title}")
        plots.append(png.name)
        tables.body += [f"<h4>{html.esc(s.title)}</h4>", _slice_table(sweep, s),
                        html.figure(figures.data_uri(png), f"Figure: {sweep.name}, {s.title}. Left: mean {sweep.metric} "
                                    f"against N (band: min – max over seeds). Right: gap to {sweep.reference} "
                                    "(± 1 Welch s.e.).", f"comparison plot {sweep.name} {s.title}")]
        record["slices"].append({"key": {k: _plain(v) for k, v in s.key.items()}, "table": _records(s.table),
                                 "train_table": _records(s.train_table)})
    top.children.append(tables)

    law = html.Section(f"{a}-law", "Scaling-law fit")
    if fits is None:
        law.body.append(html.paragraph(f"No law was fitted: {fit_error}."))
    else:
        law.body.append(html.paragraph(f"Law {fits.law}: {fits.main[0].formula if fits.main else ''}. "
                                       f"Chosen because {fits.reason}."))
        for i, fs in enumerate(fits.main + [p for p in fits.power if p not in fits.main]):
            rows = []
            for an in fs.analyses:
                for k, v in an.fit.params.items():
                    lo, hi = (an.boot.intervals.get(k, (math.nan, math.nan)) if an.boot else (math.nan, math.nan))
                    rows.append([an.label, k, findings.num(v), f"[{findings.num(lo)}, {findings.num(hi)}]",
                                 an.fit.n_points, findings.pct(an.holdout_error)])
            for label, err in fs.errors.items():
                rows.append([label, "fit failed", err, "", "", ""])
            title = f"{fs.law}" + (f" ({fs.title})" if fs.key else "") + (" — joint over variants" if fs.joint else " — per variant")
            law.body += [f"<h4>{html.esc(title)}</h4>", html.table(
                ["fit", "parameter", "estimate", "95% bootstrap interval", "points", "held-out error"], rows,
                f"{fs.formula}. {fits.bootstrap} bootstrap resamples of the points; held-out error: mean |relative "
                "error| predicting the points at the largest C (or N) from a fit without them.", text_columns=(0, 1))]
            png = out / f"{a}-fit-{i}.png"
            if figures.fit_figure(fs, png, f"{sweep.name}: {fs.law}" + (f" ({fs.title})" if fs.key else "")):
                plots.append(png.name)
                law.body.append(html.figure(figures.data_uri(png), f"Figure: {fs.law} fit{' (' + fs.title + ')' if fs.key else ''}: "
                                            "points, fitted curves with bootstrap bands, held-out points open.",
                                            f"law fit {fs.law}"))
        record["fits"] = to_json(fits)
    top.children.append(law)

    toml_path = out / f"{a}.toml"
    toml_text = commands.sweep_toml(sweep.config)
    atomic_write(toml_path, lambda tmp: Path(tmp).write_text(toml_text))
    cmds = [commands.sweep_command(store, toml_path)]
    cmds.append(commands.compare_command(store, sweep.name, sweep.by, sweep.size, sweep.reference))
    if fits is not None and fits.main:
        cmds.append(commands.fit_command(store, sweep.name, fits.law, fits.main[0].joint, sweep.by, sweep.n_column,
                                         fits.bootstrap))
    if fits is not None and fits.power and fits.power[0] is not fits.main[0]:
        cmds.append(commands.fit_command(store, sweep.name, fits.power[0].law, False, sweep.by, sweep.n_column,
                                         fits.bootstrap))
    cmds.append(commands.report_command(store, out, options))
    notes = [f"The sweep file is rebuilt from the store's sweeps table and written beside this page as {toml_path.name} "
             "(loading it gives the same run ids; on the same store the sweep command trains nothing new). "
             "Without it: bitscale sweep <sweep file> --store " + str(store) + "."]
    if sweep.slice_axes:
        notes.append(f"bitscale compare and bitscale fit pool the runs of all slices; this report splits them by "
                     f"{', '.join(sweep.slice_axes)}, so only the report command reproduces the per-slice numbers.")
    top.children.append(html.Section(f"{a}-reproduce", "Reproduce", [
        html.code("\n".join(cmds)), html.bullets(notes), html.paragraph(f"Stored sweep config ({toml_path.name}):"),
        html.code(toml_text)]))
    record.update(commands=cmds, plots=plots, claims=[c.to_dict() for c in claims])
    return top, record


def _plain(v: Any) -> Any:
    if hasattr(v, "item") and not isinstance(v, (list, dict, str)):
        return v.item()
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


def build_report(store: str | Path, out: str | Path, *, sweep: str | None = None, by: str = "model.quant",
                 size: str | None = None, reference: str = "fp32", law: str = AUTO, bootstrap: int = 200,
                 theory: str | Path | None = None, scale_time: Sequence[str] = (),
                 double_descent: Sequence[str] = (), study_resamples: int | None = None) -> ReportResult:
    """Write out/report.html, out/report.json and the figures for the sweeps of `store`; see the module
    docstring. `scale_time` / `double_descent` name the sweeps to study for Boopathy & Fiete's claims
    (report/boopathy.py), with `study_resamples` run-bootstrap resamples (default: `bootstrap`); the 1-bit
    paper's claims are not judged on those. ReportError (one line) for
    any input the user can fix."""
    from ..laws import LawDataError, get_law

    store, out = Path(store).expanduser(), Path(out).expanduser()
    if bootstrap < 0:
        raise ReportError(f"--bootstrap: expected a count >= 0, got {bootstrap}")
    if law != AUTO:
        try:
            get_law(law)
        except (KeyError, ValueError, LawDataError) as e:
            raise ReportError(" ".join(str(e).strip("'\"").split())) from None
    theory_data: TheoryData | None = load_theory(theory) if theory is not None else None
    sweeps = collect(store, sweep=sweep, by=by, size=size, reference=reference)
    out.mkdir(parents=True, exist_ok=True)
    options = {"sweep": sweep, "by": by, "size": size, "reference": reference, "law": law, "bootstrap": bootstrap,
               "theory": theory, "scale_time": list(scale_time), "double_descent": list(double_descent),
               "study_resamples": study_resamples}
    studied = set(scale_time) | set(double_descent)
    unknown = sorted(studied - {s.name for s in sweeps})
    if unknown:
        raise ReportError(f"--scale-time / --double-descent: no sweep {unknown[0]!r} with done runs in {store} "
                          f"(have: {', '.join(s.name for s in sweeps)})")

    all_claims: list[findings.Claim] = []
    sections, records = [], []
    for sw in sweeps:
        fits, fit_error = None, None
        if sw.name in studied:  # its laws are the study's (scale-time, unified), in the Boopathy section
            fit_error = "this sweep is a scale-time or double-descent study; its fits are in that section"
        else:
            try:
                fits = fit_sweep(sw, law, bootstrap)
            except (LawDataError, ValueError) as e:
                fit_error = " ".join(str(e).split())
        claims = [] if sw.name in studied else findings.sweep_claims(sw, fits)
        all_claims += [findings.Claim(c.claim, f"{sw.name}: {c.scope}", c.verdict, c.evidence, c.test) for c in claims]
        section, record = _sweep_section(sw, fits, claims, out, store, options, fit_error)
        sections.append(section)
        records.append(record)

    theory_claims = theory_data.claims if theory_data else untested_claims(
        "a sweep stores final losses, not the two networks' outputs or kernels; pass --theory DIR "
        "(the output of `bitscale theory`) to test these")
    all_claims += theory_claims
    if theory_data is not None:
        body = [html.bullets(theory_data.sentences or ["The summary holds no fitted exponents."]),
                _claims_table(theory_data.claims)]
        for img in theory_data.images:
            body.append(html.figure(figures.data_uri(img), f"Figure: {img.name} from {theory_data.path}", img.stem))
        body.append(html.code(f"bitscale theory <theory config> --out {commands.quote(theory_data.path)}"))
        sections.append(html.Section("theory", "Theory (NTK study)", body))

    boopathy = boopathy_data(store, out, scale_time=scale_time, double_descent=double_descent,
                             resamples=bootstrap if study_resamples is None else study_resamples)
    if studied:
        body = [html.bullets(boopathy.sentences)]
        for img in boopathy.images:
            body.append(html.figure(figures.data_uri(img), f"Figure: {img.stem}", img.stem))
        body.append(html.code("\n".join(boopathy.commands)))
        sections.append(html.Section("boopathy", f"Scale-time equivalence and double descent ({BOOPATHY})", body))

    verdict_section = html.Section("verdicts", "The papers' claims: verdicts", [
        html.paragraph(f"Each claim of {findings.PAPER} and of {BOOPATHY}, judged on this data by the rule in the "
                       "test column (docs/report.md). 'not tested by this data' means the data cannot decide it."),
        _claims_table(all_claims), _claims_table(boopathy.claims, BOOPATHY)])
    title = f"bitscale report: {store.name}" + (f", sweep {sweep}" if sweep else "")
    intro = [html.paragraph(f"Store {store} — {len(sweeps)} sweep(s): {', '.join(s.name for s in sweeps)}. "
                            "Every number on this page is computed from the store; the figures are embedded.",
                            "note")]
    page = html.page(title, intro, [verdict_section, *sections])
    data = {"store": str(store), "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items()},
            "sweeps": records, "claims": [c.to_dict() for c in all_claims],
            "boopathy": {"claims": [c.to_dict() for c in boopathy.claims], "sentences": boopathy.sentences,
                         "studies": boopathy.records, "commands": boopathy.commands},
            "theory": None if theory_data is None else {"path": str(theory_data.path),
                                                        "sentences": theory_data.sentences}}
    json_path, html_path = out / "report.json", out / "report.html"
    text = json.dumps(data, indent=1, allow_nan=False, default=str) + "\n"
    atomic_write(json_path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    atomic_write(html_path, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return ReportResult(html_path, json_path, data, all_claims + boopathy.claims)
