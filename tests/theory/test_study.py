"""`bitscale theory` on a tiny config: every table and plot is written, and bad configs are one line."""

import csv
import json

import pytest

TINY = """
widths = [16, 64]
seeds = [0]
n_train = 16
n_test = 32
steps = 20
every = 10
kappas = [0.1, 1.0]
kappa_width = 16
ntk_widths = [64]
ntk_points = 8
[[targets]]
function = "teacher"
d = 8
"""


def test_theory_writes_tables_plots_and_summary(cli, tmp_path):
    config = tmp_path / "theory.toml"
    config.write_text(TINY)
    out = tmp_path / "out"
    code, stdout, err = cli("theory", str(config), "--out", str(out))
    assert code == 0, err
    assert "gamma" in stdout
    with open(out / "kernel.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 1 * 2  # widths x seeds x precisions
    assert {r["precision"] for r in rows} == {"paper-1bit", "fp32"}
    summary = json.loads((out / "summary.json").read_text())
    assert "teacher-d8" in summary["targets"]
    for name in ("kernel_vs_width.png", "gendiff_vs_width.png", "gendiff_vs_kappa.png", "convergence.png",
                 "ntk_vs_analytic.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("body, expected", [("widths = [64]\n", "widths"), ("colour = 1\n", "colour")])
def test_bad_theory_config(cli, tmp_path, body, expected):
    config = tmp_path / "bad.toml"
    config.write_text(body)
    code, _, err = cli("theory", str(config))
    assert code == 2 and expected in err and err.count("\n") == 1
