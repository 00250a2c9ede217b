"""`bitscale sweep` and `bitscale runs` through a subprocess: the workflow and bad input."""

import csv
import io
import json
import subprocess
import sys

import pytest


def bitscale(*args):
    """The real entry point in a subprocess."""
    return subprocess.run([sys.executable, "-m", "bitscale.cli", *args], capture_output=True, text=True, timeout=300)


def test_sweep_list_show_export(tmp_path, cli, sweep_file):
    db = tmp_path / "s.db"
    proc = bitscale("sweep", str(sweep_file), "--store", str(db), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "[8/8]" in proc.stdout and "trained 8 (8 done" in proc.stdout
    code, out, _ = cli("sweep", str(sweep_file), "--store", str(db))
    assert code == 0 and "8 already finished, 0 to train" in out

    code, out, _ = cli("runs", "list", "--store", str(db), "--sweep", "tiny")
    assert code == 0 and out.count("done") >= 8

    rows = list(csv.DictReader(io.StringIO(cli("runs", "export", "--store", str(db))[1])))
    assert len(rows) == 8 and {r["model.width"] for r in rows} == {"16", "32"}
    code, out, _ = cli("runs", "show", rows[0]["id"][:6], "--store", str(db))
    assert code == 0 and rows[0]["id"] in out and "metrics" in out
    path = tmp_path / "runs.json"
    assert cli("runs", "export", "--format", "json", "--out", str(path), "--store", str(db))[0] == 0
    assert len(json.loads(path.read_text())) == 8


@pytest.mark.parametrize(
    "body, expected",
    [
        ("[grid]\nwidht = [8]\n", "grid: widht: unknown config key"),
        ("[grid]\nwidth = []\n", "width: empty axis"),
        ("[grid]\nwidth = [8.5]\n", "model.width: Input should be a valid integer"),
        ("[grid]\nquant = ['ternary2']\n", "unknown preset 'ternary2'"),
        ("[[zip]]\nwidth = [8, 16]\nlr = [0.1]\n", "equal lengths"),
    ],
)
def test_bad_sweep_file_is_one_line_exit_2_and_no_store(tmp_path, cli, body, expected):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    db = tmp_path / "s.db"
    code, _, err = cli("sweep", str(path), "--store", str(db))
    assert code == 2
    assert expected in err and err.count("\n") == 1 and err.startswith("error: ")
    assert not db.exists()


def test_bad_input_through_the_real_entry_point(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[grid]\nwidth = []\n")
    proc = bitscale("sweep", str(path), "--store", str(tmp_path / "s.db"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_a_file_that_is_not_a_store_is_refused_and_untouched(tmp_path, cli, sweep_file):
    notes = tmp_path / "notes.db"
    notes.write_text("my notes, not a database\n")
    before = notes.read_bytes()
    for args in (("sweep", str(sweep_file), "--store", str(notes)), ("runs", "list", "--store", str(notes))):
        code, _, err = cli(*args)
        assert code == 2 and "notes.db" in err
    assert notes.read_bytes() == before


def test_unknown_executor_and_run(tmp_path, cli, sweep_file):
    code, _, err = cli("sweep", str(sweep_file), "--executor", "gpu-farm", "--store", str(tmp_path / "s.db"))
    assert code == 2 and "--executor" in err
    assert cli("sweep", str(sweep_file), "--store", str(tmp_path / "s.db"), "--quiet")[0] == 0
    code, _, err = cli("runs", "show", "zzzz", "--store", str(tmp_path / "s.db"))
    assert code == 2 and "zzzz" in err


def test_ray_address_where_nothing_listens_fails_fast(tmp_path, cli, sweep_file):
    pytest.importorskip("ray")
    code, _, err = cli("sweep", str(sweep_file), "--executor", "ray", "--address", "127.0.0.1:1", "--store", str(tmp_path / "s.db"))
    assert code == 2 and "no cluster reachable at 127.0.0.1:1" in err
    code, _, err = cli("sweep", str(sweep_file), "--executor", "ray", "--address", "nonsense", "--store", str(tmp_path / "s.db"))
    assert code == 2 and "--address" in err
