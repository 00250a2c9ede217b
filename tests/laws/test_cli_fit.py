"""`bitscale fit` from a CSV and from a store: tables, JSON, plots, and one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

TRUE = {"E": 1.7, "A": 400.0, "alpha": 0.34, "B": 410.0, "beta": 0.28}


@pytest.fixture
def chinchilla_csv(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["params,flops,seed,val_loss"]
    for n in np.geomspace(1e6, 1e9, 8):
        for d in np.geomspace(1e8, 1e11, 6):
            loss = TRUE["E"] + TRUE["A"] / n ** TRUE["alpha"] + TRUE["B"] / d ** TRUE["beta"]
            for seed in range(2):
                rows.append(f"{n:.6g},{6 * n * d:.6g},{seed},{loss * np.exp(0.005 * rng.standard_normal()):.8g}")
    path = tmp_path / "runs.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_fit_a_csv_with_an_expression_column(cli, chinchilla_csv, tmp_path):
    plot = tmp_path / "fit.png"
    code, out, err = cli("fit", "--law", "chinchilla", "--csv", str(chinchilla_csv), "--group", "seed",
                         "--columns", "N=params,D=flops/(6*N),C=flops,loss=val_loss",
                         "--bootstrap", "100", "--resample", "groups", "--json", "--plot", str(plot))
    assert code == 0, err
    (result,) = json.loads(out)
    assert result["params"]["alpha"] == pytest.approx(TRUE["alpha"], rel=0.05)
    assert result["params"]["beta"] == pytest.approx(TRUE["beta"], rel=0.05)
    lo, hi = result["bootstrap"]["intervals"]["alpha"]
    assert lo < result["params"]["alpha"] < hi
    assert result["holdout"]["mean_abs_relative_error"] < 0.02  # the law holds beyond the fitted range
    assert result["holdout"]["n_held_out"] == 2  # the largest C: the largest N and D, both seeds
    assert result["derived"]  # the compute-optimal frontier
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_table_states_the_extrapolation_error(cli, chinchilla_csv):
    code, out, _ = cli("fit", "--law", "chinchilla", "--csv", str(chinchilla_csv),
                       "--columns", "N=params,D=flops/(6*N),loss=val_loss")
    assert code == 0
    assert "held-out" in out and "mean |rel. error|" in out and "alpha" in out


def test_fit_from_a_store_by_preset(cli, sweep_store):
    code, out, err = cli("fit", "--law", "power_N", "--store", str(sweep_store), "--by", "model.quant",
                         "--split", "train", "--json")
    assert code == 0, err
    labels = [a["label"] for a in json.loads(out)]
    assert labels == ["model.quant=fp32", "model.quant=paper-1bit"]


@pytest.mark.parametrize(
    "columns, csv_text, expected",
    [
        ("N=params,loss=val_loss", "params,val_loss\n1,2\n2,1\n", "2 point(s) cannot determine"),
        ("N=params,loss=val_loss", "params,val_loss\n1,2\n2,-1\n3,1\n4,1\n5,1\n", "loss"),
        ("N=params,loss=val_loss", "params,val_loss\n5,2\n5,1\n5,1.5\n5,1\n5,1.2\n", "takes a single value"),
        ("N=__import__('os'),loss=val_loss", "params,val_loss\n1,2\n", "N"),
        ("N=parms,loss=val_loss", "params,val_loss\n1,2\n", "parms"),
    ],
)
def test_degenerate_input_is_one_line_exit_2(cli, tmp_path, columns, csv_text, expected):
    path = tmp_path / "bad.csv"
    path.write_text(csv_text)
    code, _, err = cli("fit", "--law", "power_N", "--csv", str(path), "--columns", columns)
    assert code == 2 and expected in err and err.count("\n") == 1, err


def test_usage_errors(cli, tmp_path, chinchilla_csv):
    both = cli("fit", "--law", "chinchilla", "--store", "a.db", "--csv", str(chinchilla_csv), "--columns", "N=params")
    assert both[0] == 2 and "not both" in both[2]
    code, _, err = cli("fit", "--law", "nope", "--csv", str(chinchilla_csv), "--columns", "N=params,loss=val_loss")
    assert code == 2 and "chinchilla" in err  # lists the known laws
    code, _, err = cli("fit", "--law", "power_N", "--store", str(tmp_path / "missing.db"))
    assert code == 2 and "missing.db" in err


def test_real_entry_point_exit_code(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("params,val_loss\n1,2\n")
    proc = subprocess.run([sys.executable, "-m", "bitscale.cli", "fit", "--law", "power_N", "--csv", str(path),
                           "--columns", "N=params,loss=val_loss"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.startswith("error: ")


def test_scale_time_reports_collapse_and_small_to_large(cli, sweep_store):
    code, out, err = cli("fit", "--law", "scale_time", "--store", str(sweep_store), "--curves", "--split", "train",
                         "--by", "model.quant", "--json")
    assert code == 0, err
    for analysis in json.loads(out):
        keys = " ".join(analysis["derived"])
        assert "collapse" in keys and "predicted from the smaller ones" in keys
        assert analysis["n_points"] == 8 * 3  # 8 runs x evaluations at steps 20, 40, 60


def test_holdout_none_says_the_error_is_unknown(cli, chinchilla_csv):
    code, out, _ = cli("fit", "--law", "chinchilla", "--csv", str(chinchilla_csv), "--holdout", "none",
                       "--columns", "N=params,D=flops/(6*N),loss=val_loss")
    assert code == 0 and "extrapolation error is unknown" in out


# -- catch-up answers, trust flags, selections ------------------------------------------------------

def crossing_rows(sigma=0.0, seed=0):
    """fp16 and ternary power laws that meet at N = 1e9 (see tests/laws/test_catch_up.py), 2 seeds."""
    rng = np.random.default_rng(seed)
    ref = {"E": 2.0, "A": 50.0, "alpha": 0.25}
    q = {"E": 1.8, "alpha": 0.2}
    q["A"] = (ref["E"] + ref["A"] * 1e9 ** -0.25 - q["E"]) / 1e9 ** -0.2
    rows = ["family,precision,params,bits,seed,loss"]
    for label, p, bits in (("fp16", ref, 16), ("ternary", q, 1.6)):
        for seed in range(2):
            for n in np.geomspace(1e7, 1e10, 8):
                loss = (p["E"] + p["A"] * n ** -p["alpha"]) * np.exp(sigma * rng.standard_normal())
                rows.append(f"{'Float' if label == 'fp16' else 'Tri'},{label},{n:.6g},{bits},{seed},{loss:.10g}")
    return "\n".join(rows) + "\n"


@pytest.fixture
def crossing_csv(tmp_path):
    path = tmp_path / "cross.csv"
    path.write_text(crossing_rows())
    return path


COLUMNS = "N=params,Q=precision,bits=bits,loss=loss"


def test_catch_up_answers_in_json_and_table(cli, crossing_csv, tmp_path):
    plot = tmp_path / "cross.png"
    code, out, err = cli("fit", "--law", "precision_power", "--csv", str(crossing_csv), "--columns", COLUMNS,
                         "--bootstrap", "50", "--at", "1e8,1e10", "--json", "--plot", str(plot))
    assert code == 0, err
    (fit,) = json.loads(out)
    answer = fit["catch_up"]["ternary vs fp16"]
    assert answer["crossing_N"] == pytest.approx(1e9, rel=1e-3)
    lo, hi = answer["crossing_N_interval"]
    assert lo <= answer["crossing_N"] <= hi and 0 <= answer["no_crossing_fraction"] <= 1
    assert set(answer["gap_at"]) == {"1e+08", "1e+10"} and answer["gap_at"]["1e+08"]["gap"] > 0
    assert answer["gap_at"]["1e+10"]["gap"] < 0 and len(answer["gap_at"]["1e+10"]["gap_interval"]) == 2
    assert answer["matching_N"]["1e+10"]["N"] < 1e10   # ternary needs fewer parameters once it has caught up
    assert answer["memory_matched"]["1e+08"]["N_q"] == pytest.approx(1e9)
    assert answer["memory_matched"]["1e+08"]["winner"] in ("ternary", "fp16", "undecided")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, _ = cli("fit", "--law", "precision_power", "--csv", str(crossing_csv), "--columns", COLUMNS,
                       "--share", "alpha", "--at", "1e10")
    assert code == 0 and "precision_power[share=alpha]" in out and "ternary vs fp16" in out
    assert "memory-matched" in out and "crossing:" in out


@pytest.mark.parametrize("args, flag", [
    (("--where", "N > 1e20"), "--where"),
    (("--reference", "fp8"), "--reference"),
    (("--at", "1e8,-3"), "--at"),
    (("--at", "big"), "--at"),
    (("--share", "gamma"), "--share"),
    (("--holdout", "N > 1e20"), "--holdout"),
])
def test_bad_selection_flags_are_one_line_exit_2_nothing_written(cli, crossing_csv, tmp_path, args, flag):
    plot = tmp_path / "never.png"
    code, out, err = cli("fit", "--law", "precision_power", "--csv", str(crossing_csv), "--columns", COLUMNS,
                         "--plot", str(plot), *args)
    assert code == 2 and err.startswith(f"error: {flag}") and err.count("\n") == 1, err
    assert not plot.exists()


def test_where_and_holdout_expressions(cli, crossing_csv):
    code, out, err = cli("fit", "--law", "power_N", "--csv", str(crossing_csv), "--columns", COLUMNS,
                         "--where", "precision == 'fp16' and N >= 1e8", "--holdout", "N >= 5e9", "--json")
    assert code == 0, err
    (fit,) = json.loads(out)
    assert fit["n_points"] == 2 * 5 and fit["holdout"]["kind"] == ["marked"]   # sizes >= 1e8: 5 of 8
    assert fit["holdout"]["n_held_out"] == 2 * 1


def test_by_power_n_compares_groups(cli, crossing_csv):
    code, out, err = cli("fit", "--law", "power_N", "--csv", str(crossing_csv), "--columns", COLUMNS,
                         "--by", "precision", "--reference", "fp16", "--at", "1e10", "--json")
    assert code == 0, err
    fits = {f["label"]: f for f in json.loads(out)}
    assert fits["precision=fp16"]["catch_up"] == {}
    assert fits["precision=ternary"]["catch_up"]["ternary vs fp16"]["crossing_N"] == pytest.approx(1e9, rel=1e-3)


def test_a_group_that_cannot_be_fitted_is_one_line_and_the_others_are_fitted(cli, tmp_path):
    rows = ["g,params,loss"] + [f"a,{n:.6g},{1 + 10 * n ** -0.3:.8g}" for n in np.geomspace(1e3, 1e6, 8)] + \
        ["b,1000,2.0", "b,1000,2.1", "c,10,3.0"]
    path = tmp_path / "groups.csv"
    path.write_text("\n".join(rows) + "\n")
    code, out, err = cli("fit", "--law", "power_N", "--csv", str(path), "--columns", "N=params,loss=loss",
                         "--by", "g", "--json")
    assert code == 0, err
    assert [f["label"] for f in json.loads(out)] == ["g=a"]
    assert "g=b: not fitted" in err and err.count("g=b") == 1 and err.count("g=c") == 1
    code, _, err = cli("fit", "--law", "power_N", "--csv", str(path), "--columns", "N=params,loss=loss",
                       "--by", "g", "--where", "g != 'a'")
    assert code == 2 and "no group could be fitted" in err


def test_a_parameter_at_its_bound_is_flagged_and_answers_resting_on_it_say_so(cli, tmp_path):
    # data whose best floor would be negative: E > 0 can only sit at its lower bound
    rows = ["params,tokens,loss"] + [f"{n:.6g},{d:.6g},{30 * n ** -0.3 + 40 * d ** -0.25 - 0.02:.10g}"
                                     for n in np.geomspace(1e6, 1e9, 6) for d in np.geomspace(1e8, 1e11, 6)]
    path = tmp_path / "nofloor.csv"
    path.write_text("\n".join(rows) + "\n")
    args = ("fit", "--law", "chinchilla", "--csv", str(path), "--columns", "N=params,D=tokens,loss=loss")
    code, out, err = cli(*args, "--json")
    assert code == 0, err
    (fit,) = json.loads(out)
    assert fit["at_bound"] == ["E"] and fit["at_bound_sides"] == {"E": "lower"}
    assert all(answer.get("rests_on") == ["E"] for answer in fit["derived"].values())
    code, out, _ = cli(*args)
    assert "E at lower bound" in out and "not a finding" in out


def test_published_bitnet_table_is_fitted_and_says_its_bootstrap_is_unreliable(cli):
    """The shipped BitNet b1.58 Table 1 (7 points): the catch-up answer comes with its caveats."""
    from pathlib import Path

    table = Path(__file__).resolve().parents[2] / "data" / "published" / "bitnet_b158_table1.csv"
    code, out, err = cli("fit", "--law", "precision_power", "--csv", str(table), "--share", "alpha",
                         "--columns", "N=params,Q=precision,bits=bits,loss=log(ppl)", "--bootstrap", "200",
                         "--at", "3.9e8", "--json")
    assert code == 0, err
    (fit,) = json.loads(out)
    assert fit["n_points"] == 7 and fit["bootstrap"]["reliable"] is False
    answer = fit["catch_up"]["ternary vs fp16"]
    assert answer["unreliable"] is True and 7e8 < answer["crossing_N"] < 3e9   # the paper: behind at 700M, level at 1.3B, ahead at 3B
    assert answer["memory_matched"]["3.9e+08"]["N_q"] == pytest.approx(3.9e9)


@pytest.mark.parametrize("args, expected", [
    (("--bootstrap", "-1"), "--bootstrap: expected an integer >= 0, got -1"),
    (("--bootstrap", "100001"), "--bootstrap: expected an integer <= 100000, got 100001"),
    (("--drop-top", "-3"), "--drop-top: expected an integer >= 0, got -3"),
    (("--delta", "inf"), "--delta: expected a finite number > 0, got inf"),
    (("--delta", "nan"), "--delta: expected a finite number > 0, got nan"),
    (("--delta", "-0.1"), "--delta: expected a finite number > 0, got -0.1"),
    (("--delta", "0"), "--delta: expected a finite number > 0, got 0.0"),
    (("--where", "N > " + "1" * 200), "--where: expression is 204 characters long; at most 200 are accepted"),
    (("--holdout", "N > " + "-" * 40 + "1"), "--holdout: expression is nested 42 levels deep; at most 32 are accepted"),
    (("--columns", "N=params,loss=" + "(" * 40 + "val_loss" + ")" * 40),
     "columns: loss: expression is nested 40 levels deep; at most 32 are accepted"),
])
def test_unbounded_numbers_and_expressions_are_one_line_exit_2(cli, chinchilla_csv, tmp_path, args, expected):
    plot = tmp_path / "never.png"
    options = dict(zip(args[::2], args[1::2]))
    columns = options.pop("--columns", "N=params,D=flops/(6*N),loss=val_loss")
    rest = [x for kv in options.items() for x in kv]
    code, out, err = cli("fit", "--law", "chinchilla", "--csv", str(chinchilla_csv), "--columns", columns,
                         "--plot", str(plot), *rest)
    assert code == 2 and err == f"error: {expected}\n" and out == "", err
    assert not plot.exists()


def test_a_damaged_store_is_one_line_for_fit(cli, tmp_path):
    from bitscale.sweep.store import Store

    path = tmp_path / "r.db"
    with Store(path) as db:
        db.add_sweep("s", {})
        db.add_runs("s", [{"id": f"r{i}", "config": {"model": {"width": i}, "pad": "y" * 3000}} for i in range(100)])
    data = path.read_bytes()
    at = data.index(b"y" * 200, len(data) // 2)
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(b"\xff" * 16)
    code, out, err = cli("fit", "--law", "power_N", "--store", str(path))
    assert code == 2 and err.startswith(f"error: {path}: damaged database") and err.count("\n") == 1, err


def test_a_damaged_metrics_table_is_one_line_for_fit_curves(cli, sweep_store, tmp_path):
    import shutil
    import sqlite3

    path = tmp_path / "copy.db"
    shutil.copy(sweep_store, path)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE metrics SET split = CAST(X'FFFE' AS TEXT) WHERE rowid = 1")  # not UTF-8
    conn.commit()
    conn.close()
    code, out, err = cli("fit", "--law", "scale_time", "--store", str(path), "--curves", "--split", "train")
    assert code == 2 and err == f"error: {path}: damaged database (a stored text value in 'split' is not valid UTF-8)\n", err
