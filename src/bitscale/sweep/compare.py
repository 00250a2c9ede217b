"""Side-by-side comparison of a sweep's variants at each size: the 1-bit (or ternary) cost in loss.

    table = compare_runs("runs/lm_sizes.db", sweep="lm-sizes", by="model.quant", size="model.d_model",
                         reference="fp32")

One row per (size, label) over the finished runs: how many seeds, the mean, sample standard deviation,
min and max of `metric`, the mean of `n_column` (the label's own parameter count at that size: a
ternary layer's RMSNorm gains make it differ from fp32's), and the gap to the reference label at the
same size:

    gap          = mean(metric | label) - mean(metric | reference)
    gap_relative = gap / mean(metric | reference)
    gap_se       = sqrt(s_label^2 / n_label + s_ref^2 / n_ref)      (Welch's standard error; NaN
                                                                      when either side has one seed)
    n_pairs, gap_se_paired = k, std(d) / sqrt(k)                    (the paired standard error over
        the k seeds run for both, d_i = metric_i(label) - metric_i(reference) for seed i; NaN when
        k < 2. Runs pair when their seed columns, SEED_COLUMNS, agree: a variant and its reference
        then share the initialization and the data order, so the seed-to-seed spread they have in
        common cancels in d_i. The paired mean of d equals `gap` when every run is paired.)

Sizes are matched by a config column (`size`, e.g. model.width or model.d_model), not by parameter
count, for that reason; several columns joined by commas (`model.n_layer,model.d_model`) match a size
by all of them, labelled like `2x64`. Sizes are listed in the order of their mean `n_column`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np


class CompareError(ValueError):
    """Bad input to a comparison (an unknown column, no finished runs, a missing reference): one line."""


COLUMNS = ("size", "label", "N", "n", "mean", "std", "min", "max", "gap", "gap_relative", "gap_se", "n_pairs",
           "gap_se_paired")
SEED_COLUMNS = ("train.seed", "model.init_seed", "task.seed", "eval_seed")


def compare_runs(store: "str | Path", *, sweep: "str | None" = None, by: str = "model.quant",
                 size: str = "model.width", reference: str = "fp32", metric: str = "final_test_loss",
                 n_column: str = "n_params_non_embedding"):
    """The comparison table (a pandas DataFrame with COLUMNS) of the done runs in `store`; see the module
    docstring. Raises CompareError with one line for an unknown column, no done runs, or a reference
    label that is not in the data."""
    from .store import StoreError, load_runs

    try:
        runs = load_runs(store, sweep)
    except StoreError as e:
        raise CompareError(str(e)) from None
    source = f"{store}" + (f" (sweep {sweep!r})" if sweep else "")
    runs = runs[runs["status"] == "done"]
    if runs.empty:
        raise CompareError(f"{source}: no runs with status 'done' to compare")
    size_columns = [c.strip() for c in size.split(",")]
    columns = [("by", by), *(("size", c) for c in size_columns), ("metric", metric), ("n-column", n_column)]
    runs = label_variants(runs, by=by, reference=reference, source=source, columns=columns)
    if len(size_columns) > 1:
        runs = runs.assign(**{size: runs[size_columns].apply(lambda r: "x".join(label_of(v) for v in r), axis=1)})
    return compare_frame(runs, label="_label", size=size, reference=reference, metric=metric, n_column=n_column)


def label_variants(runs, *, by: str, reference: str, source: str,
                   columns: "Mapping[str, str] | Sequence[tuple[str, str]]", reference_flag: str = "reference"):
    """`runs` with a `_label` column (label_of each run's `by` value), after checking that every column
    named in `columns` ({flag: column}, or (flag, column) pairs when a flag names several) exists and that
    `reference` is one of the labels; else CompareError with one line naming `source` and the flag."""
    for flag, column in (columns.items() if isinstance(columns, Mapping) else columns):
        if column not in runs.columns:
            raise CompareError(f"{source}: {flag}: unknown column {column!r}; available: {', '.join(map(str, runs.columns))}")
    runs = runs.assign(_label=runs[by].map(label_of))
    if reference not in set(runs["_label"]):
        raise CompareError(f"{source}: {reference_flag} {reference!r} is not a value of {by} "
                           f"(values: {', '.join(sorted(set(runs['_label'])))})")
    return runs


def compare_frame(runs, *, label: str, size: str, reference: str = "fp32", metric: str = "final_test_loss",
                  n_column: str = "n_params_non_embedding"):
    """The comparison table of a DataFrame of finished runs whose column `label` names each run's variant
    (what compare_runs computes after reading the store)."""
    import pandas as pd

    keys = [c for c in SEED_COLUMNS if c in runs.columns]
    rows: list[dict[str, Any]] = []
    def by_count(group) -> tuple[bool, float]:  # sizes without a count keep their order, last
        n = float(group[1][n_column].mean())
        return (math.isnan(n), 0.0 if math.isnan(n) else n)

    groups = sorted(runs.groupby(size, sort=True), key=by_count)
    for size_value, at_size in groups:
        stats = {name: _stats(g[metric].to_numpy(dtype=float)) for name, g in at_size.groupby(label)}
        ref = stats.get(reference)
        for name in _order(stats, reference):
            s = stats[name]
            n_mean = float(at_size.loc[at_size[label] == name, n_column].mean())
            row = {"size": size_value, "label": name, "N": n_mean, **s}
            if ref is None or name == reference:
                row.update(gap=math.nan, gap_relative=math.nan, gap_se=math.nan, n_pairs=0, gap_se_paired=math.nan)
            else:
                gap = s["mean"] - ref["mean"]
                se = math.sqrt(s["std"] ** 2 / s["n"] + ref["std"] ** 2 / ref["n"]) if min(s["n"], ref["n"]) > 1 else math.nan
                d = _paired_differences(at_size, label, name, reference, keys, metric)
                paired = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else math.nan
                row.update(gap=gap, gap_relative=gap / ref["mean"], gap_se=se, n_pairs=len(d), gap_se_paired=paired)
            rows.append(row)
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _paired_differences(runs, label: str, name: str, reference: str, keys: list[str], metric: str) -> np.ndarray:
    """metric(name) - metric(reference) for each seed key that both have once and finite (empty without keys)."""
    if not keys:
        return np.empty(0)
    sides = []
    for variant in (name, reference):
        g = runs.loc[runs[label] == variant, keys + [metric]].copy()
        g[keys] = g[keys].astype(str)  # a missing seed (None / NaN) is a value to match, not a wildcard
        g = g[np.isfinite(g[metric].to_numpy(dtype=float))]
        sides.append(g.drop_duplicates(keys, keep=False).set_index(keys)[metric])
    both = sides[0].to_frame("a").join(sides[1].to_frame("b"), how="inner")
    return (both["a"] - both["b"]).to_numpy(dtype=float)


def label_of(value: Any) -> str:
    """A config value as a variant label: 256.0 -> '256', strings as they are."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return value if isinstance(value, str) else str(value)


def _order(stats: dict, reference: str) -> list[str]:
    return ([reference] if reference in stats else []) + sorted(k for k in stats if k != reference)


def _stats(values: np.ndarray) -> dict[str, Any]:
    values = values[np.isfinite(values)]
    n = len(values)
    return {"n": n, "mean": float(values.mean()) if n else math.nan,
            "std": float(values.std(ddof=1)) if n > 1 else math.nan,
            "min": float(values.min()) if n else math.nan, "max": float(values.max()) if n else math.nan}


def to_markdown(table, *, size: str, metric: str, reference: str) -> str:
    """The table as GitHub markdown: one row per size and label, gaps with their standard error."""
    def num(x: float, spec: str = ".4f") -> str:
        return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)

    lines = [f"| {size} | variant | N | seeds | {metric} mean ± std | min – max | gap to {reference} | relative gap |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in table.itertuples(index=False):
        gap = "–" if math.isnan(r.gap) else f"{r.gap:+.4f}" + ("" if math.isnan(r.gap_se) else f" ± {r.gap_se:.4f}")
        rel = "–" if math.isnan(r.gap_relative) else f"{100 * r.gap_relative:+.1f}%"
        lines.append(f"| {label_of(r.size)} | {r.label} | {r.N:,.0f} | {r.n} | {num(r.mean)} ± {num(r.std)} | "
                     f"{num(r.min)} – {num(r.max)} | {gap} | {rel} |")
    return "\n".join(lines) + "\n"


def plot_comparison(table, path: "str | Path", *, metric: str, reference: str, title: str = "",
                    labels: "Sequence[str] | None" = None) -> Path:
    """Two panels against N (log scale): each label's mean metric with its seed range, and its gap to
    the reference with ± 1 standard error."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..atomic import atomic_write

    labels = list(labels or dict.fromkeys(table["label"]))
    fig, (ax, gap_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, label in enumerate(labels):
        t = table[table["label"] == label].sort_values("N")
        color = f"C{i}"
        ax.plot(t["N"], t["mean"], "o-", color=color, label=label)
        ax.fill_between(t["N"], t["min"], t["max"], color=color, alpha=0.2, linewidth=0)
        if label != reference:
            gap_ax.errorbar(t["N"], t["gap"], yerr=t["gap_se"].fillna(0), fmt="o-", color=color, capsize=3, label=label)
    for a in (ax, gap_ax):
        a.set_xscale("log")
        a.set_xlabel("parameters N (non-embedding)")
        a.grid(True, which="both", alpha=0.3)
        a.legend()
    ax.set_ylabel(f"{metric} (mean; band: min-max over seeds)")
    gap_ax.axhline(0, color="k", linewidth=0.8)
    gap_ax.set_ylabel(f"{metric} - {reference} at the same size (± 1 s.e.)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    suffix = path.suffix or ".png"
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format=suffix.lstrip(".")))
    plt.close(fig)
    return path
