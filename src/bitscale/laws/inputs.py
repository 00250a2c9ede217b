"""Where scaling-law data comes from: a bitscale results store, or any CSV file.

    from_store(path, sweep=..., by="model.quant")         -> [LawData, ...]  one per value of `by`
    from_store(path, curves=True)                          -> one point per (run, evaluation step)
    from_csv(path, parse_columns("N=params,D=tokens,loss=val_loss"))
    from_csv(path, columns, where="family != 'QuantLM'", holdout="N >= 1e9")

Variables are short names (N, D, C, P, Q, S, p, t, bits; see API.md). Each is given by an expression
over the source's columns, evaluated safely: the expression is parsed with `ast` and only numbers,
column names (dotted names such as model.width are columns too; quote any other name in backticks,
e.g. `val loss`), earlier variables, + - * / **, unary minus, parentheses and log, log10, exp, sqrt
are accepted. Nothing is ever passed to eval. A categorical variable (Q, the precision label) must be
a plain column name; its values become string labels. parse_columns (and `bitscale fit` for --where
and --holdout) refuses an expression over 200 characters or nested over 32 levels deep.

Defaults for a store (accounting as in bitscale.sweep.accounting, C = 6·N·samples, Kaplan et al. 2020):
N = p = n_params, D = task.n_train (samples; for a language-model sweep, which has no task.n_train,
D = samples_seen = tokens), C = train_flops, P = precision_bits (information bits per weight, the
precision variable of the laws: log2(3) ≈ 1.58 for ternary, 32 for fp32), bits = storage_bits_per_weight
(bits a weight takes in memory, scales included, for memory comparisons), Q = model.quant,
S = t = train.steps, loss = final_test_loss (or final_train_loss; an LM run's test loss is its
validation loss). With curves=True every evaluation step s > 0 of every run is a point with S = t = s
and C = train_flops · s / steps_done, the compute spent up to s (and, for LMs, D = tokens seen up to s).

Selecting rows: `where` and `holdout` are conditions in the same language (see select_rows), made of
the above plus
    comparisons  == != < <= > >=, chained as in Python (1e6 <= N < 1e9 is 1e6 <= N and N < 1e9),
    and, or, not, parentheses, and string constants in quotes ('BitNet' or "fp32").
A name is a variable (N, D, loss, ... as defined by the columns) or else a column (family,
model.quant, `val loss`). A string (a column holding text, or a categorical variable such as Q, whose
values are labels: Q == '1000', not Q == 1000) may only be compared with == or != to a string; a
number with a number. A condition is not a number (no (N > 1) + 1) and a number is not a condition
(no `N and D`: write N > 0 and D > 0).
    missing values: a row with a missing value (an empty cell, a NULL, a NaN variable; also a NaN
    from the arithmetic, e.g. log of a negative number) in any column or variable the condition reads
    is False, not selected, whatever the operators around it (also under not: `not N > 1` does not
    select a row without N).
    where:   keep only the rows where the condition is True. It is evaluated after the variables
             (so N >= 1e8 works with N = params/1e6 or any other definition) on every row of the
             source, and before the rows are split by `by`; a row it excludes is never checked for
             missing or non-finite variables. Selecting no row is an error.
    holdout: mark the rows (among those kept) to hold out of the fit for the extrapolation check, e.g.
             N >= 1e9 or family == 'BitNet' and N > 3e9; carried as LawData.held_out, one mask per
             `by` group. Marking no row or every row (of all groups together) is an error.

Rows with a missing value (an empty CSV cell, a NULL loss) in a used column are dropped with a
warning; anything else that cannot be used raises LawDataError with one line naming the problem.
"""

from __future__ import annotations

import ast
import functools
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from .data import LawData, LawDataError, is_categorical

STORE_VARIABLES: dict[str, str] = {
    "N": "n_params", "D": "task.n_train", "C": "train_flops", "P": "precision_bits",
    "bits": "storage_bits_per_weight", "Q": "model.quant", "S": "train.steps", "p": "n_params",
    "t": "train.steps",
}
CATEGORICAL = frozenset({"Q"})
FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "log": np.log, "log10": np.log10, "exp": np.exp, "sqrt": np.sqrt,
}
_BINOPS = {ast.Add: np.add, ast.Sub: np.subtract, ast.Mult: np.multiply, ast.Div: np.divide,
           ast.Pow: np.power}
