"""When does low precision catch up? Crossing size, gap, matching size and the memory-matched answer.

Each precision label q has a fitted loss curve L_q(N): a label of a joint law with a categorical
precision (`precision_power`, `precision_multiplier`), or one group of a `power_N --by` fit. Against a
reference label r (full precision by default) this module reads off:

- crossing: an N in [N_LO, N_HI] = [1e3, 1e15] where the gap g(N) = L_q(N) - L_r(N) changes sign,
  found on a log grid of N and refined by linear interpolation of g in log N. Two power laws with
  floors can cross twice; the crossing taken is the one nearest (in log N) to the sizes the curves were
  fitted on (inside them if there is one), since a crossing far outside the data is the least
  constrained (a resample whose curves also meet again at N = 1e3 keeps the crossing the data
  measured). It "catches up" when g goes from > 0 to <= 0. No sign change is an answer: q stays behind (g > 0 throughout,
  recorded as +inf) or ahead (g < 0 throughout, recorded as 0).
- gap_at: g(N) and the ratio L_q(N) / L_r(N) at the sizes asked for.
- matching_N: the q-size M whose loss equals the reference's at N, L_q(M) = L_r(N): the smallest M in
  [1, 1e30] with L_q(M) <= L_r(N), interpolated in log M; +inf (infeasible) when L_q stays above the
  target, i.e. the target is at or below q's floor.
- memory_matched: the same comparison at equal weight memory. With storage bits per weight b_q and b_r
  (each label's median of the data variable `bits`), a reference model of N parameters takes
  N * b_r / 8 bytes and the q-model of the same bytes has N_q = N * b_r / b_q parameters; the answer is
  g = L_q(N_q) - L_r(N) and who wins: q when the whole interval of g is below 0, the reference when it
  is above, "undecided" when it straddles 0 (or "q (no interval)" without a bootstrap).

Intervals: every quantity is computed for every bootstrap resample of the parameters and the interval
is the central `level` percentile range (nearest rank when a value is infinite, so a crossing that some
resamples never reach gives an upper bound of inf). For a joint fit one resample gives both curves;
for separate fits (`--by`) resample i of q is paired with resample i of r, which is valid because the
two bootstraps are independent.

With a free exponent per label, resampled curves extrapolated four or more decades below the smallest
fitted size often meet there (at 1% noise, 8 sizes in [1e7, 1e10], two laws parallel on the log-log
plot cross below 1e7 in about half the resamples); `outside_data_fraction` counts the resamples whose
crossing lies outside the fitted sizes, and tying the exponent (`--share alpha`) removes those
crossings when the exponents are in fact equal.

Trust: an answer lists in `rests_on` the parameters at a bound that its two curves use, and is marked
`unreliable` when either curve's bootstrap lost more than 20% of its resamples. Such an answer is
printed with that warning, never as a finding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .data import LawData, LawDataError
from .derived import Answer, _answer, full_precision_label, percentile_interval
from .forms import to_tensors

N_LO, N_HI = 1e3, 1e15
M_LO, M_HI = 1.0, 1e30
GRID = 1201          # log grid points over [N_LO, N_HI]: 0.01 decade apart
MATCH_GRID = 3001    # over [M_LO, M_HI]


@dataclass
class Curve:
    """One label's L(N): `values(N)` at the point estimate (m,), `sample_values(N)` per resample (B, m)."""

    label: str
    values: Callable[[np.ndarray], np.ndarray]
    sample_values: Callable[[np.ndarray], np.ndarray] | None
    bits: float | None = None
    at_bound: dict[str, str] = field(default_factory=dict)
    reliable: bool = True
    level: float = 0.95
    fixed: dict[str, float] = field(default_factory=dict)   # other variables held fixed (e.g. D)
    n_range: tuple[float, float] = (N_LO, N_HI)             # the sizes the curve was fitted on


def _label_value(label: str) -> str:
    """'model.quant=fp32' -> 'fp32' (a --by group's label); other labels unchanged."""
    return label.split("=", 1)[1] if "=" in label else label


