"""`bitscale double-descent` on a real (tiny) MNIST-1D MLP sweep across widths and label noise: the
store's error curves into the study, JSON and a plot, and one-line errors."""

import json

import pytest

from conftest import train_sweeps

SWEEP = """
name = "dd-tiny"
kind = "classification"
[base]
model = { kind = "mlp", depth = 1 }
data = { n_train = 200, n_test = 100, pool = 400 }
train = { steps = 30, eval_every = 10, batch_size = 100 }
[grid]
width = [4, 16, 64, 256]
label_noise = [0.0, 0.2]
seed = [0, 1]
"""


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    return train_sweeps(tmp_path_factory.mktemp("dd") / "runs.db", SWEEP)


def test_double_descent_command_writes_a_study_per_precision(cli, tiny_store, tmp_path):
    out_json, plot = tmp_path / "dd.json", tmp_path / "dd.png"
    code, out, err = cli("double-descent", "--store", str(tiny_store), "--sweep", "dd-tiny", "--resamples", "3",
                         "--json", str(out_json), "--plot", str(plot))
    assert code == 0, err
    (study,) = json.loads(out_json.read_text())
    assert study["noises"] == [0.0, 0.2] and len(study["sizes"]) == 4 and study["n"] == 200
    assert study["law"] == "unified[fold=n]" and study["holdout_largest_size"] is not None
    # 3 resamples are too few to trust: every verdict says so rather than deciding
    assert all(v[0] == "inconclusive" and "unreliable bootstrap" in v[1] for v in study["verdicts"].values())
    assert plot.stat().st_size > 10_000 and "rule: double descent appears" in out


@pytest.mark.parametrize("args, message", [
    (["--resamples", "-1"], "--resamples: expected an integer >= 0, got -1"),
    (["--metric", "accuracy"], "no test accuracy curve"),
    (["--store", "missing.db"], "missing.db: no such store"),
])
def test_bad_options_are_one_line(cli, tiny_store, args, message):
    code, _, err = cli("double-descent", "--store", str(tiny_store), *args)
    assert code == 2 and message in err and "Traceback" not in err
