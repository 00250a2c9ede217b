"""Log-log plots of scaling-law fits: observed loss against one variable, the fitted curves, bootstrap
bands and held-out points, with every fit's extrapolation error stated beside it in the legend.

    plot_fits(datasets, fits, "fits.png", x="N", boots=[...], holdouts=[...])

Each dataset gets one colour. Filled markers are the points the fit used; open markers are the points a
holdout check left out (`HoldoutResult.held_out`). A curve runs over the data's range of `x` and on to 2x
its largest value, the part beyond the data drawn fainter: that stretch is extrapolation.

What the curve holds fixed. A law usually has variables besides `x` (D next to N in Chinchilla, Q in the
precision-multiplier law). The plot draws one curve per distinct combination of those other variables
present in the data (numbers within 2% of each other count as one value, drawn at their median), so a
sweep over N at fixed D, or a joint fit over precisions, shows each slice at its true values (each slice has its own line style and point marker, and each curve is labelled at its
end). When there are more than MAX_SLICES combinations (e.g. iso-FLOP data, where D changes with every
N) a single curve is drawn with the numeric variables at their median and the categorical one at its
most common label, and the fit's prediction at each point's own values is marked with an x.

Bands: the central `boot.level` percentile range (e.g. 2.5th-97.5th for level 0.95) of the predicted
loss across the bootstrap samples, at each point of the curve.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..atomic import atomic_write
from .data import LawData, LawDataError, is_categorical

MAX_SLICES = 6
EXTEND = 2.0  # the curve goes on to EXTEND x the largest x in the data
_MARKERS = ("o", "s", "^", "D", "v", "P")
_STYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3)))


CLUSTER_RTOL = 0.02  # numeric values within 2% of their neighbour belong to one slice


def _cluster(values: np.ndarray) -> np.ndarray:
    """Slice ids of a variable's values: categorical labels as they are; numbers sorted and split where
    one is more than CLUSTER_RTOL above the previous (bits per weight of 1.0002 and 1.0156 -- the scale's
    share at two sizes -- are one precision)."""
    if is_categorical(values):
        return np.unique(values.astype(str), return_inverse=True)[1]
    order = np.argsort(values, kind="stable")
    sorted_v = values[order]
    breaks = np.r_[False, sorted_v[1:] > sorted_v[:-1] * (1 + CLUSTER_RTOL) + 1e-300]
    ids = np.empty(len(values), dtype=int)
    ids[order] = np.cumsum(breaks)
    return ids


def _slices(data: LawData, variables: Sequence[str], x: str) -> tuple[list[dict[str, Any]], np.ndarray | None]:
    """The values of the other variables for each curve, and each point's slice (None when the single
    curve holds the others at their medians; see the module docstring)."""
    others = [v for v in variables if v != x and v in data.x]
    if not others:
        return [{}], np.zeros(data.n, dtype=int)
    ids = np.column_stack([_cluster(np.asarray(data.x[v])) for v in others])
    rows, member = np.unique(ids, axis=0, return_inverse=True)
    if len(rows) <= MAX_SLICES:
        slices = []
        for k in range(len(rows)):
            mine = member.ravel() == k
            fixed = {}
            for v in others:
                values = np.asarray(data.x[v])[mine]
                fixed[v] = str(values[0]) if is_categorical(values) else float(np.median(values))
            slices.append(fixed)
        order = sorted(range(len(slices)), key=lambda k: tuple(map(str, slices[k].values())))
        rank = np.empty(len(order), dtype=int)
        rank[order] = np.arange(len(order))
        return [slices[k] for k in order], rank[member.ravel()]
    fixed: dict[str, Any] = {}
    for v in others:
        values = data.x[v]
        if is_categorical(values):
            labels, counts = np.unique(values.astype(str), return_counts=True)
            fixed[v] = labels[np.argmax(counts)]
        else:
            fixed[v] = float(np.median(values))
    return [fixed], None


def _slice_label(fixed: dict[str, Any], median: bool) -> str:
    parts = [f"{k}={v}" if isinstance(v, str) else f"{k}={float(v):.3g}" for k, v in fixed.items()]
    return ("median " if median and parts else "") + ", ".join(parts)


def _band(law: Any, fit: Any, boot: Any, grid: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """Percentile band of the predicted loss across bootstrap samples, or None without usable samples."""
    names = [k for k in boot.samples if k in fit.params]
    if not names:
        return None
    samples = np.column_stack([np.asarray(boot.samples[k], dtype=float) for k in names])
    samples = samples[np.all(np.isfinite(samples), axis=1)]
    if len(samples) < 2:
        return None
    with np.errstate(all="ignore"):
        # each sample on top of the fit's params: keeps their order (the reference category first)
        preds = np.array([law.predict({**fit.params, **dict(zip(names, map(float, row)))}, grid)
                          for row in samples])
    tail = 100 * (1 - boot.level) / 2
    lo, hi = np.nanpercentile(preds, [tail, 100 - tail], axis=0)
    return lo, hi


def _legend_label(data: LawData, fit: Any, holdout: Any) -> str:
    name = data.label or "data"
    if holdout is None:
        return f"{name}: {fit.law} fit (no held-out check)"
    err = holdout.mean_abs_relative_error
    held = int(np.sum(holdout.held_out))
    return f"{name}: {fit.law} fit, held-out |rel. err| {100 * err:.2f}% ({held} pts)"


def crossing_markers(analyses: Sequence[Any]) -> list[dict[str, Any]]:
    """The crossings of the analyses' catch-up answers as plot markers: {x, lo, hi, label}."""
    out = []
    for a in analyses:
        for key, answer in getattr(a, "catch_up", {}).items():
            n = answer.get("crossing_N")
            if n is None:
                continue
            lo, hi = (answer.get("crossing_N_interval") or [None, None])
            out.append({"x": n, "lo": lo, "hi": hi, "label": f"{key}: crossing at N = {n:.3g}"
                        + (f" [{lo:.3g}, {'inf' if hi is None else f'{hi:.3g}'}]" if lo is not None else "")})
    return out


