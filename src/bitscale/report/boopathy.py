"""The claims of Boopathy & Fiete 2024 ("Unified Neural Network Scaling Laws and Scale-time Equivalence",
arXiv 2409.05782) as verdicts, from the sweeps of a store named as scale-time or double-descent studies.

    data = boopathy_data(store, out, scale_time=["demo-scale-time"], double_descent=["demo-double-descent"])
    data.claims, data.sentences, data.images   # verdicts, findings, the PNGs written into out

Rules (docs/report.md gives them in full):
- size and time are equivalent: `laws.scale_time.study`'s verdict per precision (its RULE);
- small models trained longer predict large ones: the 95% interval of the mean |relative error| of the
  largest size's curve, predicted from the smaller sizes, lies below PREDICT_LIMIT -> holds, above -> does
  not hold;
- double descent appears / a larger model does not always help: `laws.double_descent.study`'s verdict
  per precision and noise level (a peak is a range of sizes over which a larger model is worse);
- overparameterized models are more sensitive to label noise: the peak grows with noise (the same study);
- one law of size, time, data and noise describes the curves: both held-out errors of the unified law
  (largest size; middle noise level) at most PREDICT_LIMIT with no parameter at a bound -> holds; a
  parameter at a bound -> inconclusive; otherwise does not hold;
- larger models need less data: the double-descent study's delta (n* ∝ p^-delta) where the sweep varies
  data.n_train: its interval above 0 -> holds, below 0 -> does not hold; not tested otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .collect import ReportError
from .findings import FAILS, HOLDS, UNDECIDED, UNTESTED, Claim

PAPER = "Boopathy & Fiete 2024 (arXiv 2409.05782)"
PREDICT_LIMIT = 0.10
CLAIM_EQUIV = "Scaling a network's size is equivalent to scaling its training time proportionally"
CLAIM_PREDICT = "Small models trained longer predict the performance of large ones"
CLAIM_DD = "Double descent appears: over a range of sizes a larger model does worse"
CLAIM_NOISE = "Overparameterized models are more sensitive to label noise (the peak grows with noise)"
CLAIM_LAW = "One law of size, training time, data and noise (with double descent) describes the curves"
CLAIM_DATA = "Larger models need less data to generalize"
VERDICTS = {"holds": HOLDS, "does not hold": FAILS, "inconclusive": UNDECIDED}


@dataclass
class BoopathyData:
    claims: list[Claim] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)
    records: dict[str, Any] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)


def _metric(store: Path, sweep: str) -> str:
    """The curve a study reads: the error rate where the runs record one (classification), else the loss."""
    from ..sweep.store import load_metrics

    names = set(load_metrics(store, sweep)["name"])
    return "error" if "error" in names else "loss"


def _datasets(store: Path, sweep: str, variables: dict[str, str]) -> tuple[str, list]:
    from ..laws import LawDataError, from_store
    from ..sweep.store import StoreError

    metric = _metric(store, sweep)
    try:
        return metric, from_store(store, sweep=sweep, by="model.quant", curves=True, metric=metric, variables=variables)
    except (LawDataError, StoreError, ValueError) as e:
        raise ReportError(f"sweep {sweep!r}: {' '.join(str(e).split())}") from None


def _json(value: Any) -> Any:
    """JSON-able copy of a study record: numpy numbers as Python ones, NaN and inf as None (the page's
    JSON is strict)."""
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _pct(lo: float, hi: float) -> str:
    return f"[{lo:.1%}, {hi:.1%}]"


def _scale_time(store: Path, sweep: str, out: Path, resamples: int, data: BoopathyData) -> None:
    from ..laws.plot import plot_scale_time
    from ..laws.scale_time import RULE, study, study_dict

    metric, datasets = _datasets(store, sweep, {"p": "n_params", "t": "step"})
    t_min = max(float(d.x["t"].max()) for d in datasets) / 10  # the first tenth of training is a transient
    try:
        studies = [study(d, resamples=resamples, t_min=t_min) for d in datasets]
    except ValueError as e:
        raise ReportError(f"sweep {sweep!r}: {' '.join(str(e).split())}") from None
    png = out / f"scale-time-{sweep}.png"
    plot_scale_time([s.data for s in studies], studies, png, ylabel=f"test {metric}", title=sweep)
    data.images.append(png)
    data.records[f"scale-time:{sweep}"] = _json([study_dict(s) for s in studies])
    data.commands.append(f"bitscale scale-time --store {store} --sweep {sweep} --metric {metric} --t-min {t_min:g} "
                         f"--resamples {resamples}")
    for s in studies:
        scope = f"{sweep}: {s.label.split('=', 1)[-1]}"
        g_lo, g_hi = s.intervals.get("gamma", (math.nan, math.nan))
        r_lo, r_hi = s.intervals.get("ratio", (math.nan, math.nan))
        data.claims.append(Claim(CLAIM_EQUIV, scope, VERDICTS[s.verdict],
                                 f"t* ∝ p^-gamma: gamma = {s.gamma:.2f} [{g_lo:.2f}, {g_hi:.2f}] (1 under equivalence); "
                                 f"collapse ratio {s.collapse.ratio:.2f} [{r_lo:.2f}, {r_hi:.2f}]; {s.reason}", RULE))
        data.sentences.append(f"{scope}: a {max(s.sizes) / min(s.sizes):.0f}x larger model reaches a given {metric} "
                              f"{(max(s.sizes) / min(s.sizes)) ** s.gamma:.1f}x sooner (gamma {s.gamma:.2f}).")
        pr = s.prediction
        if pr is None:
            data.claims.append(Claim(CLAIM_PREDICT, scope, UNTESTED, f"{len(s.sizes)} sizes", "needs at least 3 sizes"))
            continue
        lo, hi = s.intervals.get("prediction_error", (math.nan, math.nan))
        verdict = HOLDS if hi <= PREDICT_LIMIT else FAILS if lo > PREDICT_LIMIT else UNDECIDED
        if s.collapse.joint.at_bound:
            verdict = UNDECIDED
        data.claims.append(Claim(CLAIM_PREDICT, scope, verdict,
                                 f"the largest model's curve (p = {pr.size:,.0f}) predicted from the smaller ones: mean "
                                 f"|relative error| {pr.mean_abs_relative_error:.1%} {_pct(lo, hi)}"
                                 + ("; the fit has a parameter at a bound" if s.collapse.joint.at_bound else ""),
                                 f"the 95% interval below {PREDICT_LIMIT:.0%} → holds; above → does not hold"))


def _double_descent(store: Path, sweep: str, out: Path, resamples: int, data: BoopathyData) -> None:
    from ..laws.double_descent import RULE, STORE_COLUMNS, compare_sharpness, study, study_dict
    from ..laws.plot import plot_double_descent

    metric, datasets = _datasets(store, sweep, STORE_COLUMNS)
    try:
        studies = [study(d, resamples=resamples) for d in datasets]
    except ValueError as e:
        raise ReportError(f"sweep {sweep!r}: {' '.join(str(e).split())}") from None
    png = out / f"double-descent-{sweep}.png"
    plot_double_descent(studies, png, ylabel=f"test {metric}", title=sweep)
    data.images.append(png)
    reference = next((s for s in studies if s.label.endswith("=fp32")), studies[0])
    sharp = {s.label: compare_sharpness(reference, s) for s in studies if s is not reference}
    data.records[f"double-descent:{sweep}"] = _json([study_dict(s, sharp.get(s.label)) for s in studies])
    data.commands.append(f"bitscale double-descent --store {store} --sweep {sweep} --metric {metric} "
                         f"--resamples {resamples}")
    ns = {len(set(d.x["n"])) for d in datasets}
    for s in studies:
        name = s.label.split("=", 1)[-1]
        for z in s.noises:
            verdict, reason = s.verdicts[f"appears@{z:g}"]
            pk = s.peaks[z]
            where = "" if pk.size is None else f"peak at p = {pk.size:,.0f}; "
            data.claims.append(Claim(CLAIM_DD, f"{sweep}: {name}, label noise {z:g}", VERDICTS[verdict],
                                     where + reason, RULE.split(";")[0]))
        verdict, reason = s.verdicts["grows"]
        data.claims.append(Claim(CLAIM_NOISE, f"{sweep}: {name}", VERDICTS[verdict], reason,
                                 "the interval of the prominence difference above 0 → holds; below 0 → does not hold"))
        hs, hn = s.holdout_size, s.holdout_noise
        errors = [h.mean_abs_relative_error for h in (hs, hn) if h is not None]
        pinned = ", ".join(f"{k} at its {v} bound" for k, v in s.fit.at_bound.items())
        verdict = (UNDECIDED if pinned or len(errors) < 2 else HOLDS if max(errors) <= PREDICT_LIMIT else FAILS)
        shown = "; ".join(x for x in (
            None if hs is None else f"largest p held out: {hs.mean_abs_relative_error:.1%}",
            None if hn is None else f"middle noise held out: {hn.mean_abs_relative_error:.1%}",
            pinned or None) if x) or "no held-out check possible (fewer than 4 sizes and 3 noise levels)"
        data.claims.append(Claim(CLAIM_LAW, f"{sweep}: {name}", verdict, f"{s.fit.law}: {shown}",
                                 f"both held-out mean |relative errors| at most {PREDICT_LIMIT:.0%} and no parameter "
                                 "at a bound → holds"))
        w_lo, w_hi = s.intervals["w"]
        data.sentences.append(f"{sweep}, {name}: peak width w = {s.fit.params['w']:.2f} [{w_lo:.2f}, {w_hi:.2f}] in "
                              f"ln(p·t); prominence by noise: "
                              + ", ".join(f"{z:g}: {s.peaks[z].prominence:.3f}" for z in s.noises) + ".")
    for label, (verdict, reason) in sharp.items():
        data.sentences.append(f"{sweep}: the {label.split('=', 1)[-1]} peak against "
                              f"{reference.label.split('=', 1)[-1]}'s: {verdict} ({reason}).")
    for s in studies:
        if "less_data" in s.verdicts:
            verdict, reason = s.verdicts["less_data"]
            data.claims.append(Claim(CLAIM_DATA, f"{sweep}: {s.label.split('=', 1)[-1]}", VERDICTS[verdict], reason,
                                     "the interval of delta (n* ∝ p^-delta) above 0 → holds; below 0 → does not hold"))
    if ns == {1}:
        data.claims.append(Claim(CLAIM_DATA, sweep, UNTESTED, "every run of the sweep has one training-set size",
                                 "needs a study that varies data.n_train"))


def boopathy_data(store: str | Path, out: str | Path, *, scale_time: Sequence[str] = (),
                  double_descent: Sequence[str] = (), resamples: int = 100) -> BoopathyData:
    """Run the named studies on `store`, write their plots into `out`, and give the claims (module docstring)."""
    store, out = Path(store), Path(out)
    data = BoopathyData()
    for sweep in scale_time:
        _scale_time(store, sweep, out, resamples, data)
    for sweep in double_descent:
        _double_descent(store, sweep, out, resamples, data)
    if not scale_time:
        data.claims += [Claim(c, "all", UNTESTED, "no sweep was named a scale-time study", "needs --scale-time SWEEP")
                        for c in (CLAIM_EQUIV, CLAIM_PREDICT)]
    if not double_descent:
        data.claims += [Claim(c, "all", UNTESTED, "no sweep was named a double-descent study",
                              "needs --double-descent SWEEP") for c in (CLAIM_DD, CLAIM_NOISE, CLAIM_LAW, CLAIM_DATA)]
    return data
