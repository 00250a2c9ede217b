"""`compare_runs` and `bitscale compare` on a store whose numbers are known by hand."""

from __future__ import annotations

import math

import pytest

from bitscale.sweep.compare import CompareError, compare_frame, compare_runs, to_markdown
from bitscale.sweep.store import Store

# (width, quant, seed) -> final test loss
LOSSES = {
    (8, "fp32", 0): 1.0, (8, "fp32", 1): 1.2, (8, "bitnet-b1.58", 0): 1.5, (8, "bitnet-b1.58", 1): 1.7,
    (16, "fp32", 0): 0.8, (16, "bitnet-b1.58", 0): 0.9, (16, "bitnet-b1.58", 1): 1.1,
}


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "s.db"
    with Store(path) as db:
        db.add_sweep("s", {})
        runs = [{"id": f"r{i}", "config": {"model": {"width": w, "quant": q}, "train": {"seed": s}},
                 "n_params_non_embedding": 10 * w + (1 if q != "fp32" else 0)}
                for i, (w, q, s) in enumerate(LOSSES)]
        runs.append({"id": "failed", "config": {"model": {"width": 8, "quant": "fp32"}, "train": {"seed": 9}}})
        db.add_runs("s", runs)
        for i, loss in enumerate(LOSSES.values()):
            db.finish_run(f"r{i}", "done", final_test_loss=loss)
        db.finish_run("failed", "failed", error="boom")
    return path


def test_means_gaps_and_standard_errors_by_hand(store):
    t = compare_runs(store, sweep="s").set_index(["size", "label"])
    assert list(t.index) == [(8, "fp32"), (8, "bitnet-b1.58"), (16, "fp32"), (16, "bitnet-b1.58")]
    ref, ter = t.loc[(8, "fp32")], t.loc[(8, "bitnet-b1.58")]
    assert (ref["n"], ref["mean"], ref["std"]) == (2, pytest.approx(1.1), pytest.approx(math.sqrt(0.02)))
    assert ter["gap"] == pytest.approx(0.5) and ter["gap_relative"] == pytest.approx(0.5 / 1.1)
    assert ter["gap_se"] == pytest.approx(math.sqrt(0.02 / 2 + 0.02 / 2))
    assert (ter["N"], ref["N"]) == (81, 80) and (ter["min"], ter["max"]) == (1.5, 1.7)
    assert math.isnan(ref["gap"])
    one = t.loc[(16, "bitnet-b1.58")]
    assert one["gap"] == pytest.approx(0.2) and math.isnan(one["gap_se"])  # the reference has one seed
    # seeds 0 and 1 pair at width 8 with the same difference 0.5: the paired s.e. is 0
    assert (ter["n_pairs"], ter["gap_se_paired"]) == (2, pytest.approx(0.0))
    assert one["n_pairs"] == 1 and math.isnan(one["gap_se_paired"])


def test_paired_standard_error_by_hand():
    """Differences per seed 0.1, 0.3, 0.2: mean 0.2, std 0.1, paired s.e. 0.1/sqrt(3); the seed that only
    one side has is left out of the pairs. The spread the two share (1, 2, 3) cancels: Welch's s.e. is
    about 0.58 here."""
    pd = pytest.importorskip("pandas")
    runs = pd.DataFrame({"q": ["fp32"] * 3 + ["ternary"] * 4, "w": 8, "train.seed": [0, 1, 2, 0, 1, 2, 5],
                         "loss": [1.0, 2.0, 3.0, 1.1, 2.3, 3.2, 2.0], "N": 1.0})
    row = compare_frame(runs, label="q", size="w", metric="loss", n_column="N").set_index("label").loc["ternary"]
    assert row["n_pairs"] == 3 and row["n"] == 4
    assert row["gap_se_paired"] == pytest.approx(0.1 / math.sqrt(3))
    assert row["gap_se"] > 0.5


def test_markdown_and_cli(store, cli, tmp_path):
    md = to_markdown(compare_runs(store), size="model.width", metric="final_test_loss", reference="fp32")
    assert "| 8 | bitnet-b1.58 | 81 | 2 | 1.6000 ± 0.1414 | 1.5000 – 1.7000 | +0.5000 ± 0.1414 | +45.5% |" in md
    code, out, err = cli("compare", "--store", store, "--markdown", tmp_path / "t.md", "--plot", tmp_path / "g.png")
    assert code == 0 and "+0.5000 ± 0.1414" in out
    assert (tmp_path / "t.md").read_text() == md and (tmp_path / "g.png").stat().st_size > 10_000


def test_a_size_named_by_several_columns_is_ordered_by_parameter_count(tmp_path):
    """Depth and width together tell the sizes apart; 4x8 has fewer parameters than 2x16 and comes first."""
    path = tmp_path / "s.db"
    shapes = {(2, 16): 300, (4, 8): 200, (2, 8): 100}
    with Store(path) as db:
        db.add_sweep("s", {})
        runs = [{"id": f"r{i}", "config": {"model": {"n_layer": L, "d_model": d, "quant": q}, "train": {"seed": 0}},
                 "n_params_non_embedding": n} for i, ((L, d), n) in enumerate(shapes.items()) for q in ("fp32", "bitnet")
                ]
        runs = [{**r, "id": f"{r['id']}{r['config']['model']['quant']}"} for r in runs]
        db.add_runs("s", runs)
        for r in runs:
            db.finish_run(r["id"], "done", final_test_loss=r["n_params_non_embedding"] / 100
                          + (0.5 if r["config"]["model"]["quant"] == "bitnet" else 0.0))
    t = compare_runs(path, size="model.n_layer,model.d_model")
    assert list(t["size"].drop_duplicates()) == ["2x8", "4x8", "2x16"]
    assert list(t.loc[t["label"] == "bitnet", "gap"]) == [pytest.approx(0.5)] * 3
    with pytest.raises(CompareError, match="size: unknown column 'model.depth'"):
        compare_runs(path, size="model.n_layer,model.depth")


@pytest.mark.parametrize("args, message", [
    (["--reference", "fp16"], "reference 'fp16' is not a value of model.quant (values: bitnet-b1.58, fp32)"),
    (["--size", "model.depth"], "size: unknown column 'model.depth'"),
    (["--sweep", "nope"], "no runs with status 'done' to compare"),
])
def test_bad_columns_give_one_line_and_exit_2(store, cli, args, message):
    code, out, err = cli("compare", "--store", store, *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_a_missing_store_is_refused(cli, tmp_path):
    code, _, err = cli("compare", "--store", tmp_path / "none.db")
    assert code == 2 and "no such store" in err
    with pytest.raises(CompareError):
        compare_runs(tmp_path / "none.db")