def _law_curve(fit: Any, boot: Any, label: str | None, data: LawData, display: str) -> Curve:
    """The curve of `label` (None for a law without a categorical variable) from a fit and its bootstrap."""
    law = fit.form
    cats = fit.categories.get(law.categorical, []) if law.categorical else []
    names = law.flat_names(cats)
    point = np.array([[fit.theta[n] for n in names]], dtype=np.float64)
    flat = None
    if boot is not None and getattr(boot, "flat", None) is not None and len(boot.flat):
        if tuple(boot.flat_names) != tuple(names):
            raise ValueError(f"bootstrap columns {boot.flat_names} do not match the fit's {names}")
        flat = np.asarray(boot.flat, dtype=np.float64)
    fixed = {v: float(np.median(data.x[v])) for v in law.variables
             if v not in ("N", law.categorical) and v in data.x}
    missing = [v for v in law.variables if v not in ("N", law.categorical) and v not in fixed]
    if missing:
        raise LawDataError(f"catch-up: law '{law.name}' needs {', '.join(missing)} to draw L(N)")

    def evaluate(rows: np.ndarray, N: np.ndarray) -> np.ndarray:
        x: dict[str, np.ndarray] = {v: np.full(len(N), value) for v, value in fixed.items()}
        x["N"] = np.asarray(N, dtype=np.float64)
        if law.categorical:
            x[law.categorical] = np.array([label] * len(N), dtype=object)
        with torch.no_grad():
            log_l = law.log_loss(law.split(torch.from_numpy(rows), len(cats)), to_tensors(law, x, cats))
        return np.exp(log_l.numpy())

    mine = {k: v for k, v in fit.at_bound.items()
            if "[" not in k or (label is not None and k.endswith(f"[{label}]"))}
    bits = None
    if "bits" in data.x:
        rows = np.ones(data.n, dtype=bool) if label is None else \
            np.array([str(q) == label for q in data.x[law.categorical]])
        values = np.asarray(data.x["bits"], dtype=float)[rows]
        values = values[np.isfinite(values)]
        bits = float(np.median(values)) if len(values) else None
    return Curve(display, lambda N: evaluate(point, N)[0],
                 None if flat is None else (lambda N: evaluate(flat, N)), bits, mine,
                 True if boot is None else bool(boot.reliable), boot.level if boot is not None else 0.95, fixed,
                 (float(np.min(data.x["N"])), float(np.max(data.x["N"]))))


def curves_of(analysis: Any) -> list[Curve]:
    """One Curve per precision label of a joint fit with a categorical precision (empty otherwise)."""
    law = analysis.fit.form
    if not law.categorical or law.categorical not in analysis.fit.categories:
        return []
    return [_law_curve(analysis.fit, analysis.boot, q, analysis.data, q)
            for q in analysis.fit.categories[law.categorical]]


def curve_of_group(analysis: Any) -> Curve:
    """The curve of a one-variable fit (a `power_N --by` group), labelled by its group value."""
    return _law_curve(analysis.fit, analysis.boot, None, analysis.data, _label_value(analysis.label))


def reference_label(labels: Sequence[str], reference: str | None) -> str:
    """`reference` if given (LawDataError naming --reference if absent), else the first full-precision
    label (FULL_PRECISION), else the first label."""
    if reference is not None:
        if reference not in labels:
            raise LawDataError(f"--reference: label {reference!r} is not among the labels ({', '.join(labels)})")
        return reference
    return full_precision_label(list(labels))


# -- the answers ----------------------------------------------------------------------------------

