"""Numbers into sentences, and the claims of the 1-bit scaling paper into verdicts.

Every sentence and verdict is computed from the comparison tables and fits of one sweep (and the
theory summary when given); nothing here knows a result in advance. The rules (docs/report.md lists
them too):

gap vanishes (Daliri, Song & Yang 2024: the 1-bit network's loss gap to full precision vanishes as
  width grows), per slice and non-reference variant, on the gap of the mean test loss to the
  reference at each size. s.e. is the paired standard error over seeds where every run of the variant
  and of the reference at that size has its twin with the same seeds, else Welch's (compare.py):
  - not tested when fewer than 3 sizes have a gap, or the gap at the largest size has no standard
    error (fewer than 2 seeds);
  - holds when the least-squares slope of |gap| against log2(size) is < 0 (it shrinks) AND
    |gap at the largest size| + 2 s.e. <= 5% of the reference's mean loss there (the gap is shown to
    be below a twentieth of the loss);
  - inconclusive when it shrinks and |gap| <= 2 s.e. at the largest size but |gap| + 2 s.e. is above
    that bound: the seeds cannot tell a vanished gap from a remaining one;
  - does not hold otherwise.
power law (the loss follows a power law in width, L = E + A*N^-alpha), per variant, on the power_N
  fit (chinchilla's N term when the data budget varies):
  - not tested when the fit failed or fewer than 4 distinct N;
  - holds when the 95% bootstrap interval of alpha lies above 0 (the point estimate without bootstrap)
    AND alpha is below 0.99 x the upper bound of its fitted range (5: a fit pinned there has no
    identified N term) AND the held-out extrapolation error (mean |relative error| at the largest
    size) is <= 5%;
  - does not hold otherwise.
training loss falls with width (the paper: training converges, to a loss that shrinks with width),
  per slice and non-reference variant, on the mean final train loss per size:
  - not tested when fewer than 3 sizes or no seed spread at the smallest and largest size;
  - holds when the least-squares slope of log(mean train loss) against log2(size) is < 0 AND the
    mean at the largest size is below the mean at the smallest by more than 2 s.e.
    (s.e. = sqrt(s0^2/n0 + sL^2/nL));
  - does not hold otherwise.
The theory claims (the generalization difference |f_1bit - f_fp| vanishes; training stays in the
kernel regime) are judged from a `bitscale theory` summary (theory.py) and are "not tested by this
data" from a store alone: a sweep stores losses, not the two networks' outputs or kernels.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..runs.kinds import KINDS
from .collect import Slice, SweepData, fmt_value
from .fits import SweepFits, holdout_text, interval

HOLDS, FAILS, UNTESTED = "holds", "does not hold", "not tested by this data"
INCONCLUSIVE = "inconclusive (too noisy)"
UNDECIDED = "inconclusive"  # a rule that cannot decide for a reason given in the evidence (a fit at a bound, ...)
MAX_HOLDOUT_ERROR = 0.05
GAP_BOUND = 0.05     # a vanished gap: shown to be below 5% of the reference loss
MIN_TOKENS_PER_PARAM = 10   # an LM trained on fewer tokens per parameter is far from converged (Chinchilla: 20)
PAPER = "Daliri, Song & Yang 2024 (arXiv 2411.01663)"
CLAIM_GAP = "The loss gap of the 1-bit network to full precision vanishes as width grows"
CLAIM_POWER = "The loss follows a power law in width (L = E + A·N^-alpha)"
CLAIM_TRAIN = "The 1-bit network's training loss falls as width grows"


@dataclass
class Claim:
    claim: str
    scope: str            # which slice / variant the verdict is about
    verdict: str          # HOLDS, FAILS, INCONCLUSIVE or UNTESTED
    evidence: str         # the numbers
    test: str             # the rule applied

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def _split_note(kind: str) -> str:
    """What a stored test loss is, when a kind stores another split there (an LM's validation loss)."""
    note = KINDS[kind].test_loss_note
    return f" ({note})" if note else ""


def num(x: Any, spec: str = ".4g") -> str:
    """A number as the report prints it ('–' for missing)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return format(x, spec)


def pm(x: float, se: float, spec: str = ".4g") -> str:
    return num(x, spec) + ("" if se is None or not math.isfinite(se) else f" ± {num(se, '.2g')}")


def pct(x: float) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:.1f}%"


def slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of y on x and its standard error (nan with fewer than 3 points)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 2 or np.ptp(x) == 0:
        return math.nan, math.nan
    b, a = np.polyfit(x, y, 1)
    if len(x) < 3:
        return float(b), math.nan
    resid = y - (a + b * x)
    se = math.sqrt(float(resid @ resid) / (len(x) - 2) / float(((x - x.mean()) ** 2).sum()))
    return float(b), se


def _short(size: str) -> str:
    return {"model.width": "m", "model.d_model": "d_model"}.get(size, size)


def _scope(s: Slice, label: str | None = None) -> str:
    parts = [] if not s.key else [s.title]
    if label is not None:
        parts.insert(0, label)
    return "; ".join(parts) or "all runs"


# -- the gap ----------------------------------------------------------------------------------------

def gap_claim(sweep: SweepData, s: Slice, label: str) -> Claim:
    t = s.table[(s.table["label"] == label) & s.table["gap"].notna()].sort_values("size")
    m = _short(sweep.size)
    test = (f"|gap| shrinks with log2(size) (least-squares slope < 0) and |gap| + 2 s.e. ≤ {100 * GAP_BOUND:.0f}% "
            "of the reference loss at the largest size → holds; shrinks and |gap| ≤ 2 s.e. but above that "
            "bound → inconclusive")
    if len(t) < 3:
        return Claim(CLAIM_GAP, _scope(s, label), UNTESTED, f"only {len(t)} size(s) with both {label} and "
                     f"{sweep.reference}; the trend needs ≥ 3", test)
    first, last = t.iloc[0], t.iloc[-1]
    ref_n = s.table[s.table["label"] == sweep.reference].set_index("size")["n"]
    paired = lambda r: r.n_pairs == r.n == ref_n.get(r["size"]) and math.isfinite(r.gap_se_paired)  # noqa: E731
    se = lambda r: r.gap_se_paired if paired(r) else r.gap_se  # noqa: E731
    b, b_se = slope(np.log2(t["size"].astype(float)), t["gap"].abs())
    kind = f"paired over {int(last.n_pairs)} seeds" if paired(last) else "Welch"
    evidence = (f"gap {pm(first.gap, se(first))} at {m} = {fmt_value(first['size'])} → "
                f"{pm(last.gap, se(last))} at {m} = {fmt_value(last['size'])} (s.e. {kind}); slope of |gap| "
                f"{pm(b, b_se, '+.3g')} per doubling of {m}")
    if not math.isfinite(se(last)):
        return Claim(CLAIM_GAP, _scope(s, label), UNTESTED,
                     evidence + "; no standard error at the largest size (one seed)", test)
    ref_loss = abs(float(s.table[(s.table["label"] == sweep.reference) & (s.table["size"] == last["size"])]["mean"].iloc[0]))
    upper = abs(last.gap) + 2 * se(last)
    shrinks, small, bounded = b < 0, abs(last.gap) <= 2 * se(last), upper <= GAP_BOUND * ref_loss
    verdict = HOLDS if shrinks and bounded else INCONCLUSIVE if shrinks and small else FAILS
    why = (f"; the gap {'shrinks' if shrinks else 'does not shrink'} with {m}, and at the largest {m} "
           f"|gap| + 2 s.e. = {num(upper, '.2g')} is {pct(upper / ref_loss)} of {sweep.reference}'s loss {num(ref_loss)}")
    if verdict == INCONCLUSIVE:
        why += ": the gap is within 2 s.e. of 0, but the seeds cannot tell a vanished gap from a remaining one"
    starved = undertrained(sweep, s)
    if starved is not None:
        why += (f"; every size saw the same {starved[0]:,.0f} tokens, so the largest models trained on "
                f"D/N = {starved[1]:.2g} tokens per parameter (< {MIN_TOKENS_PER_PARAM}): they are undertrained, "
                f"and a gap measured on them says little about the gap at convergence")
        if verdict == HOLDS:
            verdict = INCONCLUSIVE
    return Claim(CLAIM_GAP, _scope(s, label), verdict, evidence + why, test)


def undertrained(sweep: SweepData, s: Slice) -> tuple[float, float] | None:
    """(tokens, D/N at the largest size) for an LM slice trained on one token budget whose largest
    models saw fewer than MIN_TOKENS_PER_PARAM tokens per parameter; None otherwise (a compute-optimal or
    tokens-per-param sweep varies D with N)."""
    runs = s.runs
    if not KINDS[sweep.kind].samples_are_tokens or "samples_seen" not in runs or runs.empty:
        return None
    tokens = runs["samples_seen"].dropna().unique()
    if len(tokens) != 1:
        return None
    n_max = float(runs[sweep.n_column].max())
    ratio = float(tokens[0]) / n_max if n_max > 0 else math.inf
    return (float(tokens[0]), ratio) if ratio < MIN_TOKENS_PER_PARAM else None


def gap_sentences(sweep: SweepData, s: Slice) -> list[str]:
    m, ref, t = _short(sweep.size), sweep.reference, s.table
    out = []
    metric = "test loss" if sweep.metric == "final_test_loss" else sweep.metric
    for label in [x for x in sweep.labels if x != ref]:
        r = t[(t["label"] == label) & t["gap"].notna()].sort_values("size")
        if r.empty:
            continue
        n = len(r)
        ahead = int((r["gap"] > 0).sum())
        sig = int((r["gap"] > 2 * r["gap_se"]).sum())
        if ahead == n:
            lead = f"At every {m} ({n} sizes) {ref} reaches a lower {metric} than {label}"
        elif ahead == 0:
            lead = f"At every {m} ({n} sizes) {label} reaches a lower {metric} than {ref}"
        else:
            lead = f"{ref} reaches a lower {metric} than {label} at {ahead} of {n} sizes"
        lead += f" (by more than 2 s.e. at {sig} of {n})" if r["gap_se"].notna().any() else " (one seed: no s.e.)"
        first, last = r.iloc[0], r.iloc[-1]
        if n > 1:
            trend = "shrinks" if abs(last.gap) < abs(first.gap) else "grows" if abs(last.gap) > abs(first.gap) else "stays"
            lead += (f"; the gap {trend} from {pm(first.gap, first.gap_se)} ({pct(first.gap_relative)}) at "
                     f"{m} = {fmt_value(first['size'])} to {pm(last.gap, last.gap_se)} ({pct(last.gap_relative)}) "
                     f"at {m} = {fmt_value(last['size'])}")
            if n > 2:
                peak = r.loc[r["gap"].abs().idxmax()]
                low = r.loc[r["gap"].abs().idxmin()]
                lead += (f"; the smallest gap is {num(low.gap)} at {m} = {fmt_value(low['size'])}, the largest "
                         f"{num(peak.gap)} at {m} = {fmt_value(peak['size'])}")
        out.append(lead + ".")
    largest = t[t["size"] == t["size"].max()].sort_values("mean")
    if len(largest) > 1:
        best = largest.iloc[0]
        out.append(f"At the largest {m} ({fmt_value(best['size'])}) the lowest mean {metric} is {label_of(best)}'s, "
                   f"{pm(best['mean'], best['std'])} (mean ± std over {int(best['n'])} seeds).")
    return out


def label_of(row: pd.Series) -> str:
    return str(row["label"])


# -- training loss ---------------------------------------------------------------------------------

def train_claim(sweep: SweepData, s: Slice, label: str) -> Claim:
    t = s.train_table[s.train_table["label"] == label].sort_values("size")
    t = t[t["mean"].notna() & (t["mean"] > 0)]
    m = _short(sweep.size)
    test = ("least-squares slope of log(mean train loss) against log2(size) < 0 and the mean at the largest "
            "size below the smallest's by > 2 s.e. → holds")
    if len(t) < 3:
        return Claim(CLAIM_TRAIN, _scope(s, label), UNTESTED, f"only {len(t)} size(s) with a train loss", test)
    first, last = t.iloc[0], t.iloc[-1]
    b, b_se = slope(np.log2(t["size"].astype(float)), np.log(t["mean"]))
    se = math.sqrt(first["std"] ** 2 / first["n"] + last["std"] ** 2 / last["n"])
    evidence = (f"mean train loss {pm(first['mean'], first['std'])} at {m} = {fmt_value(first['size'])} → "
                f"{pm(last['mean'], last['std'])} at {m} = {fmt_value(last['size'])} (± std over seeds); "
                f"slope of log loss {pm(b, b_se, '+.3g')} per doubling")
    if not math.isfinite(se):
        return Claim(CLAIM_TRAIN, _scope(s, label), UNTESTED, evidence + "; one seed: no s.e.", test)
    falls = b < 0 and last["mean"] < first["mean"] - 2 * se
    return Claim(CLAIM_TRAIN, _scope(s, label), HOLDS if falls else FAILS,
                 evidence + f"; drop {num(first['mean'] - last['mean'])} vs 2 s.e. = {num(2 * se)}", test)


# -- fits --------------------------------------------------------------------------------------------

def power_claims(sweep: SweepData, fits: SweepFits) -> list[Claim]:
    out = []
    from ..laws import get_law

    test = (f"95% bootstrap interval of alpha above 0, alpha below the upper bound of its range, and held-out "
            f"error ≤ {100 * MAX_HOLDOUT_ERROR:.0f}% → holds")
    for fs in fits.power:
        for label in sweep.labels:
            scope = "; ".join(x for x in (label, fs.title if fs.key else "") if x)
            a = next((a for a in fs.analyses if a.label == label), None)
            if a is None:
                reason = fs.errors.get(label) or fs.errors.get("all") or "no fit"
                out.append(Claim(CLAIM_POWER, scope, UNTESTED, f"{fs.law} fit failed: {reason}", test))
                continue
            n_sizes = len(np.unique(a.data.x["N"]))
            alpha = a.fit.params.get("alpha", math.nan)
            lo, hi = interval(a, "alpha")
            err = a.holdout_error
            evidence = (f"{fs.law}: alpha = {num(alpha, '.3g')} [{num(lo, '.3g')}, {num(hi, '.3g')}], "
                        f"E = {num(a.fit.params.get('E'), '.4g')}; {holdout_text(a)}")
            if n_sizes < 4:
                out.append(Claim(CLAIM_POWER, scope, UNTESTED, evidence + f"; only {n_sizes} sizes (need ≥ 4)", test))
                continue
            lower = lo if math.isfinite(lo) else alpha
            bound = get_law(fs.law).bounds.get("alpha", (0.0, math.inf))[1]
            at_bound = alpha >= 0.99 * bound or "alpha" in (getattr(a.fit, "at_bound", {}) or {})
            ok = lower > 0 and math.isfinite(err) and err <= MAX_HOLDOUT_ERROR and not at_bound
            if at_bound:
                evidence += f"; alpha is at the upper bound of its range ({bound:g}): the N term is not identified"
            out.append(Claim(CLAIM_POWER, scope, HOLDS if ok else FAILS, evidence, test))
    return out


def fit_sentences(sweep: SweepData, fits: SweepFits) -> list[str]:
    out = [f"Law: {fits.main[0].law if fits.main else fits.law}, because {fits.reason}."]
    for fs in fits.main:
        where = f" ({fs.title})" if fs.key else ""
        for a in fs.analyses:
            who = "all variants" if a.label == "all" else a.label
            pinned = getattr(a.fit, "at_bound", {}) or {}
            params = ", ".join(f"{k} = {num(v, '.3g')} [{num(interval(a, k)[0], '.3g')}, {num(interval(a, k)[1], '.3g')}]"
                               + (f" (at its {pinned[k]} bound)" if k in pinned else "")
                               for k, v in a.fit.params.items() if isinstance(v, float))
            boot = f"{a.boot.describe()}" if a.boot is not None else f"{fits.bootstrap} resamples"
            out.append(f"{who}{where}: {params} (95% bootstrap intervals, {boot}); {holdout_text(a)}.")
            if pinned:
                out.append(f"{who}{where}: {', '.join(pinned)} sit at a bound of the fitted range, so that estimate is "
                           f"the bound's, not the data's; answers that rest on it are not findings.")
            if fs.law in ("precision", "precision_size") and "gamma" in a.fit.params:
                out.extend(_fractions(sweep, a))
        for label, reason in fs.errors.items():
            out.append(f"{label}{where}: the {fs.law} fit failed: {reason}.")
    if any(fs is not m for fs, m in zip(fits.power, fits.main)):
        for fs in fits.power:
            where = f" ({fs.title})" if fs.key else ""
            for a in fs.analyses:
                lo, hi = interval(a, "alpha")
                out.append(f"Power law in N for {a.label}{where}: the fitted exponent alpha is "
                           f"{num(a.fit.params['alpha'], '.3g')} [{num(lo, '.3g')}, {num(hi, '.3g')}]; "
                           f"the held-out error is {pct(a.holdout_error)}.")
    return out


def _fractions(sweep: SweepData, a: Any) -> list[str]:
    bits = sweep.done.groupby("_label")["precision_bits"].mean().dropna()  # P of the law, not storage bits
    gamma = a.fit.params["gamma"]
    parts = []
    for label, p in bits.items():
        frac = 1 - math.exp(-p / gamma)
        lo, hi = (a.boot.interval_of(lambda q, p=p: 1 - math.exp(-p / q["gamma"])) if a.boot is not None
                  else (math.nan, math.nan))
        parts.append((label, p, frac, lo, hi))
    if not parts:
        return []
    text = "; ".join(f"{label} (P = {p:.3g} bits): {frac:.3g} [{num(lo, '.3g')}, {num(hi, '.3g')}]"
                     for label, p, frac, lo, hi in parts)
    pinned = (getattr(a.fit, "at_bound", {}) or {}).get("gamma")
    caveat = f" Not a finding: gamma sits at the {pinned} bound of its range." if pinned else ""
    out = [f"A stored weight counts as 1 − exp(−P/gamma) of a full parameter: {text}.{caveat}"]
    ref = next((x for x in parts if x[0] == sweep.reference), None)
    if ref is not None and not pinned:   # a multiple resting on a pinned gamma is not a finding
        for label, p, frac, lo, hi in parts:
            if label != sweep.reference and frac > 0:
                out.append(f"So {label} needs about {ref[2] / frac:.3g}× the parameters of {sweep.reference} "
                           f"for the same loss at this data budget (fit-based).")
    return out


# -- all claims of a sweep ---------------------------------------------------------------------------

def sweep_claims(sweep: SweepData, fits: SweepFits | None) -> list[Claim]:
    out = []
    others = [x for x in sweep.labels if x != sweep.reference]
    for s in sweep.slices:
        out.extend(gap_claim(sweep, s, label) for label in others)
    if fits is not None:
        out.extend(power_claims(sweep, fits))
    for s in sweep.slices:
        out.extend(train_claim(sweep, s, label) for label in others)
    return out


def overview_sentences(sweep: SweepData) -> list[str]:
    counts = ", ".join(f"{n} {k}" for k, n in sorted(sweep.counts.items()))
    axes = ", ".join(f"{k} ({len(v)} values)" for k, v in sweep.varying.items()) or "nothing"
    out = [f"{len(sweep.runs)} runs ({counts}); {len(sweep.done)} done runs are used.",
           f"Kind: {sweep.kind}. Varying: {axes}.",
           f"Compared: {sweep.by} ({', '.join(sweep.labels)}; reference {sweep.reference}) across "
           f"{sweep.size} ({', '.join(fmt_value(v) for v in sorted(sweep.done[sweep.size].unique()))}), "
           f"metric {sweep.metric}" + _split_note(sweep.kind)
           + "."]
    if sweep.slice_axes:
        out.append(f"The runs are split into {len(sweep.slices)} slices by {', '.join(sweep.slice_axes)} "
                   "(settings that vary but are neither compared nor sizes nor seeds).")
    return out
