"""Sweep files: expansion, stable ids, and one-line errors naming the key."""

import pytest

from bitscale.sweep.spec import SweepError, canonical_config, load_sweep, run_id
from bitscale.train import RunConfig


def write(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


BASE = """
[base]
model = { kind = "two_layer", quant = "paper-1bit" }
task = { function = "sines", d = 8, n_train = 64 }
train = { lr = 0.5, steps = 20 }
"""


def test_grid_times_zip_in_order(tmp_path):
    sweep, runs = load_sweep(write(tmp_path, BASE + """
[grid]
width = { logspace = [16, 256], num = 5 }
quant = ["paper-1bit", "fp32"]
[[zip]]
n_train = [32, 64, 128]
steps = [10, 20, 40]
"""))
    assert sweep.name == "s"
    assert len(runs) == 5 * 2 * 3
    assert [r.config.model.width for r in runs[::6]] == [16, 32, 64, 128, 256]  # first axis slowest
    assert {(r.config.task.n_train, r.config.train.steps) for r in runs} == {(32, 10), (64, 20), (128, 40)}
    assert runs[0].config.train.lr == 0.5 and runs[0].config.task.d == 8  # base kept
    assert len({r.id for r in runs}) == len(runs)


def test_ranges_and_any_dotted_key(tmp_path):
    _, runs = load_sweep(write(tmp_path, BASE + """
[grid]
"train.lr" = { logspace = [0.01, 1.0], num = 3 }
"task.options.width" = [4, 8]
"model.quant.granularity" = ["tensor", "channel"]
"""))
    assert sorted({r.config.train.lr for r in runs}) == pytest.approx([0.01, 0.1, 1.0])
    assert {r.config.task.options["width"] for r in runs} == {4, 8}
    # a quant sub-key keeps the base preset as the base of the table
    assert {(r.config.model.quant.weight, r.config.model.quant.granularity) for r in runs} == {
        ("sign", "tensor"), ("sign", "channel")}


def test_two_zip_groups_cross(tmp_path):
    _, runs = load_sweep(write(tmp_path, BASE + """
[[zip]]
width = [8, 16]
kappa = [1.0, 2.0]
[[zip]]
seed = [0, 1, 2]
lr = [0.1, 0.2, 0.3]
"""))
    assert len(runs) == 6


def test_id_is_stable_and_ignores_spelling():
    a = RunConfig.model_validate({"model": {"width": 64, "quant": "bitnet-b1.58"}})
    b = RunConfig.model_validate({"model": {"width": 64, "quant": {"preset": "bitnet-b1.58"}, "init_seed": 0},
                                  "train": {"seed": 0, "lr": 0.1}})
    assert run_id(a) == run_id(b)  # same run: preset spelled as a table, default init seed, default lr
    assert run_id(a) == "%s" % run_id(RunConfig.model_validate_json(a.model_dump_json()))
    c = RunConfig.model_validate({"model": {"width": 65, "quant": "bitnet-b1.58"}})
    assert run_id(c) != run_id(a)
    assert canonical_config(a) == {"model": {"width": 64, "quant": "bitnet-b1.58"}}


def test_the_same_point_twice_is_one_run(tmp_path):
    _, runs = load_sweep(write(tmp_path, BASE + "[grid]\nwidth = [8, 8, 16]\n"))
    assert len(runs) == 2


@pytest.mark.parametrize(
    "body, expected",
    [
        ("[grid]\nwidht = [1]\n", "grid: widht: unknown config key"),
        ("[grid]\nwidth = []\n", "grid: width: empty axis"),
        ("[grid]\nwidth = ['x']\n", "model.width: Input should be a valid integer"),
        ("[grid]\nquant = ['bitnet1.58']\n", "unknown preset 'bitnet1.58'"),
        ("[[zip]]\nwidth = [1, 2]\nseed = [1, 2, 3]\n", "equal lengths, but model.width has 2, train.seed has 3"),
        ("[grid]\nwidth = { logspace = [0, 4], num = 3 }\n", "logspace: ends must be positive"),
        ("[grid]\nwidth = { logspace = [1, 4] }\n", "width: a range needs"),
        ("colour = 1\n", "colour: Extra inputs are not permitted"),
        ("[base.train]\nlr = -1\n", "base.train.lr: Input should be greater than 0"),
        ("[grid\n", "invalid TOML"),
    ],
)
def test_bad_sweep_files_give_one_line(tmp_path, body, expected):
    with pytest.raises(SweepError) as err:
        load_sweep(write(tmp_path, body))
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(SweepError, match="no such file"):
        load_sweep(tmp_path / "nope.toml")
