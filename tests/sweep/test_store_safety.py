"""A store is locked by its file, not its name; odd files are refused before anything opens them; every
SQLite failure is one line naming the store (issue 17)."""

import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from bitscale.sweep import store as store_mod
from bitscale.sweep.executors import SerialExecutor
from bitscale.sweep.runner import StoreLock, run_sweep, workdir_of
from bitscale.sweep.spec import load_sweep
from bitscale.sweep.store import Store, StoreError, load_metrics, load_runs, load_sweeps


def listing(*folders):
    return {str(f): sorted(os.listdir(f)) for f in folders}


def one_line(err):
    text = str(err.value)
    assert "\n" not in text and text, text
    return text


@pytest.fixture
def sweep_and_specs(sweep_file):
    sweep, specs = load_sweep(sweep_file)
    return sweep, specs[:1]


@pytest.fixture
def existing_store(tmp_path):
    path = tmp_path / "real" / "r.db"
    Store(path).close()
    return path


# -- the lock belongs to the file -------------------------------------------------------------------

def test_a_sweep_through_a_symlink_is_refused_while_the_store_is_locked(tmp_path, existing_store, sweep_and_specs):
    other = tmp_path / "elsewhere"
    other.mkdir()
    link = other / "link.db"
    link.symlink_to(existing_store)
    with StoreLock(existing_store):
        before = listing(existing_store.parent, other)
        with pytest.raises(StoreError, match="another sweep is writing to this store") as e:
            run_sweep(*sweep_and_specs, link, SerialExecutor())
        assert one_line(e).startswith(str(link))
        assert listing(existing_store.parent, other) == before  # no new lock file (nor anything else)
    # and the other way round: locked through the link, refused through the real name
    with StoreLock(link):
        with pytest.raises(StoreError, match="another sweep"):
            run_sweep(*sweep_and_specs, existing_store, SerialExecutor())
    assert not (other / "link.db.lock").exists()
    assert workdir_of(link) == workdir_of(existing_store)  # one checkpoint folder whatever the name


def test_a_store_that_does_not_exist_yet_is_locked_by_its_resolved_folder_and_name(tmp_path, sweep_and_specs):
    real = tmp_path / "real"
    real.mkdir()
    alias = tmp_path / "alias"
    alias.symlink_to(real, target_is_directory=True)
    with StoreLock(alias / "new.db"):  # nothing there yet
        with pytest.raises(StoreError, match="another sweep"):
            run_sweep(*sweep_and_specs, real / "new.db", SerialExecutor())
    assert not (real / "new.db").exists()  # the refused sweep created no store either


def test_a_hard_link_cannot_get_a_second_sweep_past_the_lock(tmp_path, existing_store, sweep_and_specs):
    other = tmp_path / "elsewhere"
    other.mkdir()
    hard = other / "hard.db"
    with StoreLock(existing_store):
        os.link(existing_store, hard)  # made while the first sweep runs
        before = listing(existing_store.parent, other)
        for name in (hard, existing_store):
            with pytest.raises(StoreError, match="2 hard links") as e:
                run_sweep(*sweep_and_specs, name, SerialExecutor())
            assert one_line(e).startswith(str(name))
        assert listing(existing_store.parent, other) == before  # no hard.db.lock
    # a link that was there before any sweep: no name of it can be swept, so none can race another
    with pytest.raises(StoreError, match="hard links"):
        with StoreLock(hard):
            pass
    hard.unlink()
    report = run_sweep(*sweep_and_specs, existing_store, SerialExecutor())
    assert report.count("done") == 1


HOLD_LOCK = textwrap.dedent("""
    import sys
    from bitscale.sweep.runner import StoreLock
    with StoreLock(sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.readline()
""")


