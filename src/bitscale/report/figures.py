"""The report's figures: PNG files written beside report.html, then embedded as base64 data URIs.

- compare_figure: each variant's mean loss against N with its seed range, and its gap to the
  reference with ± 1 s.e. (`bitscale.sweep.compare.plot_comparison`), one per slice;
- fit_figure: points, fitted curves, bootstrap bands and held-out points (`bitscale.laws.plot.plot_fits`),
  one per fit group.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "all"


def compare_figure(table: Any, path: Path, *, metric: str, reference: str, title: str) -> Path:
    from ..sweep.compare import plot_comparison

    return plot_comparison(table, path, metric=metric, reference=reference, title=title)


def fit_figure(fits: Any, path: Path, title: str) -> Path | None:
    """The plot of one FitSet, or None when it has no successful fit."""
    from ..laws.plot import plot_fits

    analyses = fits.analyses
    if not analyses:
        return None
    return plot_fits([a.data for a in analyses], [a.fit for a in analyses], path, x=fits.x,
                     boots=[a.boot for a in analyses],
                     holdouts=[a.holdouts[0] if a.holdouts else None for a in analyses], title=title)


def data_uri(path: Path) -> str:
    """The PNG at `path` as a data: URI (ValueError if it is not a PNG)."""
    raw = Path(path).read_bytes()
    if not raw.startswith(PNG_MAGIC):
        raise ValueError(f"{path} is not a PNG file")
    return "data:image/png;base64," + base64.b64encode(raw).decode("ascii")
