import json
import subprocess
import sys

import pytest

GOOD = """
[model]
width = 32
quant = "paper-1bit"

[task]
function = "sines"
d = 4
n_train = 32
n_test = 64
input_dist = "sphere"

[train]
lr = 0.5
steps = 40
eval_every = 20
"""


def bitscale(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "bitscale.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_train_writes_a_run_directory(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(GOOD)
    out = tmp_path / "out"
    proc = bitscale("train", str(config), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "test loss" in proc.stdout
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "done" and result["steps_done"] == 40
    assert (out / "model.safetensors").stat().st_size > 0


@pytest.mark.parametrize(
    "text,expected",
    [
        (GOOD.replace("lr = 0.5", "lr = -0.5"), "train.lr: Input should be greater than 0"),
        (GOOD.replace("lr = 0.5", "learning_rate = 0.5"), "train.learning_rate: Extra inputs are not permitted"),
        (GOOD.replace('quant = "paper-1bit"', 'quant = "ternary"'), "model.quant: quant: unknown preset 'ternary'"),
        (GOOD.replace("d = 4", 'd = "four"'), "task.d: Input should be a valid integer"),
        (GOOD.replace("[train]", "[trian]"), "trian: Extra inputs are not permitted"),
        ("[model\nwidth = 3", "invalid TOML"),
        (GOOD.replace("[train]", "options = { wobble = 2 }\n[train]"), "unexpected keyword argument 'wobble'"),
        (GOOD.replace('function = "sines"', 'function = "radial"'), "radial"),
    ],
)
def test_bad_config_is_one_line_exit_2(tmp_path, text, expected):
    config = tmp_path / "bad.toml"
    config.write_text(text)
    proc = bitscale("train", str(config))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], proc.stderr


def test_missing_file(tmp_path):
    proc = bitscale("train", str(tmp_path / "nope.toml"))
    assert proc.returncode == 2 and "nope.toml: no such file" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_demo_quick_writes_the_report(tmp_path):
    proc = bitscale("demo", "--quick", "--out", str(tmp_path / "demo"))
    assert proc.returncode == 0, proc.stderr
    assert "holds" in proc.stdout and "report.html" in proc.stdout
    assert (tmp_path / "demo" / "report" / "report.html").is_file() and (tmp_path / "demo" / "demo.db").is_file()

def test_deeply_nested_config_is_one_line_exit_2(tmp_path, cli):
    """tomllib recurses once per level: a 10,000-deep array would end in a RecursionError traceback."""
    config = tmp_path / "deep.toml"
    config.write_text("a = " + "[" * 10_000 + "]" * 10_000 + "\n")
    for command in (("train", config), ("lm", config), ("theory", config), ("sweep", config, "--store", tmp_path / "s.db")):
        code, out, err = cli(*command)
        assert code == 2 and err == f"error: {config}: TOML nested too deeply (at most 32 levels of tables and arrays)\n", \
            (command, err)
    nested = tmp_path / "nested.toml"
    nested.write_text(GOOD.replace("[train]", "[task.options]\nx = " + "[" * 40 + "]" * 40 + "\n[train]"))
    code, _, err = cli("train", nested, "--out", tmp_path / "out")
    assert code == 2 and err == f"error: {nested}: TOML nested too deeply (43 levels of tables and arrays; at most 32)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep.toml", "nested.toml"]  # no store, no run directory


@pytest.mark.parametrize("args, expected", [
    (("report", "--out", "{tmp}/rep", "--bootstrap", "-1"), "--bootstrap: expected an integer >= 0, got -1"),
    (("report", "--out", "{tmp}/rep", "--bootstrap", "1000000"), "--bootstrap: expected an integer <= 100000, got 1000000"),
    (("sweep", "{tmp}/s.toml", "--store", "{tmp}/s.db", "--workers", "0"), "--workers: expected an integer >= 1, got 0"),
    (("sweep", "{tmp}/s.toml", "--store", "{tmp}/s.db", "--workers", "-4"), "--workers: expected an integer >= 1, got -4"),
    (("runs", "list", "--store", "{tmp}/s.db", "--status", "finished"),
     "--status: expected one of queued, running, done, failed, diverged, got 'finished'"),
])
def test_unbounded_cli_numbers_are_one_line_exit_2(tmp_path, cli, args, expected):
    from bitscale.sweep.store import Store

    Store(tmp_path / "s.db").close()
    (tmp_path / "s.toml").write_text("[base]\ntrain = { steps = 1 }\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = cli(*(a.format(tmp=tmp_path) for a in args))
    assert code == 2 and err == f"error: {expected}\n", err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no report folder, no lock file
