"""Where scaling-law data comes from: a bitscale results store, or any CSV file.

    from_store(path, sweep=..., by="model.quant")         -> [LawData, ...]  one per value of `by`
    from_store(path, curves=True)                          -> one point per (run, evaluation step)
    from_csv(path, parse_columns("N=params,D=tokens,loss=val_loss"))

Variables are short names (N, D, C, P, Q, S, p, t; see API.md). Each is given by an expression over
the source's columns, evaluated safely: the expression is parsed with `ast` and only numbers, column
names (dotted names such as model.width are columns too; quote any other name in backticks, e.g.
`val loss`), earlier variables, + - * / **, unary minus, parentheses and log, log10, exp, sqrt are
accepted. Nothing is ever passed to eval. A categorical variable (Q, the precision label) must be a
plain column name; its values become string labels.

Defaults for a store (accounting as in bitscale.sweep.accounting, C = 6·N·samples, Kaplan et al. 2020):
N = p = n_params, D = task.n_train (samples; for a language-model sweep, which has no task.n_train,
D = samples_seen = tokens), C = train_flops, P = bits_per_weight, Q = model.quant, S = t = train.steps,
loss = final_test_loss (or final_train_loss; an LM run's test loss is its validation loss). With
curves=True every evaluation step s > 0 of every run is a point with S = t = s and
C = train_flops · s / steps_done, the compute spent up to s (and, for LMs, D = tokens seen up to s).

Rows with a missing value (an empty CSV cell, a NULL loss) in a used column are dropped with a
warning; anything else that cannot be used raises LawDataError with one line naming the problem.
"""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from .data import LawData, LawDataError

STORE_VARIABLES: dict[str, str] = {
    "N": "n_params", "D": "task.n_train", "C": "train_flops", "P": "bits_per_weight",
    "Q": "model.quant", "S": "train.steps", "p": "n_params", "t": "train.steps",
}
CATEGORICAL = frozenset({"Q"})
FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "log": np.log, "log10": np.log10, "exp": np.exp, "sqrt": np.sqrt,
}
_BINOPS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide,
           ast.Pow: np.power}
_ALLOWED = "numbers, column names, + - * / **, parentheses and " + ", ".join(FUNCTIONS)


# -- expressions ----------------------------------------------------------------------------------

def parse_columns(spec: str) -> dict[str, str]:
    """"N=params,D=FLOP/(6*N),loss=val_loss" -> {"N": "params", "D": "FLOP/(6*N)", "loss": "val_loss"}.

    Commas inside parentheses or backticks do not split. Raises LawDataError for an item without
    '=', a name that is not an identifier, or a variable given twice."""
    items, depth, quoted, buf = [], 0, False, ""
    for ch in spec:
        if ch == "`":
            quoted = not quoted
        elif not quoted and ch in "()":
            depth += 1 if ch == "(" else -1
        if ch == "," and depth == 0 and not quoted:
            items.append(buf)
            buf = ""
        else:
            buf += ch
    items.append(buf)
    columns: dict[str, str] = {}
    for item in items:
        name, eq, expr = item.partition("=")
        name, expr = name.strip(), expr.strip()
        if not eq or not expr:
            raise LawDataError(f"columns: expected VARIABLE=EXPRESSION, got {item.strip()!r} in {spec!r}")
        if not name.isidentifier():
            raise LawDataError(f"columns: variable name {name!r} is not an identifier (in {item.strip()!r})")
        if name in columns:
            raise LawDataError(f"columns: variable {name!r} is given twice in {spec!r}")
        columns[name] = expr
    return columns


