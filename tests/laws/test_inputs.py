import numpy as np
import pytest

import pandas as pd

from bitscale.laws.data import LawData, LawDataError
from bitscale.laws.inputs import from_csv, from_frame, from_store, parse_columns, select_rows
from bitscale.sweep.store import Store

# -- parse_columns -----------------------------------------------------------------------------


def test_parse_columns():
    assert parse_columns("N=params, D=FLOP/(6*N),loss=val_loss") == {
        "N": "params", "D": "FLOP/(6*N)", "loss": "val_loss"}
    assert parse_columns("x=log(a), y=`b, c`") == {"x": "log(a)", "y": "`b, c`"}


@pytest.mark.parametrize("spec, match", [
    ("N=params,loss", "expected VARIABLE=EXPRESSION"),
    ("N=", "expected VARIABLE=EXPRESSION"),
    ("1N=params", "not an identifier"),
    ("N=a,N=b", "given twice"),
])
def test_parse_columns_errors(spec, match):
    with pytest.raises(LawDataError, match=match):
        parse_columns(spec)


@pytest.mark.parametrize("spec, match", [
    ("N=" + "a" * 201, r"^columns: N: expression is 201 characters long; at most 200 are accepted$"),
    ("N=params,D=" + "+".join(["N"] * 40), r"^columns: D: expression is nested 40 levels deep; at most 32 are accepted$"),
    ("N=" + "-" * 33 + "params", r"^columns: N: expression is nested 34 levels deep; at most 32 are accepted$"),
    ("N=" + "(" * 33 + "params" + ")" * 33, r"^columns: N: expression is nested 33 levels deep"),
    ("N=" + "log(" * 33 + "p" + ")" * 33, r"^columns: N: expression is nested 34 levels deep"),
    ("N=" + "(" * 40 + "params", r"^columns: N: expression is nested 40 levels deep"),  # unbalanced: parentheses count
    ("N=params," + ",".join(f"v{i}=params" for i in range(300)), r"^columns: the spec is \d+ characters long; "
                                                                      r"at most 2000 are accepted$"),
])
def test_parse_columns_bounds_size_and_depth(spec, match):
    with pytest.raises(LawDataError, match=match):
        parse_columns(spec)


def test_parse_columns_accepts_expressions_up_to_the_bounds():
    at_length = "params" + "+1" * 97  # 200 characters, 98 levels: refused for its depth, not its length
    assert len(at_length) == 200
    with pytest.raises(LawDataError, match="nested"):
        parse_columns("N=" + at_length)
    flat = "`" + "p" * 198 + "`"  # 200 characters, one name
    assert parse_columns("N=" + flat) == {"N": flat}
    deep = "(" * 31 + "params" + ")" * 31 + " * 2"  # 32 levels
    assert parse_columns(f"N={deep}") == {"N": deep}


# -- from_csv ------------------------------------------------------------------------------------

CSV = """params,tokens,val loss,precision,seed,flop
100,1000,3.0,fp32,0,6e5
200,1000,2.5,fp32,1,1.2e6
100,2000,2.8,int4,0,1.2e6
400,2000,2.1,int4,1,4.8e6
"""


@pytest.fixture
def csv_file(tmp_path):
    path = tmp_path / "points.csv"
    path.write_text(CSV)
    return path


def test_from_csv_expressions(csv_file):
    cols = parse_columns("N=params,D=flop/(6*N),C=6*N*D,L=log10(`val loss`)+1-1,Q=precision,loss=`val loss`")
    (data,) = from_csv(csv_file, cols, group="seed")
    assert data.label == "points" and data.n == 4
    np.testing.assert_allclose(data.x["N"], [100, 200, 100, 400])
    np.testing.assert_allclose(data.x["D"], [1000, 1000, 2000, 2000])
    np.testing.assert_allclose(data.x["C"], [6e5, 1.2e6, 1.2e6, 4.8e6])
    np.testing.assert_allclose(data.x["L"], np.log10([3.0, 2.5, 2.8, 2.1]))
    assert list(data.x["Q"]) == ["fp32", "fp32", "int4", "int4"]
    np.testing.assert_allclose(data.loss, [3.0, 2.5, 2.8, 2.1])
    assert list(data.groups) == [0, 1, 0, 1]


