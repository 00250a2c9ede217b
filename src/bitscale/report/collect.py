"""What the report is made of: each sweep's runs, what varies, and the comparison tables, from a store.

    sweeps = collect(store, sweep=None, by="model.quant", size=None, reference="fp32")

One `SweepData` per sweep (all sweeps of the store, or the one named). Its runs are split into
*slices*: the done runs that share every varying setting other than the compared column (`by`), the
size column, the seed columns and the columns that follow the size or the variant (a [[zip]] partner
such as model.n_layer beside model.d_model). A sweep over widths and two targets has two slices; a
sweep over widths, n_train and precision has one slice per n_train. Each slice has the comparison
table of `bitscale compare` (`compare_table`: the same numbers as `bitscale.sweep.compare.compare_runs`
on the slice's runs) for the final test loss and for the final train loss.

Every problem the user can fix (no store, not a store, unknown sweep or column, no done runs, a
reference that is not a value of `by`) raises ReportError with one line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..runs.kinds import KINDS, kind_of
from ..sweep.compare import SEED_COLUMNS, CompareError, label_variants  # seed columns are not axes: they repeat an experiment

DATA_COLUMNS = ("task.n_train", "train.steps", "train.batch_size")  # columns that set the data budget
# bookkeeping columns of load_runs: never an axis of the experiment
_RUN_COLUMNS = {"id", "sweep", "status", "error", "host", "started", "finished", "wall_time_s", "n_params",
                "n_params_non_embedding", "precision_bits", "storage_bits_per_weight", "train_flops", "samples_seen",
                "steps_done", "final_train_loss", "final_test_loss", "pid", "created"}


class ReportError(Exception):
    """A problem with the report's input, worded for the user (one line)."""


@dataclass
class Slice:
    """The done runs of one sweep that share every setting but variant, size and seed."""

    key: dict[str, Any]                  # the fixed values of the slicing axes ({} when nothing else varies)
    runs: pd.DataFrame
    table: pd.DataFrame                  # compare_table of the metric (final test loss)
    train_table: pd.DataFrame            # compare_table of the final train loss

    @property
    def title(self) -> str:
        return ", ".join(f"{k} = {fmt_value(v)}" for k, v in self.key.items()) or "all runs"


@dataclass
class SweepData:
    name: str
    config: dict[str, Any]               # the sweep's stored config (sweeps table)
    kind: str                            # "lm" or "regression"
    runs: pd.DataFrame                   # every run of the sweep (any status)
    done: pd.DataFrame                   # the done runs, with a string label column "_label"
    counts: dict[str, int]               # runs per status
    by: str
    size: str
    reference: str
    metric: str
    n_column: str
    varying: dict[str, list[Any]]        # config column -> its distinct values, for every column that varies
    slice_axes: list[str]
    data_axis: str | None                # the column holding the data budget when it varies (else None)
    slices: list[Slice] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        labels = sorted(set(self.done["_label"]))
        return ([self.reference] if self.reference in labels else []) + [x for x in labels if x != self.reference]


def fmt_value(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def hashable_value(v: Any) -> Any:
    if isinstance(v, list):
        return tuple(hashable_value(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, hashable_value(x)) for k, x in v.items()))
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def open_runs(store: str | Path, sweep: str | None) -> tuple[list[dict], pd.DataFrame]:
    """(the sweeps rows, load_runs of the store) or ReportError."""
    from ..sweep.store import StoreError, load_runs, load_sweeps

    path = Path(store).expanduser()
    if not path.exists():
        raise ReportError(f"{path}: no such store")
    try:
        sweeps = [{"name": r["name"], "config": r["config"]} for r in load_sweeps(path)]  # read-only
        runs = load_runs(path)
    except StoreError as e:
        raise ReportError(str(e)) from None
    if sweep is not None:
        if sweep not in {s["name"] for s in sweeps}:
            names = ", ".join(s["name"] for s in sweeps) or "none"
            raise ReportError(f"{path}: unknown sweep {sweep!r} (sweeps: {names})")
        sweeps = [s for s in sweeps if s["name"] == sweep]
    if not sweeps:
        raise ReportError(f"{path}: the store holds no sweeps")
    return sweeps, runs