_COMPARE = {ast.Eq: ("==", np.equal), ast.NotEq: ("!=", np.not_equal), ast.Lt: ("<", np.less),
            ast.LtE: ("<=", np.less_equal), ast.Gt: (">", np.greater), ast.GtE: (">=", np.greater_equal)}
_ALLOWED = "numbers, column names, + - * / **, parentheses and " + ", ".join(FUNCTIONS)
_ALLOWED_CONDITION = ("numbers, 'strings', column and variable names, + - * / **, == != < <= > >= "
                      "(chained too), and, or, not, parentheses and " + ", ".join(FUNCTIONS))


# -- expressions ----------------------------------------------------------------------------------

MAX_EXPRESSION_CHARS = 200  # one variable's expression (or one --where / --holdout condition)
MAX_EXPRESSION_DEPTH = 32  # nested operators, calls and names, counted on the parsed expression
MAX_COLUMNS_CHARS = 2000  # a whole --columns spec


def expression_depth(expr: str) -> int:
    """How deeply the expression nests: the larger of its parentheses' nesting and its parsed tree's
    depth (a name: 1; log(N): 2; N + N + N: 3; - - N: 3), counted without recursion. An expression that
    does not parse counts its parentheses only (the evaluator then says what is wrong with it)."""
    text = re.sub(r"`[^`]*`", "x", expr).strip()
    parens = level = 0
    for ch in text:
        level += 1 if ch == "(" else -1 if ch == ")" else 0
        parens = max(parens, level)
    try:
        tree = ast.parse(text, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return parens
    deepest, stack = parens, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node)
                     if not isinstance(child, (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)))
    return deepest


def check_expression_size(expr: str, source: str) -> None:
    """Refuse, with one LawDataError line starting with `source`, an expression longer than
    MAX_EXPRESSION_CHARS characters or nested deeper than MAX_EXPRESSION_DEPTH levels: real variable
    definitions and conditions are short and shallow, and the evaluator recurses once per level."""
    if len(expr) > MAX_EXPRESSION_CHARS:
        raise LawDataError(f"{source}: expression is {len(expr)} characters long; at most {MAX_EXPRESSION_CHARS} "
                           f"are accepted")
    depth = expression_depth(expr)
    if depth > MAX_EXPRESSION_DEPTH:
        raise LawDataError(f"{source}: expression is nested {depth} levels deep; at most {MAX_EXPRESSION_DEPTH} "
                           f"are accepted")


def parse_columns(spec: str) -> dict[str, str]:
    """"N=params,D=FLOP/(6*N),loss=val_loss" -> {"N": "params", "D": "FLOP/(6*N)", "loss": "val_loss"}.

    Commas inside parentheses or backticks do not split. Raises LawDataError for a spec longer than
    MAX_COLUMNS_CHARS, an item without '=', a name that is not an identifier, a variable given twice,
    or an expression longer than MAX_EXPRESSION_CHARS or nested deeper than MAX_EXPRESSION_DEPTH."""
    if len(spec) > MAX_COLUMNS_CHARS:
        raise LawDataError(f"columns: the spec is {len(spec)} characters long; at most {MAX_COLUMNS_CHARS} are accepted")
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
        check_expression_size(expr, f"columns: {name}")
        columns[name] = expr
    return columns


def select_rows(expr: str, table: pd.DataFrame, variables: Mapping[str, np.ndarray] | None = None,
                source: str = "where") -> np.ndarray:
    """The rows of `table` where condition `expr` holds: a bool array of shape (len(table),).

    `expr` is a condition in the language of the module docstring ("1e6 <= N < 1e9",
    "family != 'QuantLM' and not model.quant == 'fp32'"); its names are `variables` (name -> (n,)
    values, e.g. from the columns spec) first, then columns of `table`. A row with a missing value
    (empty cell, NULL, NaN) in any column or variable the condition reads is False. Raises
    LawDataError (one line, starting with `source`) for a condition that cannot be parsed, uses
    anything not allowed, compares text with a number or with < <= > >=, or reads no column."""
    variables = dict(variables or {})
    for name, values in variables.items():
        if np.shape(values) != (len(table),):
            raise LawDataError(f"{source}: variable {name} has shape {np.shape(values)}; "
                               f"expected ({len(table)},) like the table")
    return _Evaluator(str(expr), table, variables, source, condition=True).condition()