def test_from_csv_by(csv_file):
    out = from_csv(csv_file, {"N": "params", "D": "-(-tokens)", "loss": "sqrt(`val loss`**2)"}, by="precision")
    assert [d.label for d in out] == ["precision=fp32", "precision=int4"]
    np.testing.assert_allclose(out[1].x["N"], [100, 400])
    np.testing.assert_allclose(out[1].loss, [2.8, 2.1])
    out = from_csv(csv_file, {"N": "params", "loss": "`val loss`"}, by="tokens")
    assert [d.label for d in out] == ["tokens=1000", "tokens=2000"]


def test_from_csv_numeric_categorical(csv_file):
    (data,) = from_csv(csv_file, {"Q": "tokens", "loss": "`val loss`"})
    assert list(data.x["Q"]) == ["1000", "1000", "2000", "2000"]


@pytest.mark.parametrize("expr", [
    "__import__('os').system('true')", "params.__class__()", "(lambda: 1)()", "params if 1 else 2",
    "params > 1", "[params]", "abs(params)", "log(params, 2)", "log(x=params)", "'params'", "params @ params",
    "params; 1",
])
def test_from_csv_rejects_unsafe_expressions(csv_file, expr):
    with pytest.raises(LawDataError, match="N"):
        from_csv(csv_file, {"N": expr, "loss": "`val loss`"})


def test_from_csv_errors(csv_file, tmp_path):
    with pytest.raises(LawDataError, match="not found"):
        from_csv(tmp_path / "nope.csv", {"loss": "x"})
    with pytest.raises(LawDataError, match=r"unknown column 'parms'; available: params, tokens"):
        from_csv(csv_file, {"N": "parms", "loss": "`val loss`"})
    with pytest.raises(LawDataError, match="'loss' is required"):
        from_csv(csv_file, {"N": "params"})
    with pytest.raises(LawDataError, match="column 'precision' is not numeric"):
        from_csv(csv_file, {"N": "precision*2", "loss": "`val loss`"})
    with pytest.raises(LawDataError, match="Q: .*plain column name"):
        from_csv(csv_file, {"Q": "log(params)", "loss": "`val loss`"})
    with pytest.raises(LawDataError, match="non-finite"):
        from_csv(csv_file, {"N": "log(params - 200)", "loss": "`val loss`"})
    with pytest.raises(LawDataError, match="constant"):
        from_csv(csv_file, {"N": "2", "loss": "`val loss`"})
    with pytest.raises(LawDataError, match="by: unknown column 'prec'"):
        from_csv(csv_file, {"loss": "`val loss`"}, by="prec")
    with pytest.raises(LawDataError, match="group: unknown column"):
        from_csv(csv_file, {"loss": "`val loss`"}, group="sd")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(LawDataError, match="empty"):
        from_csv(empty, {"loss": "x"})
    empty.write_text("a,b\n")
    with pytest.raises(LawDataError, match="no data rows"):
        from_csv(empty, {"loss": "a"})


def test_from_csv_drops_missing_cells(tmp_path):
    path = tmp_path / "gaps.csv"
    path.write_text("n,loss\n1,2.0\n2,\n3,1.5\n")
    with pytest.warns(UserWarning, match="dropped 1 of 3 rows"):
        (data,) = from_csv(path, {"N": "n", "loss": "loss"})
    np.testing.assert_allclose(data.x["N"], [1, 3])


# -- from_store ----------------------------------------------------------------------------------


def _config(width, quant, seed, n_train=64, steps=40):
    return {"model": {"width": width, "quant": quant}, "task": {"n_train": n_train},
            "train": {"seed": seed, "steps": steps}}


@pytest.fixture
def store_path(tmp_path):
    path = tmp_path / "runs.db"
    with Store(path) as s:
        s.add_sweep("grid", {})
        runs = []
        for width in (8, 16):
            for quant in ("fp32", "bitnet-b1.58"):
                for seed in (0, 1):
                    n = 10 * width
                    runs.append({"id": f"{quant}-{width}-{seed}", "config": _config(width, quant, seed),
                                 "n_params": n, "n_params_non_embedding": n,
                                 "precision_bits": 32.0 if quant == "fp32" else float(np.log2(3)),
                                 "storage_bits_per_weight": 32.0 if quant == "fp32" else 2.0,
                                 "train_flops": 6.0 * n * 64 * 40, "samples_seen": 64 * 40})
        s.add_runs("grid", runs)
        for i, run in enumerate(runs):
            if i == len(runs) - 1:
                continue  # stays queued
            curve = [(step, 1.0 / (1 + step) + 0.01 * i) for step in (0, 20, 40)]
            metrics = [(st, split, "loss", v * (1 if split == "test" else 0.5))
                       for st, v in curve for split in ("train", "test")]
            s.finish_run(run["id"], "failed" if i == 0 else "done", steps_done=40,
                         final_train_loss=0.5 * curve[-1][1], final_test_loss=curve[-1][1], metrics=metrics)
    return path


