"""SIGKILL a running sweep at random moments, again and again: nothing stored is lost, corrupted or
duplicated, and the resumed sweep ends with exactly the losses of uninterrupted runs."""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from bitscale.sweep.runner import workdir_of
from bitscale.sweep.spec import load_sweep
from bitscale.sweep.store import Store
from bitscale.train import run

SWEEP = """
name = "kill"
checkpoint_every = 50
[base]
model = { kind = "two_layer" }
task = { function = "teacher", d = 32, n_train = 256, n_test = 256, input_dist = "sphere" }
train = { lr = 1.0, steps = 3000, schedule = "cosine", eval_every = 500 }  # long enough that 4 kills land before the end
[grid]
width = [512, 1024]
quant = ["paper-1bit", "fp32"]
seed = [0, 1]
"""


def check_store(path, n_runs):
    """The store is intact: integrity check passes, one row per run, no duplicate metric, and every
    finished run has its whole curve."""
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("SELECT COUNT(*), COUNT(DISTINCT id) FROM runs").fetchone() == (n_runs, n_runs)
        dup = con.execute(
            "SELECT COUNT(*) FROM (SELECT run, step, split, name FROM metrics GROUP BY 1, 2, 3, 4 HAVING COUNT(*) > 1)"
        ).fetchone()[0]
        assert dup == 0
        for run_id, status, steps in con.execute("SELECT id, status, steps_done FROM runs"):
            n = con.execute("SELECT COUNT(*) FROM metrics WHERE run = ?", (run_id,)).fetchone()[0]
            assert (n == 2 * 7) if status == "done" else (n == 0), (run_id, status, n)
        return dict(con.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())
    finally:
        con.close()


def sweep_command(path, db, executor):
    cmd = [sys.executable, "-m", "bitscale.cli", "sweep", str(path), "--store", str(db), "--quiet", "--executor", executor]
    if executor == "processes":
        cmd += ["--workers", "2"]
    return cmd


def kill_repeatedly(tmp_path, executor, kills, seed):
    path = tmp_path / "kill.toml"
    path.write_text(SWEEP)
    db = tmp_path / "kill.db"
    _, specs = load_sweep(path)
    rng = random.Random(seed)
    killed_mid_run = resumable = 0
    for _ in range(kills):
        proc = subprocess.Popen(sweep_command(path, db, executor), start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(2.5, 6.0))  # the interpreter and torch take ~2-3 s to start
        if proc.poll() is not None:
            assert proc.returncode == 0, proc.stderr.read().decode()
            break
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and any worker processes, without warning
        proc.wait()
        if db.exists():
            counts = check_store(db, len(specs))
            killed_mid_run += counts.get("running", 0) > 0
            work = workdir_of(db)
            resumable += work.exists() and any(work.rglob("state.safetensors"))
    done = subprocess.run(sweep_command(path, db, executor), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert check_store(db, len(specs)) == {"done": len(specs)}
    with Store(db) as store:
        stored = {r["id"]: (r["final_train_loss"], r["final_test_loss"]) for r in store.runs()}
    for spec in specs:
        _, _, result = run(spec.config)
        expected = (result.final_train_loss, result.final_test_loss)
        if executor == "batched":  # stacked arithmetic: equal to solo training within float tolerance
            expected = pytest.approx(expected, rel=1e-3)
        assert stored[spec.id] == expected, spec.point
    return killed_mid_run, resumable


def test_repeated_sigkill_serial(tmp_path):
    killed_mid_run, resumable = kill_repeatedly(tmp_path, "serial", kills=4, seed=0)
    assert killed_mid_run >= 2 and resumable >= 1  # the kills did land inside training


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["serial", "processes", "batched"])
def test_many_sigkills(tmp_path, executor):
    killed_mid_run, resumable = kill_repeatedly(tmp_path, executor, kills=10, seed=1)
    assert killed_mid_run >= (1 if executor == "batched" else 3)  # a batched sweep is over in a few kills
