import json
import os
import signal
import sqlite3
import subprocess
import sys

import pandas as pd
import pytest

from bitscale.sweep import store as store_mod
from bitscale.sweep.store import SCHEMA_VERSION, Store, StoreError, export_runs, load_metrics, load_runs


def cfg(width, lr=0.1, n_train=256):
    return {"model": {"width": width, "precision": "ternary"}, "train": {"lr": lr}, "task": {"n_train": n_train}}


def make_store(path, n=3, sweep="s1"):
    s = Store(path)
    s.add_sweep(sweep, {"grid": {"model.width": [2 ** i for i in range(n)]}})
    s.add_runs(sweep, [{"id": f"run{i:02d}", "config": cfg(2 ** i), "n_params": 10 * 2 ** i,
                        "precision_bits": 1.585, "storage_bits_per_weight": 1.6} for i in range(n)])
    return s


def snapshot(path):
    st = os.stat(path)
    return path.read_bytes(), st.st_mtime_ns, sorted(os.listdir(path.parent))


def test_create_and_reopen(tmp_path):
    path = tmp_path / "deep" / "dir" / "results.db"
    with make_store(path) as s:
        assert s.path == path
        assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert path.exists()
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # no leftover creation file
    with Store(path, create=False) as s:
        assert [r["id"] for r in s.runs()] == ["run00", "run01", "run02"]
        assert s.sweeps()[0]["config"] == {"grid": {"model.width": [1, 2, 4]}}
        version = s._conn.execute("SELECT version FROM schema_version").fetchone()[0]
        assert version == SCHEMA_VERSION