def test_from_store_defaults(store_path):
    (data,) = from_store(store_path)
    assert data.label == "all" and data.n == 6  # 8 runs: one failed, one queued
    assert set(data.x) == {"N", "D", "C", "P", "bits", "Q", "S", "p", "t"}
    fp32 = data.x["Q"] == "fp32"
    np.testing.assert_allclose(data.x["P"], np.where(fp32, 32.0, np.log2(3)))  # P: information bits
    np.testing.assert_allclose(data.x["bits"], np.where(fp32, 32.0, 2.0))  # bits: storage bits
    np.testing.assert_allclose(data.x["D"], 64)
    np.testing.assert_allclose(data.x["C"], 6 * data.x["N"] * 64 * 40)
    assert set(data.x["Q"]) == {"fp32", "bitnet-b1.58"}
    assert set(data.groups) == {0, 1}
    (train,) = from_store(store_path, sweep="grid", split="train")
    assert train.label == "grid"
    np.testing.assert_allclose(train.loss, 0.5 * data.loss)


def test_from_store_by_and_variables(store_path):
    out = from_store(store_path, by="model.quant", variables={"N": "model.width", "W2": "model.width**2"})
    assert [d.label for d in out] == ["model.quant=bitnet-b1.58", "model.quant=fp32"]
    assert sorted(out[1].x["N"]) == [8, 16, 16]  # fp32 width 8 seed 0 failed
    np.testing.assert_allclose(out[1].x["W2"], out[1].x["N"] ** 2)


def test_from_store_curves(store_path):
    data, _ = from_store(store_path, curves=True, by="model.width")
    assert data.label == "model.width=8"  # width 8 runs only in the first dataset
    assert sorted(set(data.x["S"])) == [20, 40]  # step 0 left out
    np.testing.assert_allclose(data.x["t"], data.x["S"])
    np.testing.assert_allclose(data.x["C"], 6 * data.x["N"] * 64 * data.x["S"])
    np.testing.assert_allclose(data.loss, 1 / (1 + data.x["S"]), atol=0.05)  # the test curve
    assert len(set(data.groups)) == 3 and all("-8-" in g for g in data.groups)


def test_from_store_errors(store_path, tmp_path):
    with pytest.raises(LawDataError, match="does not exist"):
        from_store(tmp_path / "none.db")
    with pytest.raises(LawDataError, match="by: unknown column 'model.wdth'"):
        from_store(store_path, by="model.wdth")
    with pytest.raises(LawDataError, match="N: expression 'model.wdth': unknown column"):
        from_store(store_path, variables={"N": "model.wdth"})
    with pytest.raises(LawDataError, match=r"no runs \(is the sweep name right\?\)"):
        from_store(store_path, sweep="gird")
    with pytest.raises(LawDataError, match="split"):
        from_store(store_path, split="val")
    with Store(tmp_path / "queued.db") as s:
        s.add_sweep("x", {})
        s.add_runs("x", [{"id": "a", "config": _config(8, "fp32", 0)}])
    with pytest.raises(LawDataError, match="no runs with status 'done'"):
        from_store(tmp_path / "queued.db")


def test_from_store_quant_tables(tmp_path):
    path = tmp_path / "q.db"
    quants = ["fp32", {"weight": "ternary", "act": "int8"}, {"weight": "int4", "granularity": "channel"}]
    with Store(path) as s:
        s.add_sweep("q", {})
        s.add_runs("q", [{"id": f"r{i}", "config": _config(8, q, 0), "n_params": 80, "train_flops": 1.0}
                         for i, q in enumerate(quants)])
        for i in range(3):
            s.finish_run(f"r{i}", "done", steps_done=40, final_test_loss=1.0 + i)
    out = from_store(path, by="model.quant")
    assert "P" not in out[0].x and "bits" not in out[0].x and "N" in out[0].x  # never recorded
    assert sorted(d.label for d in out) == sorted(
        ["model.quant=fp32", "model.quant=bitnet-b1.58", "model.quant=w:int4 a:fp32 granularity=channel"])