def _paired(q: Curve, r: Curve, N_q: np.ndarray, N_r: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-resample (L_q(N_q), L_r(N_r)), (B, m) each, resample i with resample i; None without samples."""
    if q.sample_values is None or r.sample_values is None:
        return None
    a, b = q.sample_values(N_q), r.sample_values(N_r)
    k = min(len(a), len(b))
    return (a[:k], b[:k]) if k >= 2 else None


def _crossing_at(log_n: np.ndarray, gap: np.ndarray, span: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Per row of gap (B, m): N of the sign change nearest the data's range `span` (interpolated in log
    N; the smallest such N on a tie), +inf where the gap stays > 0, 0 where it stays < 0; and the
    direction (+1 catches up, -1 falls behind, 0 none)."""
    sign = np.sign(gap)
    change = (sign[:, :-1] * sign[:, 1:] <= 0) & (sign[:, :-1] != 0)
    has = change.any(1)
    lo, hi = np.log(span[0]), np.log(span[1])
    mid = log_n[:-1]
    distance = np.where(mid < lo, lo - mid, np.where(mid > hi, mid - hi, 0.0))   # 0 inside the data
    i = np.where(has, np.where(change, distance[None, :], np.inf).argmin(1), 0)
    rows = np.arange(len(gap))
    g0, g1 = gap[rows, i], gap[rows, i + 1]
    with np.errstate(all="ignore"):   # rows without a crossing compute garbage here; np.where drops it
        t = np.where(has & (g0 != g1), g0 / (g0 - g1), 0.0)
        n = np.exp(log_n[i] + t * (log_n[i + 1] - log_n[i]))
    behind = gap[:, 0] > 0
    n = np.where(has, n, np.where(behind, np.inf, 0.0))
    direction = np.where(has, np.where(g0 > 0, 1, -1), 0)
    return n, direction


def crossing(q: Curve, r: Curve) -> dict[str, Any]:
    """crossing_N (None when the point curves do not cross in [N_LO, N_HI]), its direction, interval and
    the fraction of resamples without a crossing in that range."""
    grid = np.geomspace(N_LO, N_HI, GRID)
    log_n = np.log(grid)
    span = (min(q.n_range[0], r.n_range[0]), max(q.n_range[1], r.n_range[1]))
    n, direction = _crossing_at(log_n, (q.values(grid) - r.values(grid))[None], span)
    out: dict[str, Any] = {"crossing_N": float(n[0]) if 0 < n[0] < np.inf else None}
    if out["crossing_N"] is not None:
        out["crossing_inside_data"] = bool(span[0] <= n[0] <= span[1])
    if direction[0] == 0:
        out["crossing"] = (f"none in [{N_LO:.0e}, {N_HI:.0e}]: {q.label} "
                           + ("behind throughout" if n[0] == np.inf else "ahead throughout"))
    else:
        out["crossing"] = f"{q.label} catches up" if direction[0] > 0 else f"{q.label} falls behind"
    pair = _paired(q, r, grid, grid)
    if pair is not None:
        ns, _ = _crossing_at(log_n, pair[0] - pair[1], span)
        lo, hi = percentile_interval(ns, q.level)
        out["crossing_N_interval"] = [float(lo), float(hi)]
        crossed = (ns > 0) & np.isfinite(ns)
        out["no_crossing_fraction"] = float(np.mean(~crossed))
        # crossings the data did not see: found only by extrapolating the curves past the fitted sizes
        out["outside_data_fraction"] = float(np.mean(crossed & ((ns < span[0]) | (ns > span[1]))))
    return out


def gap_at(q: Curve, r: Curve, sizes: Sequence[float]) -> dict[str, dict[str, Any]]:
    """{N: gap, ratio and their intervals} at each size N."""
    N = np.asarray(sizes, dtype=float)
    lq, lr = q.values(N), r.values(N)
    pair = _paired(q, r, N, N)
    out = {}
    for j, n in enumerate(N):
        entry: dict[str, Any] = {"gap": float(lq[j] - lr[j]), "ratio": float(lq[j] / lr[j])}
        if pair is not None:
            entry["gap_interval"] = [float(v) for v in percentile_interval(pair[0][:, j] - pair[1][:, j], q.level)]
            entry["ratio_interval"] = [float(v) for v in percentile_interval(pair[0][:, j] / pair[1][:, j], q.level)]
        out[_key(n)] = entry
    return out


def _match(curve_values: np.ndarray, log_m: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per row (B, G) of L_q on the M grid and target (B,): the smallest M with L_q(M) <= target."""
    below = curve_values <= target[:, None]
    has = below.any(1)
    j = np.where(has, below.argmax(1), 0)
    rows = np.arange(len(curve_values))
    prev = np.maximum(j - 1, 0)
    l0, l1 = curve_values[rows, prev], curve_values[rows, j]
    with np.errstate(all="ignore"):
        t = np.where((j > 0) & (l0 != l1), (l0 - target) / (l0 - l1), 1.0)
    m = np.exp(log_m[prev] + t * (log_m[j] - log_m[prev]))
    return np.where(has, np.where(j == 0, M_LO, m), np.inf)


def matching_n(q: Curve, r: Curve, sizes: Sequence[float]) -> dict[str, dict[str, Any]]:
    """{N: the q-size whose loss equals the reference's at N, interval, infeasible fraction}."""
    grid = np.geomspace(M_LO, M_HI, MATCH_GRID)
    log_m = np.log(grid)
    N = np.asarray(sizes, dtype=float)
    point = _match(np.repeat(q.values(grid)[None], len(N), 0), log_m, r.values(N))
    pair = _paired(q, r, grid, N)
    out = {}
    for j, n in enumerate(N):
        entry: dict[str, Any] = {"N": float(point[j]), "feasible": bool(np.isfinite(point[j]))}
        if pair is not None:
            ms = _match(pair[0], log_m, pair[1][:, j])
            entry["N_interval"] = [float(v) for v in percentile_interval(ms, q.level)]
            entry["infeasible_fraction"] = float(np.mean(np.isinf(ms)))
        out[_key(n)] = entry
    return out


def memory_matched(q: Curve, r: Curve, sizes: Sequence[float]) -> dict[str, Any]:
    """{N_ref: bytes, N_q, both losses, gap and the winner at equal weight memory}; a note when a label
    has no storage bits per weight."""
    if q.bits is None or r.bits is None:
        lacking = ", ".join(c.label for c in (q, r) if c.bits is None)
        return {"note": f"no storage bits per weight for {lacking} (give a bits= column)"}
    N = np.asarray(sizes, dtype=float)
    N_q = N * r.bits / q.bits
    lq, lr = q.values(N_q), r.values(N)
    pair = _paired(q, r, N_q, N)
    out: dict[str, Any] = {"bits": {q.label: q.bits, r.label: r.bits}}
    for j, n in enumerate(N):
        gap = float(lq[j] - lr[j])
        entry: dict[str, Any] = {"bytes": float(n * r.bits / 8), "N_ref": float(n), "N_q": float(N_q[j]),
                                 "loss_q": float(lq[j]), "loss_ref": float(lr[j]), "gap": gap}
        if pair is not None:
            lo, hi = percentile_interval(pair[0][:, j] - pair[1][:, j], q.level)
            entry["gap_interval"] = [float(lo), float(hi)]
            entry["winner"] = q.label if hi < 0 else r.label if lo > 0 else "undecided"
        else:
            entry["winner"] = f"{q.label if gap < 0 else r.label} (no interval)"
        out[_key(n)] = entry
    return out


def _key(n: float) -> str:
    return f"{n:.3g}"


def compare(q: Curve, r: Curve, sizes: Sequence[float]) -> Answer:
    """Every catch-up answer of q against the reference r, as one JSON-able Answer."""
    rests_on = sorted({*q.at_bound, *r.at_bound})
    out = _answer(**crossing(q, r))
    out["gap_at"] = gap_at(q, r, sizes)
    out["matching_N"] = matching_n(q, r, sizes)
    out["memory_matched"] = memory_matched(q, r, sizes)
    if q.fixed:
        out["at"] = dict(q.fixed)
    out["rests_on"] = rests_on
    out["unreliable"] = not (q.reliable and r.reliable)
    return _clean(out)


def _clean(value: Any) -> Any:
    """Non-finite floats -> None, recursively (JSON has no inf)."""
    if isinstance(value, dict):
        return type(value)({k: _clean(v) for k, v in value.items()})   # an Answer stays an Answer
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def catch_up(curves: Sequence[Curve], *, reference: str | None = None,
             sizes: Sequence[float] | None = None, default_sizes: Sequence[float] = ()) -> dict[str, Answer]:
    """{"<q> vs <ref>": Answer} for every label q but the reference (see the module docstring)."""
    if len(curves) < 2:
        return {}
    labels = [c.label for c in curves]
    ref_label = reference_label(labels, reference)
    ref = curves[labels.index(ref_label)]
    at = list(sizes) if sizes else list(default_sizes)
    return {f"{c.label} vs {ref.label}": compare(c, ref, at) for c in curves if c.label != ref.label}


def describe(key: str, answer: dict[str, Any]) -> list[str]:
    """Readable lines for one catch-up answer (what `bitscale fit` prints)."""
    def num(v: Any) -> str:
        return "inf" if v is None else f"{v:.3g}"

    def interval(pair: Any) -> str:
        return "" if pair is None else f" [{num(pair[0])}, {num(pair[1])}]"

    warn = []
    if answer.get("rests_on"):
        warn.append(f"rests on {', '.join(answer['rests_on'])} at a bound")
    if answer.get("unreliable"):
        warn.append("bootstrap unreliable")
    caveat = f"  (not a finding: {'; '.join(warn)})" if warn else ""
    lines = [f"{key}{caveat}"]
    cross = answer.get("crossing_N")
    text = f"  crossing: {answer.get('crossing')}" + (f" at N = {num(cross)}" if cross is not None else "")
    if cross is not None and not answer.get("crossing_inside_data", True):
        text += " (outside the fitted sizes: an extrapolation)"
    if "crossing_N_interval" in answer:
        text += f", interval{interval(answer['crossing_N_interval'])}, no crossing in " \
                f"{100 * answer['no_crossing_fraction']:.0f}% of resamples, a crossing outside the fitted sizes " \
                f"in {100 * answer['outside_data_fraction']:.0f}%"
    lines.append(text)
    for n, g in answer.get("gap_at", {}).items():
        lines.append(f"  gap at N = {n}: {g['gap']:+.4g}{interval(g.get('gap_interval'))} "
                     f"(ratio {g['ratio']:.4g}{interval(g.get('ratio_interval'))})")
    for n, m in answer.get("matching_N", {}).items():
        lines.append(f"  matching_N at N = {n}: {num(m['N'])}{interval(m.get('N_interval'))}"
                     + (f", infeasible in {100 * m['infeasible_fraction']:.0f}% of resamples"
                        if "infeasible_fraction" in m else ""))
    mem = answer.get("memory_matched", {})
    if "note" in mem:
        lines.append(f"  memory-matched: {mem['note']}")
    for n, m in mem.items():
        if n in ("note", "bits"):
            continue
        q, ref = key.split(" vs ", 1)
        lines.append(f"  memory-matched ({m['bytes'] / 1e6:.4g} MB of weights): {q} at N = {num(m['N_q'])} "
                     f"vs {ref} at N = {num(m['N_ref'])}: gap {m['gap']:+.4g}{interval(m.get('gap_interval'))}, "
                     f"winner {m['winner']}")
    return lines
