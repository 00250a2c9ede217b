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