def test_from_store_where_and_holdout(store_path):
    out = from_store(store_path, by="model.quant", where="model.quant != 'fp32' or N > 100",
                     holdout="N >= 160")
    assert [d.label for d in out] == ["model.quant=bitnet-b1.58", "model.quant=fp32"]
    assert out[1].n == 2 and set(out[1].x["N"]) == {160}  # fp32 width 8 excluded by where
    assert out[1].held_out.tolist() == [True, True]
    bitnet = out[0]
    np.testing.assert_array_equal(bitnet.held_out, bitnet.x["N"] >= 160)
    (data,) = from_store(store_path, where="P < 2")  # P = precision_bits: log2(3) for ternary
    assert set(data.x["Q"]) == {"bitnet-b1.58"}
    with pytest.raises(LawDataError, match=r"^where: 'N > 1e12' selects none of the 6 rows of .*runs\.db$"):
        from_store(store_path, where="N > 1e12")


# -- conditions: select_rows, where, holdout ------------------------------------------------------

TABLE = pd.DataFrame({
    "family": ["BitNet", "BitNet", "QuantLM", "QuantLM", None, "fp"],
    "params": [1e6, 1e8, 1e7, 1e9, 1e8, np.nan],
    "model.quant": ["ternary", "ternary", "int4", "int4", "fp32", "fp32"],
    "val loss": [3.0, 2.5, 2.8, 2.1, 2.6, 2.4],
})


def _select(expr, variables=None):
    return select_rows(expr, TABLE, variables, "t.csv: where").tolist()


@pytest.mark.parametrize("expr, expected", [
    ("params >= 1e8", [False, True, False, True, True, False]),  # NaN params: not selected
    ("1e6 < params <= 1e8", [False, True, True, False, True, False]),  # chained
    ("1e9 > params > 1e6 >= 1", [False, True, True, False, True, False]),
    ("family == 'BitNet'", [True, True, False, False, False, False]),
    ('family != "BitNet"', [False, False, True, True, False, True]),  # missing family: not selected
    ("model.quant == 'int4'", [False, False, True, True, False, False]),
    ("`model.quant` == 'fp32' and `val loss` < 2.5", [False, False, False, False, False, True]),
    ("family == 'BitNet' or params > 5e8", [True, True, False, True, False, False]),
    ("not family == 'BitNet'", [False, False, True, True, False, True]),
    ("not (params < 1e8 or family == 'QuantLM')", [False, True, False, False, False, False]),
    ("family == 'BitNet' and not params > 1e7", [True, False, False, False, False, False]),
    # a row missing any value the condition reads is not selected, even where `or` would not need it
    ("family == 'BitNet' and not params > 1e7 or family == 'fp'", [True, False, False, False, False, False]),
    ("family == 'fp'", [False, False, False, False, False, True]),
    ("log10(params) - 2 * 3 >= 2 and 'a' == 'a'", [False, True, False, True, True, False]),
    ("'QuantLM' == family", [False, False, True, True, False, False]),
    ("family == model.quant", [False, False, False, False, False, False]),
    ("sqrt(params) > 1e3", [False, True, True, True, True, False]),
    ("log(params - 1e7) > 0", [False, True, False, True, True, False]),  # log of <= 0: NaN, not selected
    ("not log(params - 1e7) > 0", [False, False, True, False, False, False]),  # log(< 0) NaN; log(0) -inf
])
def test_select_rows(expr, expected):
    assert _select(expr) == expected


def test_select_rows_variables_first():
    N = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    Q = np.array(["a", "1000", "a", None, "a", "a"], dtype=object)
    assert _select("N >= 4", {"N": N}) == [False, False, False, True, True, True]
    assert _select("params > 0 and N < 3", {"N": N}) == [True, True, False, False, False, False]
    assert _select("Q == '1000'", {"Q": Q}) == [False, True, False, False, False, False]
    assert _select("Q != 'a'", {"Q": Q}) == [False, True, False, False, False, False]  # None: missing
    with pytest.raises(LawDataError, match=r"'Q == 1000' compares text with a number.*quote it"):
        _select("Q == 1000", {"Q": Q})


