"""`bitscale scale-time` on a real (tiny) MNIST-1D sweep: the store's error curves, JSON, a plot, one-line errors."""

import json

import pytest

from conftest import train_sweeps

SWEEP = """
name = "st-tiny"
kind = "classification"
[base]
model = { kind = "cnn1d", depth = 2 }
data = { n_train = 300, n_test = 100, pool = 500 }
train = { steps = 40, eval_every = 10 }
[grid]
width = [4, 8, 16]
seed = [0, 1]
"""


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    return train_sweeps(tmp_path_factory.mktemp("st") / "runs.db", SWEEP)


def test_the_store_holds_error_curves_beside_the_loss(tiny_store):
    from bitscale.sweep.store import load_metrics, load_runs

    runs = load_runs(tiny_store)
    assert len(runs) == 6 and set(runs["status"]) == {"done"}
    metrics = load_metrics(tiny_store)
    errors = metrics[(metrics["name"] == "error") & (metrics["split"] == "test")]
    assert len(errors) == 6 * 5  # steps 0, 10, ..., 40 of every run
    assert errors["value"].between(0, 1).all()


def test_scale_time_command_writes_verdicts(cli, tiny_store, tmp_path):
    out_json, plot = tmp_path / "st.json", tmp_path / "st.png"
    code, out, err = cli("scale-time", "--store", str(tiny_store), "--sweep", "st-tiny", "--metric", "error",
                         "--resamples", "5", "--t-min", "10", "--json", str(out_json), "--plot", str(plot))
    assert code == 0, err
    (study,) = json.loads(out_json.read_text())
    assert study["verdict"] in ("holds", "does not hold", "inconclusive")
    assert study["runs_per_size"] and sum(study["runs_per_size"].values()) == 6
    assert study["reason"]  # every verdict says why
    assert plot.stat().st_size > 10_000 and "rule: holds if" in out


@pytest.mark.parametrize("args, message", [
    (["--resamples", "-1"], "--resamples: expected an integer >= 0, got -1"),
    (["--t-min", "nan"], "--t-min: expected a finite number > 0"),
    (["--metric", "accuracy"], "no test accuracy curve"),
])
def test_bad_options_are_one_line(cli, tiny_store, args, message):
    code, _, err = cli("scale-time", "--store", str(tiny_store), *args)
    assert code == 2 and message in err and "Traceback" not in err