class _Evaluator:
    """Evaluate one expression over the rows of `table`; names are earlier `variables` first, then
    columns. `missing` flags the rows where a column the expression reads is empty."""

    def __init__(self, expr: str, table: pd.DataFrame, variables: Mapping[str, np.ndarray], source: str):
        self.expr, self.table, self.variables, self.source = expr, table, variables, source
        self.missing = np.zeros(len(table), dtype=bool)
        self.quoted: dict[str, str] = {}

        def quote(m: re.Match) -> str:
            self.quoted[f"__quoted{len(self.quoted)}__"] = m.group(1)
            return f"__quoted{len(self.quoted) - 1}__"

        try:
            self.tree = ast.parse(re.sub(r"`([^`]*)`", quote, expr).strip(), mode="eval").body
        except SyntaxError:
            raise LawDataError(f"{source}: cannot parse expression {expr!r} (allowed: {_ALLOWED})") from None

    def fail(self, what: str) -> LawDataError:
        return LawDataError(f"{self.source}: expression {self.expr!r}: {what}")

    def column(self, name: str) -> pd.Series:
        if name in self.variables:
            return pd.Series(self.variables[name])
        if name not in self.table.columns:
            raise self.fail(f"unknown column {name!r}; available: {', '.join(map(str, self.table.columns))}")
        return self.table[name].reset_index(drop=True)

    def name_of(self, node: ast.AST) -> str | None:
        """The column a Name or dotted Attribute chain (model.width) refers to, else None."""
        if isinstance(node, ast.Name):
            return self.quoted.get(node.id, node.id)
        if isinstance(node, ast.Attribute):
            head = self.name_of(node.value)
            return None if head is None else f"{head}.{node.attr}"
        return None

    def categorical(self) -> np.ndarray:
        """The values of a plain-name expression as string labels (dtype object; None where empty)."""
        name = self.name_of(self.tree)
        if name is None:
            raise self.fail("a categorical variable must be a plain column name")
        labels = [None if _missing(v) else _format(v) for v in self.column(name)]
        self.missing = np.array([v is None for v in labels], dtype=bool)
        return np.array(labels, dtype=object)

    def numeric(self) -> np.ndarray:
        """Float64 values (NaN in the rows flagged missing)."""
        with np.errstate(all="ignore"):
            out = np.asarray(self.visit(self.tree), dtype=np.float64)
        if out.ndim == 0:
            raise self.fail("refers to no column (a constant is not data)")
        bad = ~np.isfinite(out) & ~self.missing
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise self.fail(f"gives a non-finite value in {int(bad.sum())} row(s), first at data row {i + 1}")
        return out

    def visit(self, node: ast.AST) -> Any:
        name = self.name_of(node)
        if name is not None:
            series = self.column(name)
            values = pd.to_numeric(series, errors="coerce")
            bad = series.notna() & values.isna()
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise self.fail(f"column {name!r} is not numeric (data row {i + 1} holds {series.iloc[i]!r}); "
                                f"a categorical column may only be used on its own, e.g. Q={name}")
            self.missing |= values.isna().to_numpy()
            return values.to_numpy(dtype=np.float64)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return np.float64(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](self.visit(node.left), self.visit(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = self.visit(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS
                and len(node.args) == 1 and not node.keywords):
            return FUNCTIONS[node.func.id](self.visit(node.args[0]))
        raise self.fail(f"{ast.unparse(node)!r} is not allowed (allowed: {_ALLOWED})")


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and np.isnan(v))


def _format(v: Any) -> str:
    """A value as a label: 256.0 -> "256", 1.58 -> "1.58", "fp32" -> "fp32"."""
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    return str(v)


def _evaluate(table: pd.DataFrame, columns: Mapping[str, str], source: str,
              required: Callable[[str], bool] = lambda var: True) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Evaluate every variable -> expression in order; later ones may use earlier variables.
    Returns the values and a mask of rows with a missing input to a `required` variable."""
    values: dict[str, np.ndarray] = {}
    missing = np.zeros(len(table), dtype=bool)
    for var, expr in columns.items():
        ev = _Evaluator(str(expr), table, values, f"{source}: {var}")
        values[var] = ev.categorical() if var in CATEGORICAL else ev.numeric()
        if required(var):
            missing |= ev.missing
    return values, missing


def _split(table: pd.DataFrame, values: dict[str, np.ndarray], groups: np.ndarray | None, by: str | None,
           label: str, source: str) -> list[LawData]:
    """One LawData per distinct value of column `by` (sorted), or one for the whole table."""
    loss = values.pop("loss")
    if by is None:
        return [LawData(x=values, loss=loss, groups=groups, label=label)]
    if by not in table.columns:
        raise LawDataError(f"{source}: by: unknown column {by!r}; available: {', '.join(map(str, table.columns))}")
    keys = np.array([_format(v) if not _missing(v) else "None" for v in table[by]], dtype=object)
    order = sorted(set(keys), key=lambda k: (0, float(k), k) if _is_number(k) else (1, 0.0, k))
    out = []
    for key in order:
        mask = keys == key
        out.append(LawData(x={k: v[mask] for k, v in values.items()}, loss=loss[mask],
                           groups=None if groups is None else groups[mask], label=f"{by}={key}"))
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _drop_missing(table: pd.DataFrame, missing: np.ndarray, source: str) -> pd.DataFrame:
    if missing.any():
        warnings.warn(f"{source}: dropped {int(missing.sum())} of {len(missing)} rows with a missing value",
                      stacklevel=3)
    return table.loc[~missing].reset_index(drop=True)


# -- sources --------------------------------------------------------------------------------------

def quant_labels(table: pd.DataFrame) -> pd.DataFrame:
    """Give every run a `model.quant` label: the preset name, or for a quant table (stored flattened as
    model.quant.weight, ...) its preset name if it equals one, else 'w:<weight> a:<act>' plus the
    fields that differ from the defaults."""
    sub = [c for c in table.columns if c.startswith("model.quant.")]
    if not sub:
        return table
    from ..quant import QuantConfig, preset_name

    defaults = QuantConfig().model_dump()
    labels = list(table["model.quant"]) if "model.quant" in table.columns else [None] * len(table)
    for i, row in enumerate(table[sub].to_dict(orient="records")):
        if not _missing(labels[i]):
            continue
        fields = {k.removeprefix("model.quant."): v for k, v in row.items() if not _missing(v)}
        try:
            config = QuantConfig(**fields)
        except Exception:  # noqa: BLE001 - an unreadable table still gets a distinct label
            labels[i] = ",".join(f"{k}={_format(v)}" for k, v in sorted(fields.items()))
            continue
        extra = [f"{k}={_format(v)}" for k, v in config.model_dump().items()
                 if k not in ("weight", "act", "ste", "act_ste") and v != defaults[k]]
        labels[i] = preset_name(config) or " ".join([config.label, *extra])
    table = table.copy()
    table["model.quant"] = labels
    return table


def from_store(path: str | Path, *, sweep: str | None = None, by: str | None = None,
               variables: Mapping[str, str] | None = None, split: str = "test",
               curves: bool = False) -> list[LawData]:
    """Scaling-law data from the finished ("done") runs of a results store (of `sweep`, if given).

    `variables` adds to or overrides STORE_VARIABLES (variable -> column or expression; "loss" too).
    Defaults whose column the store lacks (or holds no value in) are left out; one missing for some
    runs stays NaN (a law that needs it then says so). Runs without a loss, or without a value for a
    variable given in `variables`, are dropped with a warning. groups are train.seed (run id with curves).
    `by` is a column (e.g. "model.quant"): one LawData per value, labelled "model.quant=fp32";
    otherwise one LawData labelled with the sweep name or "all"."""
    from ..sweep.store import StoreError, load_metrics, load_runs

    if split not in ("train", "test"):
        raise LawDataError(f"split: expected 'train' or 'test', got {split!r}")
    source = f"{path}" + (f" (sweep {sweep!r})" if sweep else "")
    try:
        runs = load_runs(path, sweep)
    except StoreError as e:
        raise LawDataError(str(e)) from None
    if runs.empty:
        raise LawDataError(f"{source}: no runs" + (" (is the sweep name right?)" if sweep else ""))
    runs = quant_labels(runs[runs["status"] == "done"].reset_index(drop=True))
    if runs.empty:
        raise LawDataError(f"{source}: no runs with status 'done' to fit")

    columns = {k: v for k, v in STORE_VARIABLES.items() if v in runs.columns and runs[v].notna().any()}
    if "D" not in columns and "samples_seen" in runs.columns:  # language models: D = tokens seen
        columns["D"] = "samples_seen"
    columns["loss"] = f"final_{split}_loss"
    group_col = "train.seed"
    if curves:
        metrics = load_metrics(path, sweep)
        metrics = metrics[(metrics["name"] == "loss") & (metrics["split"] == split) & (metrics["step"] > 0)]
        table = runs.merge(metrics[["run", "step", "value"]].rename(columns={"run": "id"}), on="id")
        if table.empty:
            raise LawDataError(f"{source}: the done runs have no {split} loss curve (metric 'loss' at steps > 0)")
        table = table.rename(columns={"value": "curve_loss"})
        steps = table["steps_done"].fillna(table.get("train.steps", np.nan))
        table["curve_flops"] = table["train_flops"] * table["step"] / steps
        columns.update(S="step", t="step", C="curve_flops", loss="curve_loss")
        if columns.get("D") == "samples_seen":
            table["curve_samples"] = table["samples_seen"] * table["step"] / steps
            columns["D"] = "curve_samples"
        group_col = "id"
    else:
        table = runs
    columns.update(variables or {})
    return from_frame(table, columns, by=by, group=group_col, label=sweep or "all", source=source,
                      required=lambda var: var == "loss" or var in (variables or {}))


def from_frame(table: pd.DataFrame, columns: Mapping[str, str], *, by: str | None = None,
               group: str | None = None, label: str = "all", source: str = "data",
               required: Callable[[str], bool] = lambda var: True) -> list[LawData]:
    """Scaling-law data from any DataFrame (what from_store and from_csv end in): evaluate `columns`
    (variable -> expression, "loss" included), drop rows missing a `required` variable with a warning,
    and split by column `by`. `group` names the column of resampling groups (e.g. train.seed)."""
    values, missing = _evaluate(table, columns, source, required)
    table = _drop_missing(table, missing, source)
    values = {k: v[~missing] for k, v in values.items()}
    if table.empty:
        raise LawDataError(f"{source}: every row has a missing value in the variables used")
    groups = table[group].to_numpy() if group is not None and group in table.columns else None
    return _split(table, values, groups, by, label, source)


def from_csv(path: str | Path, columns: Mapping[str, str], *, by: str | None = None,
             group: str | None = None) -> list[LawData]:
    """Scaling-law data from a CSV file (header row, one row per point).

    `columns` maps variable -> expression over the CSV's columns (see parse_columns) and must include
    "loss". `by` is a CSV column: one LawData per value, labelled "<by>=<value>"; otherwise one
    labelled with the file name. `group` is a CSV column of resampling units (e.g. seed)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise LawDataError(f"{path}: CSV file not found")
    if "loss" not in columns:
        raise LawDataError(f"columns: 'loss' is required (got {', '.join(columns) or 'nothing'})")
    try:
        table = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise LawDataError(f"{path}: the CSV file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise LawDataError(f"{path}: not a readable CSV file ({str(e).splitlines()[0]})") from None
    if table.empty:
        raise LawDataError(f"{path}: the CSV file has a header but no data rows")
    for name, what in ((group, "group"), (by, "by")):
        if name is not None and name not in table.columns:
            raise LawDataError(f"{path}: {what}: unknown column {name!r}; available: {', '.join(map(str, table.columns))}")
    values, missing = _evaluate(table, dict(columns), str(path))
    table = _drop_missing(table, missing, str(path))
    values = {k: v[~missing] for k, v in values.items()}
    if table.empty:
        raise LawDataError(f"{path}: every row has a missing value in the columns used")
    groups = table[group].to_numpy() if group is not None else None
    return _split(table, values, groups, by, path.stem, str(path))