@pytest.mark.parametrize("expr, match", [
    ("__import__('os')", r"\"__import__\('os'\)\" is not allowed \(allowed: numbers, 'strings'"),
    ("open('x')", r"\"open\('x'\)\" is not allowed \(allowed:"),
    ("params.__class__", r"'params.__class__' is not allowed"),
    ("N.__class__", r"'N.__class__' is not allowed"),
    ("[1][0]", r"'\[1\]\[0\]' is not allowed"),
    ("lambda: 1", r"'lambda: 1' is not allowed"),
    ("(lambda: 1)()", "is not allowed"),
    ("params if 1 else 2", "is not allowed"),
    ("family in ['BitNet']", "is not allowed"),
    ("family is None", "is not allowed"),
    ("abs(params) > 1", "'abs\\(params\\)' is not allowed"),
    ("params[0] > 1", "is not allowed"),
    ("family < 'c'", r"\"family < 'c'\": < needs numbers; text may only be compared with == or !="),
    ("family < 3", r"'family < 3': < needs numbers"),
    ("3 <= family", r"'3 <= family': <= needs numbers"),
    ("family == 3", r"'family == 3' compares text with a number"),
    ("family + 1 > 2", r"column 'family' holds text \('BitNet'\), not numbers.*e.g. family == 'BitNet'"),
    ("'a' + 'b' == 'ab'", r"\"'a'\" is a string, not a number"),
    ("(params > 1) + 1 > 2", r"'params > 1' is a condition, not a number"),
    ("(params > 1) == (params > 2)", "compares a condition"),
    ("params and family == 'fp'", r"'params' is not a condition; .* e.g. params > 0"),
    ("not family", r"'family' is not a condition"),
    ("params * 2", "is not a condition; compare"),
    ("family", "is not a condition"),
    ("1 < 2", "refers to no column"),
    ("parms > 1", r"unknown column 'parms'; available: family, params"),
    ("params >", "cannot parse expression 'params >'"),
    ("params > 1; 1", "cannot parse"),
])
def test_select_rows_rejects(expr, match):
    with pytest.raises(LawDataError, match=match) as info:
        _select(expr)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith((f"t.csv: where: expression {expr!r}: ",
                               f"t.csv: where: cannot parse expression {expr!r}"))


def test_conditions_still_rejected_in_columns(csv_file):
    for expr in ("params > 1", "'params'", "params == 'a'", "not params", "params and tokens"):
        with pytest.raises(LawDataError, match=r"N: expression .* is not allowed \(allowed: numbers, column"):
            from_csv(csv_file, {"N": expr, "loss": "`val loss`"})


FAMILIES = """family,params,tokens,loss,seed
BitNet,1e6,1e9,3.0,0
BitNet,1e8,1e9,2.5,1
BitNet,1e9,2e9,,0
QuantLM,1e7,1e9,2.8,0
QuantLM,1e9,1e10,2.1,1
fp,,1e9,2.9,0
fp,1e10,1e11,1.9,1
"""


@pytest.fixture
def families(tmp_path):
    path = tmp_path / "families.csv"
    path.write_text(FAMILIES)
    return path


@pytest.mark.filterwarnings("ignore:.*dropped")
def test_where_before_by(families):
    out = from_csv(families, {"N": "params", "loss": "loss"}, by="family", where="family != 'QuantLM'",
                   group="seed")
    assert [d.label for d in out] == ["family=BitNet", "family=fp"]
    with pytest.warns(UserWarning, match="dropped 2 of 5 rows with a missing value"):
        out = from_csv(families, {"N": "params", "loss": "loss"}, by="family", where="family != 'QuantLM'")
    np.testing.assert_allclose(out[0].x["N"], [1e6, 1e8])
    assert out[0].held_out is None
    # where reads the variables (N in millions) and runs before the split: fp has no row left
    out = from_csv(families, {"N": "params / 1e6", "D": "tokens", "loss": "loss"}, by="family",
                   where="N >= 100 and D < 1e10")
    assert [d.label for d in out] == ["family=BitNet"]
    np.testing.assert_allclose(out[0].x["N"], [100])


def test_where_drops_missing_only_in_selected_rows(families, recwarn):
    (data,) = from_csv(families, {"N": "params", "loss": "loss"}, where="family == 'QuantLM'")
    np.testing.assert_allclose(data.x["N"], [1e7, 1e9])
    assert not [w for w in recwarn if "dropped" in str(w.message)]  # BitNet 1e9 and fp lack a value
    # a row where excludes is not checked for a non-finite variable either
    (data,) = from_csv(families, {"N": "log(params - 1e7)", "loss": "loss"}, where="params > 1e7 and loss > 0")
    assert data.n == 3


