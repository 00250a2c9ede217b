"""The theory section: a `bitscale theory` output directory (summary.json, csvs, pngs) as claims.

Rules (per target of the study):
- generalization difference vanishes (|f_1bit - f_fp| -> 0 as width grows): the study fits
  mean_rel ~ C * m^-gamma with a 95% bootstrap interval for gamma. holds when the interval lies above
  0 (a decay); does not hold otherwise.
- training stays in the kernel regime: the study's least-squares exponent of the relative kernel
  movement at the end of training against width, for the 1-bit precision. holds when it is < 0 (the
  kernel moves less as width grows); the study gives no interval for it, which the evidence says.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .collect import ReportError
from .findings import FAILS, HOLDS, Claim, num

CLAIM_GENDIFF = "The generalization difference |f_1bit − f_fp| vanishes as width grows"
CLAIM_KERNEL = "As width grows, training stays in the kernel (NTK) regime"


@dataclass
class TheoryData:
    path: Path
    summary: dict[str, Any]
    images: list[Path] = field(default_factory=list)
    claims: list[Claim] = field(default_factory=list)
    sentences: list[str] = field(default_factory=list)


def load_theory(path: str | Path) -> TheoryData:
    """Read a theory output directory, or ReportError (one line)."""
    path = Path(path).expanduser()
    summary_file = path / "summary.json"
    if not summary_file.is_file():
        raise ReportError(f"{path}: no summary.json (expected the output directory of `bitscale theory`)")
    try:
        summary = json.loads(summary_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ReportError(f"{summary_file}: not a JSON file ({e})") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("targets"), dict):
        raise ReportError(f"{summary_file}: not a `bitscale theory` summary (no 'targets')")
    images = [path / p for p in summary.get("plots", []) if isinstance(p, str) and (path / p).is_file()]
    data = TheoryData(path, summary, images)
    quant = str(summary.get("config", {}).get("quant", "paper-1bit"))
    for target, t in summary["targets"].items():
        rel = t.get("mean_rel") or {}
        gamma, ci = rel.get("gamma"), rel.get("ci") or [None, None]
        if gamma is not None:
            lo, hi = (math.nan if v is None else float(v) for v in ci)
            ok = math.isfinite(lo) and lo > 0
            data.claims.append(Claim(
                CLAIM_GENDIFF, f"{quant}; target {target}", HOLDS if ok else FAILS,
                f"mean |f_1bit − f_fp| / RMS(f_fp) ~ m^-gamma: gamma = {num(gamma, '.3g')} "
                f"[{num(lo, '.3g')}, {num(hi, '.3g')}] ({100 * float(rel.get('level', 0.95)):.0f}% bootstrap, "
                f"widths {', '.join(str(w) for w in rel.get('widths', []))})",
                "the interval of gamma lies above 0 → holds"))
            data.sentences.append(f"{target}: the relative generalization difference decays as m^-gamma with gamma = "
                                  f"{num(gamma, '.3g')} [{num(lo, '.3g')}, {num(hi, '.3g')}].")
        movement = t.get("movement_exponent") or {}
        exp = movement.get(quant)
        if exp is not None and math.isfinite(float(exp)):
            data.claims.append(Claim(
                CLAIM_KERNEL, f"{quant}; target {target}", HOLDS if float(exp) < 0 else FAILS,
                f"relative kernel movement at the end of training ~ m^{num(float(exp), '+.3g')} "
                f"(fp32: m^{num(movement.get('fp32'), '+.3g')}); least squares, no interval in the study",
                "the exponent is < 0 → holds"))
            data.sentences.append(f"{target}: the {quant} kernel moves as m^{num(float(exp), '+.3g')} over training.")
    return data


def untested_claims(reason: str) -> list[Claim]:
    from .findings import UNTESTED

    return [Claim(c, "all", UNTESTED, reason, "needs a `bitscale theory` output (--theory DIR)")
            for c in (CLAIM_GENDIFF, CLAIM_KERNEL)]