@dataclass
class _Labels:
    """Text values met in a condition: a text column or a categorical variable (None where empty)."""

    what: str  # "column 'family'" or "variable 'Q'"
    name: str
    values: np.ndarray
    example: str


def _kind(value: Any) -> str:
    """'text', 'bool' (a condition) or 'number' for a value met while evaluating a condition."""
    if isinstance(value, (_Labels, str)):
        return "text"
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, np.ndarray) and value.dtype == bool):
        return "bool"
    return "number"


def _dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


class _Evaluator:
    """Evaluate one expression over the rows of `table`; names are earlier `variables` first, then
    columns. `missing` flags the rows where a column the expression reads is empty. With
    condition=True the expression is a condition (comparisons, and/or/not, strings; see select_rows),
    otherwise arithmetic only."""

    def __init__(self, expr: str, table: pd.DataFrame, variables: Mapping[str, np.ndarray], source: str,
                 condition: bool = False):
        self.expr, self.table, self.variables, self.source = expr, table, variables, source
        self.condition_mode = condition
        self.allowed = _ALLOWED_CONDITION if condition else _ALLOWED
        self.missing = np.zeros(len(table), dtype=bool)
        self.quoted: dict[str, str] = {}

        def quote(m: re.Match) -> str:
            self.quoted[f"__quoted{len(self.quoted)}__"] = m.group(1)
            return f"__quoted{len(self.quoted) - 1}__"

        try:
            self.tree = ast.parse(re.sub(r"`([^`]*)`", quote, expr).strip(), mode="eval").body
        except SyntaxError:
            raise LawDataError(f"{source}: cannot parse expression {expr!r} (allowed: {self.allowed})") from None

    def fail(self, what: str) -> LawDataError:
        return LawDataError(f"{self.source}: expression {self.expr!r}: {what}")

    def show(self, node: ast.AST) -> str:
        """A sub-expression as the user wrote it (backticked names restored)."""
        return re.sub(r"__quoted\d+__", lambda m: f"`{self.quoted.get(m.group(0), m.group(0))}`", ast.unparse(node))

    def column(self, name: str) -> pd.Series:
        if name in self.variables:
            return pd.Series(self.variables[name])
        if name not in self.table.columns:
            known = f"; variables: {', '.join(self.variables)}" if self.condition_mode and self.variables else ""
            raise self.fail(f"unknown column {name!r}; available: {', '.join(map(str, self.table.columns))}{known}")
        return self.table[name].reset_index(drop=True)

    def name_of(self, node: ast.AST) -> str | None:
        """The column a Name or dotted Attribute chain (model.width) refers to, else None (also for a
        __dunder__ part, which is never a column: quote such a name in backticks)."""
        if isinstance(node, ast.Name):
            if node.id in self.quoted:
                return self.quoted[node.id]
            return None if _dunder(node.id) else node.id
        if isinstance(node, ast.Attribute):
            head = self.name_of(node.value)
            return None if head is None or _dunder(node.attr) else f"{head}.{node.attr}"
        return None

    def categorical(self) -> np.ndarray:
        """The values of a plain-name expression as string labels (dtype object; None where empty)."""
        name = self.name_of(self.tree)
        if name is None:
            raise self.fail("a categorical variable must be a plain column name")
        labels = [None if _missing(v) else _format(v) for v in self.column(name)]
        self.missing = np.array([v is None for v in labels], dtype=bool)
        return np.array(labels, dtype=object)

    def numeric(self, finite: bool = True) -> np.ndarray:
        """Float64 values (NaN in the rows flagged missing). With finite=False a non-finite value in
        another row is left for check_finite."""
        with np.errstate(all="ignore"):
            out = np.asarray(self.visit(self.tree), dtype=np.float64)
        if out.ndim == 0:
            raise self.fail("refers to no column (a constant is not data)")
        if finite:
            self.check_finite(out)
        return out

    def check_finite(self, out: np.ndarray, rows: np.ndarray | None = None) -> None:
        """Raise if `out` is NaN or inf in a row (of `rows`, if given) that has all its inputs."""
        bad = ~np.isfinite(out) & ~self.missing
        if rows is not None:
            bad &= rows
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise self.fail(f"gives a non-finite value in {int(bad.sum())} row(s), first at data row {i + 1}")

    def condition(self) -> np.ndarray:
        """The condition's truth per row (False where a value it reads is missing)."""
        with np.errstate(all="ignore"):
            out = self.visit(self.tree)
        if _kind(out) != "bool":
            raise self.fail(f"is not a condition; compare, e.g. N >= 1e9 or family == 'BitNet' "
                            f"(allowed: {self.allowed})")
        if np.ndim(out) == 0:
            raise self.fail("refers to no column (a constant condition selects all rows or none)")
        return np.asarray(out, dtype=bool) & ~self.missing

    def read(self, name: str) -> Any:
        """A column's or variable's values: float64 (NaN where missing), or in a condition _Labels for
        text."""
        if self.condition_mode and name in self.variables and is_categorical(self.variables[name]):
            labels = np.asarray(self.variables[name], dtype=object)
            empty = np.array([_missing(v) for v in labels], dtype=bool)
            self.missing |= empty
            example = next((str(v) for v, e in zip(labels, empty) if not e), "")
            return _Labels(f"variable {name!r}", name, np.where(empty, None, labels), example)
        series = self.column(name)
        values = pd.to_numeric(series, errors="coerce")
        bad = series.notna() & values.isna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            if self.condition_mode:
                labels = np.array([None if _missing(v) else _format(v) for v in series], dtype=object)
                self.missing |= np.array([v is None for v in labels], dtype=bool)
                return _Labels(f"column {name!r}", name, labels, _format(series.iloc[i]))
            raise self.fail(f"column {name!r} is not numeric (data row {i + 1} holds {series.iloc[i]!r}); "
                            f"a categorical column may only be used on its own, e.g. Q={name}")
        self.missing |= values.isna().to_numpy()
        return values.to_numpy(dtype=np.float64)

    def number(self, node: ast.AST) -> Any:
        value = self.visit(node)
        kind = _kind(value)
        if kind == "number":
            return value
        if isinstance(value, _Labels):
            raise self.fail(f"{value.what} holds text ({value.example!r}), not numbers; text may only be "
                            f"compared with == or != to a string, e.g. {self.show(node)} == {value.example!r}")
        what = "a string" if kind == "text" else "a condition"
        raise self.fail(f"{self.show(node)!r} is {what}, not a number")

    def truth(self, node: ast.AST) -> Any:
        value = self.visit(node)
        if _kind(value) == "bool":
            return value
        example = f"{self.show(node)} == 'x'" if _kind(value) == "text" else f"{self.show(node)} > 0"
        raise self.fail(f"{self.show(node)!r} is not a condition; and, or, not take comparisons, e.g. {example}")

    def compare(self, node: ast.Compare) -> Any:
        """a < b <= c ... as (a < b) and (b <= c), each operand evaluated once."""
        result: Any = None
        left_node, left = node.left, self.visit(node.left)
        for op, right_node in zip(node.ops, node.comparators):
            right = self.visit(right_node)
            symbol, fn = _COMPARE[type(op)]
            pair = f"{self.show(left_node)} {symbol} {self.show(right_node)}"
            kinds = {_kind(left), _kind(right)}
            if "bool" in kinds:
                raise self.fail(f"{pair!r} compares a condition; combine conditions with and, or, not")
            if kinds == {"number"}:
                for value in (left, right):
                    if np.ndim(value):
                        self.missing |= np.isnan(value)
                out = fn(left, right)
            elif symbol not in ("==", "!="):
                raise self.fail(f"{pair!r}: {symbol} needs numbers; text may only be compared "
                                f"with == or != to a string")
            elif kinds == {"text"}:
                a, b = (v.values if isinstance(v, _Labels) else v for v in (left, right))
                out = np.asarray(a == b if symbol == "==" else a != b, dtype=bool)
            else:
                raise self.fail(f"{pair!r} compares text with a number; text may only be compared with == "
                                f"or != to a string (a label is text even if it looks like a number: "
                                f"quote it, e.g. Q == '1000')")
            result = out if result is None else np.logical_and(result, out)
            left_node, left = right_node, right
        return result

    def visit(self, node: ast.AST) -> Any:
        name = self.name_of(node)
        if name is not None:
            return self.read(name)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return np.float64(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
            return _BINOPS[type(node.op)](self.number(node.left), self.number(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = self.number(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS
                and len(node.args) == 1 and not node.keywords):
            return FUNCTIONS[node.func.id](self.number(node.args[0]))
        if self.condition_mode:
            if isinstance(node, ast.Constant) and type(node.value) is str:
                return node.value
            if isinstance(node, ast.Compare) and all(type(op) in _COMPARE for op in node.ops):
                return self.compare(node)
            if isinstance(node, ast.BoolOp):
                combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
                return functools.reduce(combine, [self.truth(v) for v in node.values])
            if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
                return np.logical_not(self.truth(node.operand))
        raise self.fail(f"{self.show(node)!r} is not allowed (allowed: {self.allowed})")


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
              required: Callable[[str], bool] = lambda var: True
              ) -> tuple[dict[str, np.ndarray], np.ndarray, list[tuple[_Evaluator, np.ndarray]]]:
    """Evaluate every variable -> expression in order; later ones may use earlier variables.
    Returns the values, a mask of rows with a missing input to a `required` variable, and the
    numeric evaluations whose non-finite values are still to check (on the rows kept)."""
    values: dict[str, np.ndarray] = {}
    missing = np.zeros(len(table), dtype=bool)
    numeric: list[tuple[_Evaluator, np.ndarray]] = []
    for var, expr in columns.items():
        ev = _Evaluator(str(expr), table, values, f"{source}: {var}")
        if var in CATEGORICAL:
            values[var] = ev.categorical()
        else:
            values[var] = ev.numeric(finite=False)
            numeric.append((ev, values[var]))
        if required(var):
            missing |= ev.missing
    return values, missing, numeric


def _points(table: pd.DataFrame, columns: Mapping[str, str], source: str, required: Callable[[str], bool],
            where: str | None, holdout: str | None
            ) -> tuple[pd.DataFrame, dict[str, np.ndarray], np.ndarray | None]:
    """Evaluate the variables, keep the rows `where` selects, drop those of them missing a `required`
    variable (with a warning), and mark the `holdout` rows among those kept.
    Returns the kept rows of `table`, the variables' values on them and the held-out mask (or None)."""
    values, missing, numeric = _evaluate(table, columns, source, required)
    keep = np.ones(len(table), dtype=bool)
    if where is not None:
        keep = select_rows(where, table, values, f"{source}: where")
        if not keep.any():
            raise LawDataError(f"where: {where!r} selects none of the {len(table)} rows of {source}")
    for ev, out in numeric:
        ev.check_finite(out, keep)
    held = None if holdout is None else select_rows(holdout, table, values, f"{source}: holdout")
    missing &= keep
    if missing.any():
        warnings.warn(f"{source}: dropped {int(missing.sum())} of {int(keep.sum())} rows with a missing value",
                      stacklevel=4)
    keep &= ~missing
    if not keep.any():
        raise LawDataError(f"{source}: every row{' where selects' if where is not None else ''} "
                           f"has a missing value in the variables used")
    if held is not None:
        held, n = held[keep], int(keep.sum())
        if not held.any():
            raise LawDataError(f"holdout: {holdout!r} marks none of the {n} rows of {source}")
        if held.all():
            raise LawDataError(f"holdout: {holdout!r} marks all {n} rows of {source}, leaving none to fit")
    return table.loc[keep].reset_index(drop=True), {k: v[keep] for k, v in values.items()}, held


def _split(table: pd.DataFrame, values: dict[str, np.ndarray], groups: np.ndarray | None,
           held: np.ndarray | None, by: str | None, label: str, source: str) -> list[LawData]:
    """One LawData per distinct value of column `by` (sorted), or one for the whole table."""
    loss = values.pop("loss")
    if by is None:
        return [LawData(x=values, loss=loss, groups=groups, label=label, held_out=held)]
    if by not in table.columns:
        raise LawDataError(f"{source}: by: unknown column {by!r}; available: {', '.join(map(str, table.columns))}")
    keys = np.array([_format(v) if not _missing(v) else "None" for v in table[by]], dtype=object)
    order = sorted(set(keys), key=lambda k: (0, float(k), k) if _is_number(k) else (1, 0.0, k))
    out = []
    for key in order:
        mask = keys == key
        out.append(LawData(x={k: v[mask] for k, v in values.items()}, loss=loss[mask],
                           groups=None if groups is None else groups[mask], label=f"{by}={key}",
                           held_out=None if held is None else held[mask]))
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


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
               curves: bool = False, where: str | None = None, holdout: str | None = None,
               metric: str = "loss") -> list[LawData]:
    """Scaling-law data from the finished ("done") runs of a results store (of `sweep`, if given).

    `variables` adds to or overrides STORE_VARIABLES (variable -> column or expression; "loss" too).
    Defaults whose column the store lacks (or holds no value in) are left out; one missing for some
    runs stays NaN (a law that needs it then says so). Runs without a loss, or without a value for a
    variable given in `variables`, are dropped with a warning. groups are train.seed (run id with curves).
    `by` is a column (e.g. "model.quant"): one LawData per value, labelled "model.quant=fp32";
    otherwise one LawData labelled with the sweep name or "all". `where` keeps only the done runs (or,
    with curves, points) where a condition holds, e.g. "model.quant != 'fp32' and N >= 1e6"; `holdout`
    marks the points to hold out (LawData.held_out), e.g. "N >= 1e8"; see the module docstring. With
    curves, `metric` names the curve read as the loss: "loss", or a metric the runs record at every
    evaluation (a classification run's "error")."""
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
        metrics = metrics[(metrics["name"] == metric) & (metrics["split"] == split) & (metrics["step"] > 0)]
        table = runs.merge(metrics[["run", "step", "value"]].rename(columns={"run": "id"}), on="id")
        if table.empty:
            raise LawDataError(f"{source}: the done runs have no {split} {metric} curve (metric {metric!r} at steps > 0)")
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
                      required=lambda var: var == "loss" or var in (variables or {}), where=where,
                      holdout=holdout)