def test_missing_file_without_create(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        Store(tmp_path / "nope.db", create=False)
    assert not (tmp_path / "nope.db").exists()
    with pytest.raises(StoreError, match="does not exist"):
        load_runs(tmp_path / "nope.db")
    assert os.listdir(tmp_path) == []


def test_add_sweep_upserts(tmp_path):
    with Store(tmp_path / "r.db") as s:
        s.add_sweep("a", {"v": 1})
        s.add_sweep("a", {"v": 2})
        (sweep,) = s.sweeps()
        assert sweep["config"] == {"v": 2} and sweep["updated"] >= sweep["created"]


def test_add_runs_idempotent(tmp_path):
    with make_store(tmp_path / "r.db") as s:
        again = [{"id": f"run{i:02d}", "config": cfg(2 ** i)} for i in range(3)]
        assert s.add_runs("s1", again) == 0
        assert s.add_runs("s1", again + [{"id": "new", "config": cfg(99)}]) == 1
        assert len(s.runs()) == 4
        assert s._conn.execute("SELECT COUNT(*) FROM sweep_runs").fetchone()[0] == 4
        assert [rid for rid, _ in s.pending("s1")] == ["run00", "run01", "run02", "new"]
        assert s.runs()[0]["n_params"] == 10 and s.runs()[0]["storage_bits_per_weight"] == 1.6
        assert s.runs()[0]["precision_bits"] == 1.585 and "bits_per_weight" not in s.runs()[0]


def test_add_runs_rejects_bad_input(tmp_path):
    with Store(tmp_path / "r.db") as s:
        with pytest.raises(ValueError, match="unknown sweep"):
            s.add_runs("ghost", [{"id": "a", "config": {}}])
        s.add_sweep("s", {})
        with pytest.raises(ValueError, match="n_parms"):
            s.add_runs("s", [{"id": "a", "config": {}, "n_parms": 3}])
        assert s.runs() == []


def test_run_in_two_sweeps_is_trained_once(tmp_path):
    with make_store(tmp_path / "r.db") as s:
        s.add_sweep("s2", {})
        assert s.add_runs("s2", [{"id": "run01", "config": cfg(2)}, {"id": "only2", "config": cfg(7)}]) == 1
        s.mark_running("run01", "hostA", 123)
        s.finish_run("run01", "done", final_test_loss=0.5, metrics=[(10, "test", "loss", 0.5)])
        # done in s1 means done in s2: not pending again, and results shared
        assert [rid for rid, _ in s.pending("s2")] == ["only2"]
        assert "run01" not in [rid for rid, _ in s.pending("s1")]
        assert {r["id"] for r in s.runs(sweep="s2")} == {"run01", "only2"}
        assert s.counts("s2") == {"queued": 1, "running": 0, "done": 1, "failed": 0, "diverged": 0}
        assert s.get_run("run01")["sweeps"] == ["s1", "s2"]
        assert s.get_run("run01")["sweep"] == "s1"  # the sweep that first queued it
        assert len(s.runs()) == 4


def test_lifecycle_and_metrics_not_duplicated(tmp_path):
    with make_store(tmp_path / "r.db") as s:
        s.mark_running("run00", "hostA", 42, started=100.0)
        r = s.get_run("run00")
        assert (r["status"], r["host"], r["pid"], r["started"]) == ("running", "hostA", 42, 100.0)
        metrics = [(step, split, "loss", 1.0 / (step + 1)) for step in range(0, 50, 10) for split in ("train", "test")]
        metrics.append((50, "train", "grad_norm", float("nan")))
        for _ in range(2):  # a redo must not duplicate anything
            s.finish_run("run00", "done", wall_time_s=1.5, steps_done=50, final_train_loss=0.02,
                         final_test_loss=float("inf"), metrics=metrics, finished=200.0)
        r = s.get_run("run00")
        assert r["status"] == "done" and r["finished"] == 200.0 and r["steps_done"] == 50
        assert r["final_test_loss"] is None  # non-finite -> NULL
        assert len(r["metrics"]) == len(metrics) == 11
        assert r["metrics"][0] == {"step": 50, "split": "train", "name": "grad_norm", "value": None}
        assert [m["step"] for m in r["metrics"] if m["name"] == "loss" and m["split"] == "test"] == [0, 10, 20, 30, 40]
        # a later attempt logging a shorter curve replaces the old one
        s.finish_run("run00", "diverged", error="loss exploded", metrics=[(0, "train", "loss", 9.0)])
        assert s.metrics("run00") == [{"step": 0, "split": "train", "name": "loss", "value": 9.0}]
        assert s.get_run("run00")["error"] == "loss exploded"


def test_finish_run_rejects_unknown(tmp_path):
    with make_store(tmp_path / "r.db") as s:
        with pytest.raises(ValueError, match="status"):
            s.finish_run("run00", "queued")
        with pytest.raises(ValueError, match="unknown run id"):
            s.finish_run("ghost", "done", metrics=[(0, "train", "loss", 1.0)])
        with pytest.raises(ValueError, match="unknown run id"):
            s.mark_running("ghost", "h", 1)
        assert s._conn.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 0


def test_failed_write_leaves_nothing_half_written(tmp_path):
    with make_store(tmp_path / "r.db") as s:
        s.mark_running("run00", "hostA", 1)
        bad = [(0, "train", "loss", 1.0), (1, "train", None, 2.0)]  # NULL name violates NOT NULL mid-insert
        with pytest.raises(StoreError, match=r"r\.db: write refused \(NOT NULL constraint failed: metrics\.name\)") as e:
            s.finish_run("run00", "done", final_test_loss=0.1, metrics=bad)
        assert isinstance(e.value.__cause__, sqlite3.IntegrityError)  # the SQLite error is kept as the cause
        assert s.get_run("run00")["status"] == "running"
        assert s.get_run("run00")["final_test_loss"] is None
        assert s.metrics("run00") == []
        s.finish_run("run00", "done", metrics=bad[:1])  # the connection is usable afterwards
    with Store(tmp_path / "r.db") as s:
        assert s.get_run("run00")["status"] == "done" and len(s.metrics("run00")) == 1


KILL_MID_FINISH = """
import os, signal, sys
from bitscale.sweep import store

def die(*args):
    os.kill(os.getpid(), signal.SIGKILL)  # after the row update and half the metrics, before COMMIT

s = store.Store(sys.argv[1])
s._conn.create_function("die", 0, die)
s._conn.execute("CREATE TEMP TRIGGER t AFTER INSERT ON metrics WHEN NEW.step = 5 BEGIN SELECT die(); END")
s.finish_run("run00", "done", final_test_loss=0.1, metrics=[(i, "train", "loss", 1.0) for i in range(10)])
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_sigkill_mid_transaction(tmp_path):
    path = tmp_path / "r.db"
    make_store(path).close()
    proc = subprocess.run([sys.executable, "-c", KILL_MID_FINISH, str(path)], capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    with Store(path) as s:
        assert s.get_run("run00")["status"] == "queued"
        assert s.get_run("run00")["final_test_loss"] is None
        assert s.metrics("run00") == []
        assert s._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_two_connections_see_each_other(tmp_path):
    path = tmp_path / "r.db"
    with make_store(path) as a, Store(path) as b:  # as two processes of one sweep would
        a.mark_running("run00", "h", 1)
        assert b.get_run("run00")["status"] == "running"
        b.finish_run("run00", "done", metrics=[(0, "test", "loss", 0.5)])
        assert a.counts("s1")["done"] == 1
        assert list(load_runs(path)["status"]) == ["done", "queued", "queued"]
        assert len(load_metrics(path)) == 1


def test_requeue(tmp_path):
    with make_store(tmp_path / "r.db") as s:
        s.add_sweep("other", {})
        s.add_runs("other", [{"id": "x", "config": {}}])
        for rid in ("run00", "run01", "x"):
            s.mark_running(rid, "h", 7)
        s.finish_run("run01", "failed", error="boom")
        assert s.requeue("s1") == 1  # stale running run00; x belongs to the other sweep
        r = s.get_run("run00")
        assert (r["status"], r["host"], r["pid"], r["started"]) == ("queued", None, None, None)
        assert s.get_run("x")["status"] == "running"
        assert s.requeue(statuses=("failed",)) == 1
        assert s.get_run("run01")["status"] == "queued" and s.get_run("run01")["error"] is None
        assert [rid for rid, _ in s.pending("s1")] == ["run00", "run01", "run02"]
        assert s.requeue() == 1 and s.counts()["running"] == 0
        with pytest.raises(ValueError):
            s.requeue(statuses=("finished",))


def test_get_run_by_prefix(tmp_path):
    with Store(tmp_path / "r.db") as s:
        s.add_sweep("s", {})
        s.add_runs("s", [{"id": i, "config": {"i": i}} for i in ("abc123", "abd456", "abd789", "ab")])
        assert s.get_run("abc")["id"] == "abc123"
        assert s.get_run("ab")["id"] == "ab"  # an exact id wins over a prefix
        assert s.get_run("abd7")["config"] == {"i": "abd789"}
        with pytest.raises(StoreError, match="ambiguous.*4 runs"):
            s.get_run("a")
        with pytest.raises(StoreError, match="ambiguous.*2 runs"):
            s.get_run("abd")
        with pytest.raises(StoreError, match="no run"):
            s.get_run("zz")
        with pytest.raises(StoreError, match="no run"):
            s.get_run("")


@pytest.mark.parametrize("kind", ["text", "sqlite", "empty"])
def test_non_store_files_untouched(tmp_path, kind):
    path = tmp_path / "thing.db"
    if kind == "text":
        path.write_text("name,value\nlr,0.1\n" * 100)
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE users (name TEXT)")
        conn.execute("INSERT INTO users VALUES ('ada')")
        conn.commit()
        conn.close()
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    before = snapshot(path)
    for open_it in (lambda: Store(path), lambda: Store(path, create=False), lambda: load_runs(path),
                    lambda: load_metrics(path)):
        with pytest.raises(StoreError, match="thing.db is not a bitscale results store") as e:
            open_it()
        assert "\n" not in str(e.value)
    assert snapshot(path) == before


def test_sqlite_with_meta_but_no_marker(tmp_path):
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute("INSERT INTO meta VALUES ('format', 'someone-else')")
    conn.execute("CREATE TABLE schema_version (version INTEGER)")
    conn.execute("INSERT INTO schema_version VALUES (1)")
    conn.commit()
    conn.close()
    before = snapshot(path)
    with pytest.raises(StoreError, match="bitscale-store"):
        Store(path)
    assert snapshot(path) == before


def test_directory_is_rejected(tmp_path):
    with pytest.raises(StoreError, match="directory"):
        Store(tmp_path)


def test_newer_schema_version_refused(tmp_path):
    path = tmp_path / "r.db"
    make_store(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version = 7")
    conn.commit()
    conn.close()
    before = snapshot(path)
    msg = f"schema version 7 is newer than this bitscale supports \\({SCHEMA_VERSION}\\); upgrade bitscale"
    with pytest.raises(StoreError, match=msg):
        Store(path)
    with pytest.raises(StoreError, match=msg):
        load_runs(path)
    assert snapshot(path) == before


def test_migration_from_older_version(tmp_path, monkeypatch):
    path = tmp_path / "r.db"
    with make_store(path) as s:
        s.finish_run("run00", "done", final_test_loss=0.25, metrics=[(0, "test", "loss", 0.25)])

    def backfill(conn):
        conn.execute("UPDATE runs SET seed = 0")

    monkeypatch.setattr(store_mod, "MIGRATIONS",
                        store_mod.MIGRATIONS + ["ALTER TABLE runs ADD COLUMN seed INTEGER; "
                                                "CREATE INDEX runs_seed ON runs(seed);", backfill])
    with Store(path) as s:
        assert s._conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION + 2
        r = s.get_run("run00")
        assert r["seed"] == 0 and r["final_test_loss"] == 0.25 and len(r["metrics"]) == 1
        assert len(s.runs()) == 3
    with Store(path) as s:  # reopening at the new version applies nothing twice
        assert len(s.runs()) == 3
    assert "seed" in load_runs(path).columns


def test_failing_migration_rolls_back(tmp_path, monkeypatch):
    path = tmp_path / "r.db"
    make_store(path).close()

    def broken(conn):
        raise RuntimeError("bug in migration")

    monkeypatch.setattr(store_mod, "MIGRATIONS",
                        store_mod.MIGRATIONS + ["ALTER TABLE runs ADD COLUMN seed INTEGER", broken])
    with pytest.raises(RuntimeError):
        Store(path)
    monkeypatch.undo()
    with Store(path) as s:  # still a valid current store: the first new migration was rolled back too
        assert "seed" not in s.runs()[0]
        assert s._conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION


def test_load_runs_and_metrics(tmp_path):
    path = tmp_path / "r.db"
    with make_store(path) as s:
        s.add_sweep("s2", {})
        s.add_runs("s2", [{"id": "solo", "config": {"model": {"width": 5}, "id": "clash"}}])
        s.finish_run("run01", "done", final_test_loss=0.5, steps_done=10,
                     metrics=[(0, "train", "loss", 1.0), (10, "train", "loss", 0.5)])
    df = load_runs(path)
    assert list(df["id"]) == ["run00", "run01", "run02", "solo"]
    assert list(df.columns[:4]) == ["id", "sweep", "status", "error"]
    for col in ("model.width", "model.precision", "train.lr", "task.n_train", "config.id", "final_test_loss"):
        assert col in df.columns
    assert list(df["model.width"]) == [1, 2, 4, 5]
    assert df.set_index("id").loc["run01", "final_test_loss"] == 0.5
    assert list(load_runs(path, sweep="s2")["id"]) == ["solo"]
    assert load_runs(path, sweep="nothing").empty
    m = load_metrics(path)
    assert list(m.columns) == ["run", "step", "split", "name", "value"]
    assert list(m["value"]) == [1.0, 0.5]
    assert load_metrics(path, sweep="s2").empty


def test_load_runs_empty_store(tmp_path):
    path = tmp_path / "r.db"
    Store(path).close()
    df = load_runs(path)
    assert df.empty and "final_test_loss" in df.columns


@pytest.fixture
def finished_store(tmp_path):
    path = tmp_path / "r.db"
    with make_store(path) as s:
        s.finish_run("run00", "done", final_test_loss=0.1234567890123456789, final_train_loss=float("nan"))
        s.finish_run("run02", "failed", error='CUDA OOM, "big" model')
    return path


@pytest.mark.parametrize("fmt", ["csv", "json", "parquet"])
def test_export_round_trip(finished_store, tmp_path, fmt):
    out = tmp_path / "exports" / f"runs.{fmt}"
    assert export_runs(finished_store, out, fmt) is None
    back = {"csv": pd.read_csv, "json": lambda p: pd.read_json(p, precise_float=True), "parquet": pd.read_parquet}[fmt](out)
    want = load_runs(finished_store)
    assert list(back["id"]) == ["run00", "run01", "run02"]
    assert set(want.columns) <= set(back.columns)
    for col in ("final_test_loss", "model.width", "train.lr", "n_params", "precision_bits",
                "storage_bits_per_weight"):
        pd.testing.assert_series_equal(back[col].astype(float), want[col].astype(float), check_names=False)
    assert back["error"][2] == 'CUDA OOM, "big" model'
    assert back["final_test_loss"][0] == 0.1234567890123456789
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def test_export_json_nulls_and_stdout(finished_store, capsys):
    text = export_runs(finished_store, None, "json")
    assert capsys.readouterr().out == text
    records = json.loads(text)
    assert records[0]["final_train_loss"] is None and records[1]["final_test_loss"] is None
    assert records[0]["model.width"] == 1
    csv_text = export_runs(finished_store, None, "csv")
    assert csv_text.splitlines()[0].startswith("id,sweep,status")


def test_export_errors(finished_store, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="xlsx"):
        export_runs(finished_store, tmp_path / "x", "xlsx")
    with pytest.raises(ValueError, match="file"):
        export_runs(finished_store, None, "parquet")
    monkeypatch.setitem(__import__("sys").modules, "pyarrow", None)  # make `import pyarrow` fail
    with pytest.raises(StoreError, match=r"pip install 'bitscale\[parquet\]'"):
        export_runs(finished_store, tmp_path / "x.parquet", "parquet")
    assert not (tmp_path / "x.parquet").exists()


def test_export_keeps_old_file_on_failure(finished_store, tmp_path, monkeypatch):
    out = tmp_path / "runs.parquet"
    out.write_bytes(b"old")

    def boom(self, tmp, **kwargs):
        open(tmp, "wb").write(b"half a parq")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", boom)
    with pytest.raises(OSError, match="disk full"):
        export_runs(finished_store, out, "parquet")
    assert out.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_load_sweeps_reads_without_writing(tmp_path):
    from bitscale.sweep.store import load_sweeps

    path = tmp_path / "s.db"
    with Store(path) as db:
        db.add_sweep("a", {"base": {"model": {"width": 4}}})
        db.add_sweep("b", {})
    before = path.read_bytes()
    sweeps = load_sweeps(path)
    assert [s["name"] for s in sweeps] == ["a", "b"] and sweeps[0]["config"] == {"base": {"model": {"width": 4}}}
    assert path.read_bytes() == before
    (tmp_path / "x.txt").write_text("not a store")
    with pytest.raises(StoreError):
        load_sweeps(tmp_path / "x.txt")


# The schema as bitscale released it at version 1 (frozen here: the store's own copy is migration 1).
_V1_SQL = """
CREATE TABLE schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version VALUES (1);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
INSERT INTO meta (key, value) VALUES ('format', 'bitscale-store');
CREATE TABLE sweeps (name TEXT PRIMARY KEY, config TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL);
CREATE TABLE runs (
    id TEXT PRIMARY KEY, sweep TEXT REFERENCES sweeps(name), config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'diverged')),
    error TEXT, host TEXT, pid INTEGER, started REAL, finished REAL, wall_time_s REAL,
    n_params INTEGER, n_params_non_embedding INTEGER, bits_per_weight REAL, train_flops REAL, samples_seen INTEGER,
    steps_done INTEGER, final_train_loss REAL, final_test_loss REAL, created REAL NOT NULL
);
CREATE INDEX runs_sweep ON runs(sweep);
CREATE INDEX runs_status ON runs(status);
CREATE TABLE sweep_runs (sweep TEXT NOT NULL REFERENCES sweeps(name), run TEXT NOT NULL REFERENCES runs(id),
                         position INTEGER NOT NULL, PRIMARY KEY (sweep, run));