def sweep_runs(store: str | Path, name: str) -> pd.DataFrame:
    from ..sweep.store import StoreError, load_runs

    try:
        return load_runs(Path(store).expanduser(), name)
    except StoreError as e:
        raise ReportError(str(e)) from None


def _varying(done: pd.DataFrame) -> dict[str, list[Any]]:
    out = {}
    for column in done.columns:
        if column in _RUN_COLUMNS or column.startswith("_"):
            continue
        values = {hashable_value(v) for v in done[column]}
        if len(values) > 1:
            out[column] = sorted(values, key=lambda v: (str(type(v)), v if v is not None else 0))
    return out


def _follows(done: pd.DataFrame, column: str, leader: str) -> bool:
    """True when each value of `leader` comes with a single value of `column`."""
    keys = done[leader].map(hashable_value)
    values = done[column].map(hashable_value)
    return bool(pd.DataFrame({"k": keys, "v": values}).groupby("k")["v"].nunique(dropna=False).max() <= 1)


def default_size(kind: str) -> str:
    """The config column that names a model size for runs of `kind` (its record in bitscale.runs.kinds)."""
    return KINDS[kind].default_size


def compare_table(runs: pd.DataFrame, *, size: str, reference: str, metric: str, n_column: str) -> pd.DataFrame:
    """compare_frame on a DataFrame of done runs with a "_label" column (bitscale.sweep.compare documents
    the columns and the Welch standard error of the gap)."""
    from ..sweep.compare import compare_frame

    return compare_frame(runs, label="_label", size=size, reference=reference, metric=metric, n_column=n_column)


def collect(store: str | Path, *, sweep: str | None = None, by: str = "model.quant", size: str | None = None,
            reference: str = "fp32", metric: str = "final_test_loss") -> list[SweepData]:
    """One SweepData per sweep of `store` (or the one named); see the module docstring."""
    from ..laws.inputs import quant_labels

    sweeps, all_runs = open_runs(store, sweep)
    out = []
    for s in sweeps:
        runs = sweep_runs(store, s["name"])
        counts = {k: int(v) for k, v in runs["status"].value_counts().items()} if not runs.empty else {}
        done = runs[runs["status"] == "done"].reset_index(drop=True)
        if done.empty:
            if sweep is not None or len(sweeps) == 1:
                raise ReportError(f"{store}: sweep {s['name']!r} has no runs with status 'done' "
                                  f"({', '.join(f'{n} {k}' for k, n in counts.items()) or 'no runs'})")
            continue  # other sweeps of the store may still be reported
        named = [k for k in done["kind"] if isinstance(k, str)] if "kind" in done.columns else []
        kind = kind_of({"kind": named[0] if named else None})
        done = quant_labels(done) if by == "model.quant" else done
        size_col = size or default_size(kind)
        n_column = "n_params_non_embedding" if done["n_params_non_embedding"].notna().all() else "n_params"
        try:
            done = label_variants(done, by=by, reference=reference, source=f"{store}: sweep {s['name']!r}",
                                  columns={"--by": by, "--size": size_col, "metric": metric},
                                  reference_flag="--reference")
        except CompareError as e:
            raise ReportError(str(e)) from None
        varying = _varying(done.drop(columns=["_label"]))
        axes = [c for c in varying if c not in (by, size_col) and c not in SEED_COLUMNS
                and not c.startswith(f"{by}.") and not _follows(done, c, size_col) and not _follows(done, c, by)]
        data_axis = next((c for c in DATA_COLUMNS if c in axes), None)
        data = SweepData(s["name"], s["config"], kind, runs, done, counts, by, size_col, reference, metric,
                         n_column, varying, axes, data_axis)
        groups = done.groupby([done[a].map(hashable_value) for a in axes], sort=True) if axes else [((), done)]
        for key, part in groups:
            key = key if isinstance(key, tuple) else (key,)
            part = part.reset_index(drop=True)
            table = compare_table(part, size=size_col, reference=reference, metric=metric, n_column=n_column)
            train = compare_table(part, size=size_col, reference=reference, metric="final_train_loss",
                                  n_column=n_column)
            data.slices.append(Slice(dict(zip(axes, key)), part, table, train))
        out.append(data)
    if not out:
        raise ReportError(f"{store}: no sweep has runs with status 'done'")
    return out


def finite(x: Any) -> float | None:
    """x as a float, or None when it is missing or not finite (JSON-able)."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if np.isfinite(x) else None