def test_a_sweep_in_another_process_holding_the_lock_through_a_symlink(tmp_path, existing_store, sweep_file):
    link = tmp_path / "link.db"
    link.symlink_to(existing_store)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(link)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        proc = subprocess.run([sys.executable, "-m", "bitscale.cli", "sweep", str(sweep_file), "--store",
                               str(existing_store), "--quiet"], capture_output=True, text=True, timeout=120)
    finally:
        holder.communicate("\n", timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1 and "another sweep" in proc.stderr
    with Store(existing_store) as db:
        assert db.sweeps() == []  # the refused sweep wrote nothing


# -- odd files at the store path ------------------------------------------------------------------------

REFUSE_FIFO = textwrap.dedent("""
    import sys
    from bitscale.sweep.runner import StoreLock
    from bitscale.sweep.store import Store, StoreError, load_runs
    for open_it in (lambda: StoreLock(sys.argv[1]).__enter__(), lambda: Store(sys.argv[1]),
                    lambda: Store(sys.argv[1], create=False), lambda: load_runs(sys.argv[1])):
        try:
            open_it()
        except StoreError as e:
            print(e)
""")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs")
def test_a_fifo_store_is_refused_at_once_not_opened(tmp_path, sweep_file):
    fifo = tmp_path / "pipe.db"
    os.mkfifo(fifo)
    link = tmp_path / "to-pipe.db"
    link.symlink_to(fifo)
    for name in (fifo, link):
        # in a subprocess with a timeout: opening a FIFO blocks forever, which would hang pytest itself
        proc = subprocess.run([sys.executable, "-c", REFUSE_FIFO, str(name)], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines() == [f"{name} is a FIFO, not a bitscale results store"] * 4
        cli = subprocess.run([sys.executable, "-m", "bitscale.cli", "sweep", str(sweep_file), "--store", str(name)],
                             capture_output=True, text=True, timeout=60)
        assert cli.returncode == 2 and cli.stderr == f"error: {name} is a FIFO, not a bitscale results store\n"
    assert sorted(os.listdir(tmp_path)) == ["pipe.db", "tiny.toml", "to-pipe.db"]  # no lock file, no store


@pytest.mark.parametrize("kind", ["directory", "device"])
def test_a_directory_or_device_store_is_refused(tmp_path, sweep_and_specs, kind):
    if kind == "directory":
        path = tmp_path / "folder.db"
        path.mkdir()
    else:
        if not os.path.exists("/dev/null"):
            pytest.skip("no /dev/null")
        path = tmp_path / "null.db"
        path.symlink_to("/dev/null")
    what = "a directory" if kind == "directory" else "a character device"
    for open_it in (lambda: run_sweep(*sweep_and_specs, path, SerialExecutor()), lambda: Store(path),
                    lambda: load_runs(path), lambda: load_metrics(path)):
        with pytest.raises(StoreError, match=f"is {what}, not a bitscale results store") as e:
            open_it()
        one_line(e)
    assert not (tmp_path / f"{path.name}.lock").exists() and not os.path.exists("/dev/null.lock")


def test_a_planted_lock_symlink_is_refused(tmp_path, existing_store):
    target = tmp_path / "victim.txt"
    target.write_text("keep me")
    (existing_store.parent / "r.db.lock").symlink_to(target)
    with pytest.raises(StoreError, match="lock file is a symlink"):
        with StoreLock(existing_store):
            pass
    assert target.read_text() == "keep me"


# -- SQLite failures as one line ------------------------------------------------------------------------

def filled_store(path, n=200):
    with Store(path) as db:
        db.add_sweep("s", {"note": "a sweep"})
        db.add_runs("s", [{"id": f"run{i:03d}", "config": {"model": {"width": i}, "pad": "x" * 2000}}
                          for i in range(n)])
        for i in range(n):
            db.finish_run(f"run{i:03d}", "done", final_test_loss=1.0 / (i + 1), metrics=[(0, "test", "loss", 1.0)])
    return path


def read_everything(path):
    """Every reader of a store, each either returning or raising."""
    return [lambda: load_runs(path), lambda: load_metrics(path), lambda: load_sweeps(path),
            lambda: Store(path, create=False).runs(), lambda: Store(path, create=False).counts()]


def test_overwritten_pages_are_a_damaged_database_not_a_traceback(tmp_path, cli):
    path = filled_store(tmp_path / "r.db")
    size = path.stat().st_size
    with open(path, "r+b") as f:  # the middle of the file: b-tree pages of the runs table
        f.seek(size // 2)
        f.write(b"\xff" * 8192)
    for read in read_everything(path)[:1] + read_everything(path)[3:4]:
        with pytest.raises(StoreError, match=r"r\.db: damaged database \(database disk image is malformed\)") as e:
            read()
        one_line(e)
    code, out, err = cli("runs", "list", "--store", path)
    assert code == 2 and err.startswith("error: ") and "damaged database" in err and err.count("\n") == 1, err
    code, out, err = cli("fit", "--law", "power_N", "--store", path)
    assert code == 2 and "damaged database" in err and err.count("\n") == 1, err


def test_text_that_is_not_utf8_is_a_damaged_database(tmp_path, cli):
    path = filled_store(tmp_path / "r.db")
    data = path.read_bytes()
    at = data.index(b"x" * 100, len(data) // 2)  # inside one run's stored config
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(b"\xff\xfe" * 8)
    for read in (read_everything(path)[0], read_everything(path)[3]):
        with pytest.raises(StoreError, match=r"damaged database \(a stored text value in 'config' is not valid UTF-8\)") as e:
            read()
        assert one_line(e).startswith(str(path))
    for args in (("runs", "list"), ("runs", "export", "--format", "csv"), ("compare",)):
        code, out, err = cli(*args, "--store", path)
        assert code == 2 and err.startswith("error: ") and "not valid UTF-8" in err and err.count("\n") == 1, (args, err)


def test_a_config_that_is_not_json_is_a_damaged_database(tmp_path):
    path = filled_store(tmp_path / "r.db", n=3)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE runs SET config = '{not json' WHERE id = 'run001'")
    conn.commit()
    conn.close()
    for read in (read_everything(path)[0], read_everything(path)[3]):
        with pytest.raises(StoreError, match=r"r\.db: damaged database \(a stored config is not valid JSON"):
            read()


def read_only_connect(monkeypatch):
    """sqlite3.connect as in a folder where nothing can be written: every connection the store opens
    is a read-only one, so SQLite itself refuses each write (SQLITE_READONLY), as it does there."""
    real = sqlite3.connect

    def connect(database, *args, uri=False, **kwargs):
        if not uri:
            database, uri = f"{os.path.realpath(database)}", True
            database = "file:" + database + "?mode=ro"
        return real(database, *args, uri=uri, **kwargs)

    monkeypatch.setattr(store_mod.sqlite3, "connect", connect)


def test_a_read_only_store_is_one_line_cannot_write(tmp_path, monkeypatch, sweep_and_specs):
    path = filled_store(tmp_path / "r.db", n=3)
    before = path.read_bytes()
    read_only_connect(monkeypatch)
    with pytest.raises(StoreError, match=r"r\.db: cannot write \(read-only file or folder\?\)") as e:
        run_sweep(*sweep_and_specs, path, SerialExecutor())
    assert isinstance(e.value.__cause__, sqlite3.OperationalError)
    with pytest.raises(StoreError, match="cannot write"):
        Store(path).add_sweep("other", {})
    assert path.read_bytes() == before


def permissions_enforced(folder):
    """Whether this process is refused writes to a 0555 folder (root, or CAP_DAC_OVERRIDE, is not)."""
    try:
        (folder / "probe").touch()
    except PermissionError:
        return True
    (folder / "probe").unlink()
    return False


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_a_store_in_a_read_only_folder(tmp_path, sweep_file):
    folder = tmp_path / "ro"
    folder.mkdir()
    filled_store(folder / "r.db", n=3)
    folder.chmod(0o555)
    try:
        if not permissions_enforced(folder):
            pytest.skip("this process ignores folder permissions (root); the simulated test above covers it")
        with pytest.raises(StoreError, match=r"r\.db: cannot write \(read-only"):
            Store(folder / "r.db").add_sweep("x", {})
        with pytest.raises(StoreError, match=r"new\.db: cannot create the store \(Permission denied; read-only folder\?\)"):
            Store(folder / "new.db")
        proc = subprocess.run([sys.executable, "-m", "bitscale.cli", "sweep", str(sweep_file), "--store",
                               str(folder / "r.db")], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        folder.chmod(0o755)


def test_describe_error_names_the_file_and_what_went_wrong():
    describe = store_mod.describe_error
    assert describe("a.db", sqlite3.OperationalError("attempt to write a readonly database")) == \
        "a.db: cannot write (read-only file or folder?)"
    assert describe("a.db", sqlite3.DatabaseError("database disk image is malformed")) == \
        "a.db: damaged database (database disk image is malformed)"
    assert describe("a.db", sqlite3.OperationalError("database is locked")).startswith("a.db: busy")
    assert describe("a.db", PermissionError(13, "Permission denied"), "create") == \
        "a.db: cannot create the store (Permission denied; read-only folder?)"


@pytest.mark.parametrize("content", [b"name,value\nlr,0.1\n", b"SQLite format 3\x00" + b"\x00" * 200])
def test_a_sweep_into_a_file_that_is_not_a_store_writes_nothing(tmp_path, sweep_and_specs, content):
    path = tmp_path / "notes.db"
    path.write_bytes(content)
    before = listing(tmp_path)
    with pytest.raises(StoreError, match="notes.db") as e:
        run_sweep(*sweep_and_specs, path, SerialExecutor())
    one_line(e)
    assert listing(tmp_path) == before and path.read_bytes() == content  # no notes.db.lock, no -wal