def _draw(ax: Any, data: LawData, fit: Any, boot: Any, held: Any, x: str, color: str, x_max: float = 0.0) -> None:
    """Points, curves, bands and slice labels of one (dataset, fit) pair in one colour."""
    from .forms import get_law

    law = getattr(fit, "form", None) or get_law(fit.law)   # the variant fitted (shared, folded)
    xs = data.x[x]
    out = np.zeros(data.n, dtype=bool) if held is None else np.asarray(held.held_out, dtype=bool)
    positive = xs[xs > 0]
    grid_x = np.geomspace(positive.min(), max(EXTEND * positive.max(), x_max), 200)
    inside = grid_x <= positive.max()
    slices, member = _slices(data, law.variables, x)
    median = member is None
    if median:  # the curve is one cut through the data: also show the fit at each point's own values
        ax.scatter(xs, fit.predict(data.x), marker="x", color=color, s=16, lw=0.8, alpha=0.7, zorder=2,
                   label=f"{data.label or 'data'}: fit at each point")
    for j, fixed in enumerate(slices):
        mine = np.ones(data.n, dtype=bool) if median else member == j
        marker = _MARKERS[j % len(_MARKERS)]
        ax.scatter(xs[mine & ~out], data.loss[mine & ~out], color=color, marker=marker, s=20, zorder=3)
        ax.scatter(xs[mine & out], data.loss[mine & out], facecolors="none", edgecolors=color, marker=marker,
                   s=44, linewidths=1.4, zorder=3,
                   label=f"{data.label or 'data'}: held out" if j == 0 and out.any() else None)

        grid = {x: grid_x}
        for v, value in fixed.items():
            grid[v] = np.full(len(grid_x), value, dtype=object if isinstance(value, str) else float)
        pred = fit.predict(grid)
        style = _STYLES[j % len(_STYLES)]
        ax.plot(grid_x[inside], pred[inside], color=color, linestyle=style, lw=1.6,
                label=_legend_label(data, fit, held) if j == 0 else None)
        ax.plot(grid_x[~inside], pred[~inside], color=color, linestyle=style, lw=1.2, alpha=0.5)
        band = _band(law, fit, boot, grid) if boot is not None else None
        if band is not None:
            ax.fill_between(grid_x, band[0], band[1], color=color, alpha=0.15, lw=0)
        text = _slice_label(fixed, median)
        if text:
            ax.annotate(text, (grid_x[-1], pred[-1]), fontsize=7, color=color, xytext=(3, 0),
                        textcoords="offset points", va="center")