def test_where_selects_nothing(families):
    with pytest.raises(LawDataError) as info:
        from_csv(families, {"N": "params", "loss": "loss"}, where="family == 'bitnet'")
    assert str(info.value) == f"where: \"family == 'bitnet'\" selects none of the 7 rows of {families}"
    frame = pd.read_csv(families)
    with pytest.raises(LawDataError, match=r"^where: 'params > 1e12' selects none of the 7 rows of frame$"):
        from_frame(frame, {"N": "params", "loss": "loss"}, where="params > 1e12", source="frame",
                   required=lambda var: var == "loss")
    with pytest.raises(LawDataError, match=r"every row where selects has a missing value"), pytest.warns(UserWarning):
        from_csv(families, {"N": "params", "loss": "loss"}, where="family == 'fp' and tokens < 1e10")
    with pytest.raises(LawDataError, match=r"where: expression \"open\('x'\)\": \"open\('x'\)\" is not allowed"):
        from_csv(families, {"N": "params", "loss": "loss"}, where="open('x')")


def test_holdout_per_group(families):
    with pytest.warns(UserWarning, match="dropped 2 of 7"):
        out = from_csv(families, {"N": "params", "loss": "loss"}, by="family", group="seed",
                       holdout="N >= 1e9 or family == 'BitNet' and loss < 2.6")
    by = {d.label: d for d in out}
    assert by["family=BitNet"].held_out.tolist() == [False, True]
    assert by["family=QuantLM"].held_out.tolist() == [False, True]
    assert by["family=fp"].held_out.tolist() == [True]  # a group all held out: the caller's to report
    assert all(d.held_out.dtype == bool and d.held_out.shape == (d.n,) for d in out)
    quant = by["family=QuantLM"]
    sub = quant.subset(np.array([False, True]))
    assert sub.held_out.tolist() == [True] and sub.groups.tolist() == [1] and sub.label == "family=QuantLM"
    assert quant.subset(np.array([1, 0, 1])).held_out.tolist() == [True, False, True]
    # holdout with where: marked among the rows kept
    (data,) = from_csv(families, {"N": "params", "loss": "loss"}, where="family == 'QuantLM'",
                       holdout="tokens > 1e9")
    assert data.held_out.tolist() == [False, True]


def test_holdout_marks_none_or_all(families):
    cols = {"N": "params", "loss": "loss"}
    with pytest.raises(LawDataError) as info:
        from_csv(families, cols, where="family == 'QuantLM'", holdout="N > 1e12", by="family")
    assert str(info.value) == f"holdout: 'N > 1e12' marks none of the 2 rows of {families}"
    with pytest.raises(LawDataError, match=r"^holdout: 'N > 0' marks all 2 rows of .*, leaving none to fit$"):
        from_csv(families, cols, where="family == 'QuantLM'", holdout="N > 0")
    with pytest.raises(LawDataError, match=r"holdout: expression 'N\.__class__': 'N\.__class__' is not allowed"):
        from_csv(families, cols, where="family == 'QuantLM'", holdout="N.__class__")
    # a row missing what the holdout reads is not held out (it stays in the fit)
    (data,) = from_csv(families, {"D": "tokens", "loss": "loss"}, where="family == 'fp'",
                       holdout="params > 1e9")
    assert data.held_out.tolist() == [False, True]


def test_law_data_held_out_checks():
    data = LawData({"N": [1.0, 2.0, 3.0]}, [1.0, 2.0, 3.0], held_out=np.array([True, False, True]))
    assert data.subset([0, 1]).held_out.tolist() == [True, False]
    assert LawData({"N": [1.0]}, [1.0]).subset([0]).held_out is None
    with pytest.raises(LawDataError, match=r"held_out has shape \(2,\); expected \(3,\)"):
        LawData({"N": [1.0, 2.0, 3.0]}, [1.0, 2.0, 3.0], held_out=np.array([True, False]))
    with pytest.raises(LawDataError, match="held_out has dtype int64; expected bool"):
        LawData({"N": [1.0, 2.0, 3.0]}, [1.0, 2.0, 3.0], held_out=np.array([1, 0, 1]))