def from_frame(table: pd.DataFrame, columns: Mapping[str, str], *, by: str | None = None,
               group: str | None = None, label: str = "all", source: str = "data",
               required: Callable[[str], bool] = lambda var: True, where: str | None = None,
               holdout: str | None = None) -> list[LawData]:
    """Scaling-law data from any DataFrame (what from_store and from_csv end in): evaluate `columns`
    (variable -> expression, "loss" included), keep the rows where condition `where` holds (all if
    None), drop those missing a `required` variable with a warning, mark the rows where condition
    `holdout` holds as LawData.held_out (None if no holdout), and split by column `by`. `group` names
    the column of resampling groups (e.g. train.seed). Conditions: see the module docstring."""
    table, values, held = _points(table, columns, source, required, where, holdout)
    groups = table[group].to_numpy() if group is not None and group in table.columns else None
    return _split(table, values, groups, held, by, label, source)


def from_csv(path: str | Path, columns: Mapping[str, str], *, by: str | None = None,
             group: str | None = None, where: str | None = None, holdout: str | None = None) -> list[LawData]:
    """Scaling-law data from a CSV file (header row, one row per point).

    `columns` maps variable -> expression over the CSV's columns (see parse_columns) and must include
    "loss". `by` is a CSV column: one LawData per value, labelled "<by>=<value>"; otherwise one
    labelled with the file name. `group` is a CSV column of resampling units (e.g. seed). `where`
    keeps the rows where a condition holds, e.g. "family != 'QuantLM'"; `holdout` marks the rows to
    hold out (LawData.held_out), e.g. "N >= 1e9"; see the module docstring."""
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
    return from_frame(table, dict(columns), by=by, group=group, label=path.stem, source=str(path),
                      where=where, holdout=holdout)