def plot_fits(datasets: Sequence[LawData], fits: Sequence[Any], path: str | os.PathLike, *, x: str = "N",
              boots: Sequence[Any] | None = None, holdouts: Sequence[Any] | None = None,
              title: str | None = None, markers: Sequence[dict[str, Any]] | None = None) -> Path:
    """Write a log-log PNG of loss against variable `x` for each (dataset, fit) pair; return its path.

    `boots[i]` (BootstrapResult or None) adds a band around fit i; `holdouts[i]` (HoldoutResult or
    None) marks its held-out points open and puts its mean |relative error| in the legend. `markers`
    ({x, lo, hi, label}: a crossing size and its interval) are drawn as a dotted vertical line over a
    shaded interval, and the curves are drawn on to the largest marker. The file is written atomically
    (temporary file in the same directory, then os.replace)."""
    # A bare Figure renders with the Agg canvas: no pyplot, no global backend switch, no display.
    from matplotlib import rcParams
    from matplotlib.figure import Figure

    n = len(datasets)
    boots = list(boots) if boots is not None else [None] * n
    holdouts = list(holdouts) if holdouts is not None else [None] * n
    if not (len(fits) == len(boots) == len(holdouts) == n):
        raise ValueError(f"plot_fits: got {n} datasets, {len(fits)} fits, {len(boots)} boots and "
                         f"{len(holdouts)} holdouts; expected one of each per dataset")
    if n == 0:
        raise LawDataError("plot: nothing to plot (no datasets)")

    fig = Figure(figsize=(7.5, 5.5))
    ax = fig.add_subplot()
    colors = rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (data, fit, boot, held) in enumerate(zip(datasets, fits, boots, holdouts)):
        if x not in data.x or is_categorical(data.x[x]):
            have = ", ".join(v for v in data.x if not is_categorical(data.x[v]))
            raise LawDataError(f"plot: x variable {x!r} is not a numeric variable of '{data.label}' (have: {have})")
        x_max = max([1.2 * m["x"] for m in markers or [] if m["x"] <= 1e15], default=0.0)
        _draw(ax, data, fit, boot, held, x, colors[i % len(colors)], x_max)
    for j, m in enumerate(markers or []):
        color = "0.3"
        ax.axvline(m["x"], color=color, linestyle=":", lw=1.2, label=m["label"])
        if m.get("lo") is not None:
            ax.axvspan(max(m["lo"], m["x"] / 1e3), min(m["hi"] if m.get("hi") is not None else np.inf, m["x"] * 1e3),
                       color=color, alpha=0.08, lw=0)

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(x)
    ax.set_ylabel("loss")
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(True, which="both", alpha=0.25)
    # below the axes, so that no number of fits hides the data; bbox_inches="tight" makes room for it
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.12), frameon=False)
    path = Path(path).expanduser()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    return path


def plot_isoflop(frame: Any, profiles: Sequence[Any], path: str | os.PathLike, *, label: str = "label",
                 budget: str = "budget", N: str = "N", loss: str = "loss", title: str | None = None,
                 ylabel: str | None = None) -> Path:
    """IsoFLOP profiles: one panel per label, loss against N for each budget (points and the fitted
    parabola in ln N, `laws.isoflop.Profile`), the vertex a star when trusted and an x when flagged."""
    from matplotlib import rcParams
    from matplotlib.figure import Figure

    labels = list(dict.fromkeys(p.label for p in profiles))
    if not labels:
        raise LawDataError("plot: no isoFLOP profiles to plot")
    budgets = sorted({p.budget for p in profiles})
    colors = rcParams["axes.prop_cycle"].by_key()["color"]
    fig = Figure(figsize=(4.2 * len(labels), 4.2))
    axes = fig.subplots(1, len(labels), sharey=True, squeeze=False)[0]
    for ax, lab in zip(axes, labels):
        for p in (q for q in profiles if q.label == lab):
            color = colors[budgets.index(p.budget) % len(colors)]
            rows = frame[(frame[label].astype(str) == lab) & (frame[budget] == p.budget)]
            ax.plot(rows[N], rows[loss], "o", color=color, label=f"C = {p.budget:.2g}")
            xs = np.linspace(np.log(p.sizes[0]), np.log(p.sizes[1]), 50)
            ax.plot(np.exp(xs), p.curvature * (xs - np.log(p.N_opt)) ** 2 + p.loss_opt, "-", color=color, lw=1)
            ax.plot([p.N_opt], [p.loss_opt], "*" if p.trusted else "x", color=color, ms=11)
        ax.set_xscale("log")
        ax.set_title(lab, fontsize=9)
        ax.set_xlabel(N)
        ax.grid(True, which="both", alpha=0.25)
        ax.legend(fontsize=7)
    axes[0].set_ylabel(ylabel or loss)
    if title:
        fig.suptitle(title, fontsize=9)
    path = Path(path).expanduser()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight"))
    return path