CREATE INDEX sweep_runs_run ON sweep_runs(run);
CREATE TABLE metrics (run TEXT NOT NULL REFERENCES runs(id), step INTEGER NOT NULL, split TEXT NOT NULL,
                      name TEXT NOT NULL, value REAL, PRIMARY KEY (run, step, split, name));
"""


def test_v1_store_migrates_to_precision_and_storage_bits(tmp_path):
    import math

    from bitscale.kernels import formats
    from bitscale.models.decoder import DecoderConfig
    from bitscale.sweep.accounting import decoder_shapes

    ternary = {"model": {"width": 64, "quant": "bitnet-b1.58"}, "task": {"d": 16}}
    binary = {"model": {"width": 64, "quant": "bitnet"}, "task": {"d": 16}}
    full = {"model": {"width": 64, "quant": "fp32"}, "task": {"d": 16}}
    lm = {"kind": "lm", "model": {"d_model": 32, "n_layer": 1, "n_head": 2, "quant": "bitnet-b1.58"}}
    configs = {"ternary": ternary, "binary": binary, "fp32": full, "lm": lm, "stale": {"model": {"no_such_field": 1}}}
    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    conn.executescript(_V1_SQL)
    conn.execute("INSERT INTO sweeps VALUES ('old', '{}', 0, 0)")
    for i, (rid, config) in enumerate(configs.items()):
        # version 1 recorded ternary at 2 bits (+ a bf16 scale), binary at 1, fp32 at 32
        old = {"ternary": 2 + 16 / 1024, "lm": 2.0, "binary": 1 + 16 / 1024, "fp32": 32.0, "stale": 2.0}[rid]
        conn.execute("INSERT INTO runs (id, sweep, config, status, n_params, bits_per_weight, final_test_loss, created) "
                     "VALUES (?, 'old', ?, 'done', 1040, ?, 0.5, ?)", (rid, json.dumps(config, sort_keys=True), old, i))
        conn.execute("INSERT INTO sweep_runs VALUES ('old', ?, ?)", (rid, i))
    conn.execute("INSERT INTO metrics VALUES ('ternary', 0, 'test', 'loss', 0.5)")
    conn.commit()
    conn.close()

    with Store(path) as s:
        assert s._conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION == 2
        runs = {r["id"]: r for r in s.runs()}
        assert all("bits_per_weight" not in r for r in runs.values())  # the stale 2.0 is gone
        assert runs["ternary"]["precision_bits"] == math.log2(3) == runs["lm"]["precision_bits"]
        assert runs["ternary"]["storage_bits_per_weight"] == formats.bits_per_weight((64, 16), "ternary-b3")
        shapes = decoder_shapes(DecoderConfig(d_model=32, n_layer=1, n_head=2, quant="bitnet-b1.58"))
        lm_bits = sum(formats.bits_per_weight(sh, "ternary-b3") * sh[0] * sh[1] for sh in shapes) / sum(
            sh[0] * sh[1] for sh in shapes)
        assert runs["lm"]["storage_bits_per_weight"] == pytest.approx(lm_bits, rel=1e-12)
        assert (runs["binary"]["precision_bits"], runs["binary"]["storage_bits_per_weight"]) == (
            1.0, formats.bits_per_weight((64, 16), "binary"))
        assert (runs["fp32"]["precision_bits"], runs["fp32"]["storage_bits_per_weight"]) == (32.0, 32.0)
        assert runs["stale"]["precision_bits"] is None and runs["stale"]["storage_bits_per_weight"] is None
        # everything else is kept
        assert runs["ternary"]["n_params"] == 1040 and runs["ternary"]["final_test_loss"] == 0.5
        assert len(s.metrics("ternary")) == 1 and [rid for rid, _ in s.pending("old")] == []
    df = load_runs(path)
    assert "bits_per_weight" not in df.columns
    assert list(df.columns[10:12]) == ["precision_bits", "storage_bits_per_weight"]
