import numpy as np
import pytest

from bitscale.laws.data import LawDataError
from bitscale.laws.inputs import from_csv, from_store, parse_columns
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
                                 "bits_per_weight": 32.0 if quant == "fp32" else 1.58,
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
    assert set(data.x) == {"N", "D", "C", "P", "Q", "S", "p", "t"}
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
    assert "P" not in out[0].x and "N" in out[0].x  # bits_per_weight was never recorded
    assert sorted(d.label for d in out) == sorted(
        ["model.quant=fp32", "model.quant=bitnet-b1.58", "model.quant=w:int4 a:fp32 granularity=channel"])