def plot_scale_time(datasets: Sequence[LawData], studies: Sequence[Any], path: str | os.PathLike, *,
                    ylabel: str = "test loss", title: str | None = None) -> Path:
    """Scale-time panels, one row per (curves, `laws.scale_time.ScaleTimeStudy`): left, the mean loss over
    runs against steps t, one line per size p; right, the same against p·t, with the joint scale-time fit
    (dashed) and the largest size predicted from the smaller ones (dotted). Curves that collapse onto
    one line on the right are what the verdict in each title says."""
    from matplotlib import rcParams
    from matplotlib.figure import Figure

    from .scale_time import mean_curves

    if not datasets or len(datasets) != len(studies):
        raise LawDataError(f"plot: got {len(datasets)} datasets and {len(studies)} studies; expected one of each")
    colors = rcParams["axes.prop_cycle"].by_key()["color"]
    fig = Figure(figsize=(10, 3.6 * len(datasets)))
    axes = fig.subplots(len(datasets), 2, squeeze=False)
    for row, (data, st) in zip(axes, zip(datasets, studies)):
        for i, (p, (t, mean)) in enumerate(mean_curves(data).items()):
            color = colors[i % len(colors)]
            row[0].plot(t, mean, "-", color=color, lw=1.3, label=f"p = {p:,.0f}")
            row[1].plot(p * t, mean, "-", color=color, lw=1.3)
        u = np.geomspace(data.x["p"].min() * data.x["t"].min(), data.x["p"].max() * data.x["t"].max(), 100)
        row[1].plot(u, st.collapse.joint.predict({"p": np.ones_like(u), "t": u}), "k--", lw=1, label="L = E + A (p t)^-α, all sizes")
        if st.prediction is not None:
            pr = st.prediction
            order = np.argsort(pr.t)
            row[1].plot(pr.size * pr.t[order], pr.predicted[order], "k:", lw=2,
                        label=f"largest predicted from the rest ({pr.mean_abs_relative_error:.1%})")
        row[0].set_xlabel("steps t")
        row[1].set_xlabel("p · t")
        for ax in row:
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.grid(True, which="both", alpha=0.25)
            ax.set_ylabel(ylabel)
        lo, hi = st.intervals.get("ratio", (np.nan, np.nan))
        row[0].set_title(f"{st.label}: {st.verdict} (gamma {st.gamma:.2f}; scale-time is 1)", fontsize=9)
        row[1].set_title(f"collapse ratio {st.collapse.ratio:.2f} [{lo:.2f}, {hi:.2f}]", fontsize=9)
        row[0].legend(fontsize=7)
        row[1].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path).expanduser()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    return path


def plot_double_descent(studies: Sequence[Any], path: str | os.PathLike, *, ylabel: str = "test error",
                        title: str | None = None) -> Path:
    """One panel per `laws.double_descent.DoubleDescentStudy` (a precision): the mean error at the last
    step against parameters p, one colour per label-noise level, the runs' min-max as a band, the unified
    law's fit at that step dashed, and each measured peak ringed."""
    from matplotlib import rcParams
    from matplotlib.figure import Figure

    from .double_descent import final_curves

    if not studies:
        raise LawDataError("plot: no studies to draw")
    colors = rcParams["axes.prop_cycle"].by_key()["color"]
    fig = Figure(figsize=(5.2 * len(studies), 3.8))
    axes = fig.subplots(1, len(studies), squeeze=False, sharey=True)[0]
    for ax, st in zip(axes, studies):
        data = st.data
        t_last = float(data.x["t"].max())
        for i, (z, (sizes, mean, per)) in enumerate(final_curves(data).items()):
            color = colors[i % len(colors)]
            lo = [per[float(p)].min() for p in sizes]
            hi = [per[float(p)].max() for p in sizes]
            ax.fill_between(sizes, lo, hi, color=color, alpha=0.15, lw=0)
            ax.plot(sizes, mean, "o-", color=color, ms=3, lw=1.3, label=f"noise {z:g}")
            u = np.geomspace(sizes.min(), sizes.max(), 120)
            x = {"p": u, "t": np.full_like(u, t_last), "n": np.full_like(u, st.n), "noise": np.full_like(u, z)}
            ax.plot(u, st.fit.predict(x), "--", color=color, lw=1)
            pk = st.peaks.get(z)
            if pk is not None and pk.size is not None:
                ax.plot([pk.size], [pk.errors[pk.index]], "o", mfc="none", mec=color, ms=11)
        ax.set_xscale("log")
        ax.set_xlabel(f"parameters p (at step {t_last:,.0f})")
        ax.grid(True, which="both", alpha=0.25)
        held = st.holdout_size
        ax.set_title(f"{st.label}: w = {st.fit.params['w']:.2f}"
                     + (f"; largest p held out: {held.mean_abs_relative_error:.1%}" if held else ""), fontsize=9)
        ax.legend(fontsize=7)
    axes[0].set_ylabel(ylabel)
    if title:
        fig.suptitle(title + " (dashed: the unified law; rings: measured peaks)", fontsize=10)
    fig.tight_layout()
    path = Path(path).expanduser()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    return path
