"""The results store: one SQLite file per project holding sweeps, runs and their metrics.

This is the only module that speaks SQL. Schema (version 2):

    meta(key PRIMARY KEY, value)        ('format', 'bitscale-store') marks a file as ours
    schema_version(version)             one row: how many MIGRATIONS have been applied
    sweeps(name PRIMARY KEY, config, created, updated)
    runs(id PRIMARY KEY, sweep, config, status, error, host, pid, started, finished, wall_time_s,
         n_params, n_params_non_embedding, train_flops, samples_seen, steps_done, final_train_loss,
         final_test_loss, created, precision_bits, storage_bits_per_weight)
    sweep_runs(sweep, run, position, PRIMARY KEY(sweep, run))
    metrics(run, step, split, name, value, PRIMARY KEY(run, step, split, name))

The accounting columns come from the run's config (`bitscale.sweep.accounting`): n_params,
n_params_non_embedding, train_flops, samples_seen, and two bits-per-weight figures over the quantized
matrices: precision_bits (P, information bits: log2 of the code levels, ternary log2(3) = 1.585; the
laws' precision variable) and storage_bits_per_weight (what is stored: the packed format's bits with
float32 scales, ternary-b3 about 1.6). Version 1 had one bits_per_weight column (2.0 for ternary);
migration 2 replaces it with the two, recomputed from each row's config.

A run is identified by its id (derived from its config by the caller). The same run may belong to
several sweeps (rows in sweep_runs) but has a single row in runs and is trained once; runs.sweep is
the sweep that first queued it. Configs are stored as canonical JSON (sorted keys); timestamps are
unix seconds (time.time()). A run's status is one of queued, running, done, failed, diverged.

Guarantees:
- Every write method is a single transaction, so a process killed at any moment leaves the store as
  it was before or after that call, never in between. Primary keys plus INSERT OR IGNORE / upserts
  mean no row is ever duplicated, however often a call is repeated.
- The file is in WAL mode (readers never block the writer) with a 10 s busy timeout, foreign keys on.
- Opening validates before writing anything: a file that is not a bitscale store, or one written by
  a newer bitscale, raises StoreError and is left byte-for-byte untouched. Older stores are upgraded
  in one transaction by applying the pending MIGRATIONS.
- Non-finite floats (NaN, +-inf) in losses and metrics are stored as NULL (read back as None / NaN).
- Only a regular file (symlinks followed) is ever opened: a directory, FIFO, socket or device at the
  store path is refused from its stat() with one line, before anything opens it (opening a FIFO would
  block forever). A missing store is created at the symlink's target when the path is a dangling link.
- Every SQLite error (and every undecodable text or config) met while creating, opening, reading or
  writing a store surfaces as StoreError with one line naming the file and what went wrong:
  "PATH: cannot write (read-only file or folder?)", "PATH: damaged database (...)", "PATH: busy ...".
  Nothing else escapes as sqlite3.Error.
"""

from __future__ import annotations

import errno
import functools
import importlib.util
import json
import math
import os
import sqlite3
import stat
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..atomic import atomic_write, file_kind

FORMAT = "bitscale-store"
STATUSES = ("queued", "running", "done", "failed", "diverged")
FINISHED_STATUSES = ("done", "failed", "diverged")
ACCOUNTING_KEYS = ("n_params", "n_params_non_embedding", "precision_bits", "storage_bits_per_weight", "train_flops",
                   "samples_seen")
EXPORT_FORMATS = ("csv", "json", "parquet")

# The schema as version 1 released it (migration 1); later migrations alter it (see the module docstring).
_SCHEMA_V1 = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
INSERT INTO meta (key, value) VALUES ('format', '{FORMAT}');
CREATE TABLE sweeps (
    name TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    sweep TEXT REFERENCES sweeps(name),
    config TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'diverged')),
    error TEXT,
    host TEXT,
    pid INTEGER,
    started REAL,
    finished REAL,
    wall_time_s REAL,
    n_params INTEGER,
    n_params_non_embedding INTEGER,
    bits_per_weight REAL,
    train_flops REAL,
    samples_seen INTEGER,
    steps_done INTEGER,
    final_train_loss REAL,
    final_test_loss REAL,
    created REAL NOT NULL
);
CREATE INDEX runs_sweep ON runs(sweep);
CREATE INDEX runs_status ON runs(status);
CREATE TABLE sweep_runs (
    sweep TEXT NOT NULL REFERENCES sweeps(name),
    run TEXT NOT NULL REFERENCES runs(id),
    position INTEGER NOT NULL,  -- order in which the sweep queued its runs (rowids may change on VACUUM)
    PRIMARY KEY (sweep, run)
);
CREATE INDEX sweep_runs_run ON sweep_runs(run);
CREATE TABLE metrics (
    run TEXT NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    split TEXT NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run, step, split, name)
);
"""



def _migrate_bits_per_weight(conn: sqlite3.Connection) -> None:
    """Schema 1 -> 2: the single bits_per_weight column (2.0 for ternary, its bit-plane width) becomes
    two, precision_bits and storage_bits_per_weight, recomputed from each row's stored config; a config
    that no longer parses leaves them NULL. The old column is dropped so that no stale figure survives."""
    conn.execute("ALTER TABLE runs ADD COLUMN precision_bits REAL")
    conn.execute("ALTER TABLE runs ADD COLUMN storage_bits_per_weight REAL")
    rows = conn.execute("SELECT id, config FROM runs").fetchall()
    if rows:
        # Imported here: the accounting needs the config classes (torch, pydantic), and only a store with
        # runs to upgrade needs them.
        from .accounting import account
        from .kinds import parse_run_config

        updates = []
        for run_id, config in rows:
            try:
                acc = account(parse_run_config(json.loads(config)))
            except (ValueError, TypeError, KeyError, AttributeError):  # pydantic's ValidationError is a ValueError
                continue
            updates.append((acc.precision_bits, acc.storage_bits_per_weight, run_id))
        conn.executemany("UPDATE runs SET precision_bits = ?, storage_bits_per_weight = ? WHERE id = ?", updates)
    conn.execute("ALTER TABLE runs DROP COLUMN bits_per_weight")


# Migration i brings a store from schema version i to i + 1: SQL text (one or more statements) or a
# callable taking the connection. All pending ones run in one transaction, so they must not commit.
# Append only; never edit a released migration.
MIGRATIONS: list[str | Callable[[sqlite3.Connection], None]] = [
    "CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (0);" + _SCHEMA_V1,
    _migrate_bits_per_weight,
]
SCHEMA_VERSION = len(MIGRATIONS)


class StoreError(Exception):
    """A problem with a store file, worded for the user (one line)."""


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _statements(sql: str) -> Iterator[str]:
    """Split SQL text into statements (a ';' inside a string or trigger body does not end one)."""
    buf = ""
    for piece in sql.split(";"):
        buf += piece + ";"
        if sqlite3.complete_statement(buf):
            if buf.strip(" \n\t;"):
                yield buf
            buf = ""
    if buf.strip(" \n\t;"):
        yield buf


_SQLITE_CODES = {  # primary result codes (sqlite3.h) -> what the user is told
    3: "cannot write (permission denied; read-only file or folder?)",  # SQLITE_PERM
    8: "cannot write (read-only file or folder?)",  # SQLITE_READONLY
    5: "busy (another process held the database lock for more than 10 s)",  # SQLITE_BUSY
    6: "busy (the database is locked)",  # SQLITE_LOCKED
    13: "cannot write (the disk or the database is full)",  # SQLITE_FULL
}


def describe_error(path: "str | Path", err: BaseException, doing: str = "open") -> str:
    """One line for a low-level error met on the store at `path`: the file, then what went wrong (an
    OSError: "cannot <doing> the store (...)").

    sqlite3 errors are classified by their result code (Python 3.11+) or, failing that, their text:
    a write refused by permissions -> "cannot write (read-only file or folder?)"; corrupt pages, a
    text value that is not UTF-8 or a stored config that is not JSON -> "damaged database (...)"."""
    text = " ".join(str(err).split())
    low = text.lower()
    code = getattr(err, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if isinstance(err, UnicodeDecodeError) or "could not decode to utf-8" in low:
        column = text.split("column ", 1)[1].split(" ", 1)[0] if "column " in text else "a text column"
        return f"{path}: damaged database (a stored text value in {column} is not valid UTF-8)"
    if isinstance(err, json.JSONDecodeError):
        return f"{path}: damaged database (a stored config is not valid JSON: {err.msg} at character {err.pos})"
    if isinstance(err, OSError):
        hint = "; read-only folder?" if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else ""
        return f"{path}: cannot {doing} the store ({err.strerror or text}{hint})"
    if primary in _SQLITE_CODES:
        return f"{path}: {_SQLITE_CODES[primary]}"
    if primary in (11, 26) or "malformed" in low or "not a database" in low:  # SQLITE_CORRUPT, SQLITE_NOTADB
        return f"{path}: damaged database ({text})"
    if "readonly" in low or "read-only" in low:
        return f"{path}: {_SQLITE_CODES[8]}"
    if "locked" in low:
        return f"{path}: {_SQLITE_CODES[5]}"
    if primary == 14 or "unable to open" in low:  # SQLITE_CANTOPEN
        return f"{path}: cannot open ({text}; unreadable file, or a read-only folder where SQLite cannot " \
               f"create its -wal / -shm files?)"
    if primary == 10 or "disk i/o" in low:  # SQLITE_IOERR
        return f"{path}: cannot read or write ({text})"
    if isinstance(err, sqlite3.IntegrityError):
        return f"{path}: write refused ({text})"
    return f"{path}: {text}"


@contextmanager
def _reported(path: "str | Path") -> Iterator[None]:
    """Turn any sqlite3 error, undecodable stored text or config, or OSError (a file that cannot be
    opened or created) raised inside into a one-line StoreError about `path` (describe_error; the
    original is kept as its __cause__). Other exceptions, a bug's included, pass through unchanged."""
    try:
        yield
    except StoreError:
        raise
    except (sqlite3.Error, UnicodeDecodeError, json.JSONDecodeError, OSError) as e:
        raise StoreError(describe_error(path, e)) from e


def _reports_errors(method):
    """Decorator for Store methods: errors as in _reported, naming the store's path."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with _reported(self.path):
            return method(self, *args, **kwargs)
    return wrapper


def store_file_exists(path: Path) -> bool:
    """Whether a regular file is at `path` (symlinks followed): False when nothing is there (also a
    dangling symlink); StoreError for a directory, FIFO, socket, device, or a path that cannot be
    looked at. Decided from stat() alone, so nothing is opened (opening a FIFO blocks forever)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        raise StoreError(f"{path}: a parent of this path is not a directory") from None
    except OSError as e:
        raise StoreError(f"{path}: cannot look at the store ({e.strerror or e})") from None
    mode = st.st_mode
    if stat.S_ISREG(mode):
        return True
    raise StoreError(f"{path} is {file_kind(mode) or 'not a regular file'}, not a bitscale results store")


def _is_sqlite_file(path: Path) -> bool:
    # O_NONBLOCK: should the file have been swapped for a FIFO since it was stat()ed, open() returns
    # instead of waiting for a writer; fstat then refuses it.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise StoreError(f"{path} is not a regular file, not a bitscale results store")
        return os.read(fd, 16) == b"SQLite format 3\x00"
    finally:
        os.close(fd)


def _check_store(conn: sqlite3.Connection, path: Path) -> int:
    """Return the schema version of the store behind `conn`, or raise StoreError. Reads only."""
    not_ours = f"{path} is not a bitscale results store (an SQLite database without the '{FORMAT}' marker)"
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" not in tables:
            raise StoreError(not_ours)
        marker = conn.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        if marker is None or marker[0] != FORMAT:
            raise StoreError(not_ours)
        rows = conn.execute("SELECT version FROM schema_version").fetchall() if "schema_version" in tables else []
    except sqlite3.DatabaseError as e:
        raise StoreError(describe_error(path, e)) from e
    if len(rows) != 1 or not isinstance(rows[0][0], int):
        raise StoreError(f"{path} is a damaged bitscale results store (no valid schema_version row)")
    version = rows[0][0]
    if version > len(MIGRATIONS):
        raise StoreError(f"{path}: schema version {version} is newer than this bitscale supports "
                         f"({len(MIGRATIONS)}); upgrade bitscale")
    return version


def _validate(path: Path) -> int:
    """Check that `path` is a bitscale store this code can open and return its schema version.
    Writes nothing: not the file, and no -wal / -shm files beside it."""
    if not store_file_exists(path):
        raise StoreError(f"{path} does not exist (expected a bitscale results store)")
    # Check the header ourselves so that SQLite never even opens a file that is not a database.
    if not _is_sqlite_file(path):
        raise StoreError(f"{path} is not a bitscale results store (not an SQLite database)")
    # A read-only connection to a WAL database creates the -wal / -shm files if they are missing. They
    # are missing only when no connection is open, and then the main file holds everything, so it can
    # be read as immutable (no locks, no side files); otherwise they exist and "ro" creates nothing.
    # (A writer opening meanwhile does not touch the main file: it appends to the WAL until a checkpoint.)
    side_files = any(Path(f"{path}{suffix}").exists() for suffix in ("-wal", "-shm"))
    conn = sqlite3.connect(path.resolve().as_uri() + ("?mode=ro" if side_files else "?immutable=1"), uri=True,
                           timeout=10)
    try:
        return _check_store(conn, path)
    finally:
        conn.close()


def validate_store(path: "str | Path") -> int | None:
    """Check, writing nothing, that the file at `path` is a bitscale store this code can open: its
    schema version, None when nothing is there yet, StoreError (one line) otherwise. What a sweep runs
    before making its lock file, so that a file that is not a store leaves nothing new beside it."""
    path = Path(path).expanduser()
    with _reported(path):
        return _validate(path) if store_file_exists(path) else None


def _open_readonly(path: Path) -> sqlite3.Connection:
    """A validated read-only connection that sees concurrent writers' commits. (On a WAL store nobody
    has open, it leaves empty -wal / -shm files behind, as any SQLite reader does; they are harmless.)"""
    _validate(path)
    return sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True, timeout=10)


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    # BEGIN IMMEDIATE takes the write lock up front: a deferred transaction that reads and then writes
    # can fail with SQLITE_BUSY at once (no retry) when another process committed in between.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        # After some errors (a full disk, a corrupt page) SQLite has already rolled back; a second
        # ROLLBACK would fail and hide the error that matters.
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        raise
    conn.execute("COMMIT")


def _migrate(conn: sqlite3.Connection) -> None:
    """Apply pending migrations in one transaction (no-op when the store is current)."""
    with _transaction(conn):
        has_table = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone()
        # Re-read under the write lock: another process may have migrated since we validated.
        version = conn.execute("SELECT version FROM schema_version").fetchone()[0] if has_table else 0
        for migration in MIGRATIONS[version:]:
            if callable(migration):
                migration(conn)
            else:
                for statement in _statements(migration):
                    conn.execute(statement)
        if version < len(MIGRATIONS):
            conn.execute("UPDATE schema_version SET version = ?", (len(MIGRATIONS),))


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: no implicit transactions; every write goes through _transaction.
    conn = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 10000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _create(path: Path) -> None:
    """Create a fresh store at `path`: built under a temporary name and linked into place, so a crash
    never leaves a half-initialised file and a concurrent creator simply finds the finished one. A
    dangling symlink at `path` gets its target created. StoreError if the folder cannot be written."""
    shown, path = path, Path(os.path.realpath(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise StoreError(describe_error(shown, e, "create")) from e
    os.close(fd)
    try:
        conn = _connect(Path(tmp))
        try:
            _migrate(conn)
        finally:
            conn.close()  # the last connection checkpoints and removes the -wal / -shm files
        try:
            os.link(tmp, path)  # fails if `path` appeared meanwhile: keep that one
        except FileExistsError:
            pass
        except OSError:  # filesystems without hard links
            if not path.exists():
                os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _with_config(row: sqlite3.Row) -> dict:
    run = dict(row)
    run["config"] = json.loads(run["config"])
    return run


class Store:
    """An open results store. Use as a context manager or call close()."""

    def __init__(self, path: str | Path, create: bool = True):
        """Open (and validate, and migrate if older) the store at `path`; create it if missing and
        `create` is true. Raises StoreError for anything that is not a usable bitscale store."""
        self.path = Path(path).expanduser()
        self._conn: sqlite3.Connection | None = None
        with _reported(self.path):
            if not store_file_exists(self.path):
                if not create:
                    raise StoreError(f"{self.path} does not exist (expected a bitscale results store)")
                _create(self.path)
            version = _validate(self.path)
            self._conn = _connect(self.path)
            self._conn.row_factory = sqlite3.Row
            if version < len(MIGRATIONS):
                try:
                    _migrate(self._conn)
                except BaseException:
                    self.close()
                    raise

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r})"

    # -- writes: each one transaction ------------------------------------------------------------

    @_reports_errors
    def add_sweep(self, name: str, config: dict) -> None:
        """Insert the sweep, or update its config and `updated` time if it exists."""
        now = time.time()
        with _transaction(self._conn) as c:
            c.execute("INSERT INTO sweeps (name, config, created, updated) VALUES (?, ?, ?, ?) "
                      "ON CONFLICT(name) DO UPDATE SET config = excluded.config, updated = excluded.updated",
                      (name, _canonical(config), now, now))

    @_reports_errors
    def add_runs(self, sweep: str, runs: list[dict]) -> int:
        """Queue `runs` (dicts with "id", "config" and optional ACCOUNTING_KEYS) for `sweep`.

        Runs already in the store keep their status and results; all are linked to the sweep.
        Returns the number of runs newly inserted. Raises ValueError for an unknown sweep or key."""
        rows, links = [], []
        now = time.time()
        for run in runs:
            unknown = set(run) - {"id", "config", *ACCOUNTING_KEYS}
            if unknown or "id" not in run or "config" not in run:
                raise ValueError(f"a run needs 'id' and 'config' (optional: {', '.join(ACCOUNTING_KEYS)}); "
                                 f"got keys {sorted(run)}")
            rows.append((run["id"], sweep, _canonical(run["config"]),
                         *(run.get(k) for k in ACCOUNTING_KEYS), now))
            links.append(run["id"])
        with _transaction(self._conn) as c:
            if c.execute("SELECT 1 FROM sweeps WHERE name = ?", (sweep,)).fetchone() is None:
                raise ValueError(f"unknown sweep {sweep!r}: call add_sweep first")
            inserted = c.executemany(
                f"INSERT OR IGNORE INTO runs (id, sweep, config, status, {', '.join(ACCOUNTING_KEYS)}, created) "
                f"VALUES (?, ?, ?, 'queued', {', '.join('?' * len(ACCOUNTING_KEYS))}, ?)", rows).rowcount
            start = c.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM sweep_runs WHERE sweep = ?",
                              (sweep,)).fetchone()[0]
            c.executemany("INSERT OR IGNORE INTO sweep_runs (sweep, run, position) VALUES (?, ?, ?)",
                          [(sweep, run_id, start + i) for i, run_id in enumerate(links)])
        return inserted

    @_reports_errors
    def requeue(self, sweep: str | None = None, statuses: Sequence[str] = ("running",)) -> int:
        """Put runs in `statuses` (of `sweep`, or of all sweeps) back to 'queued', clearing error,
        host, pid, started and finished. Returns how many runs were requeued."""
        statuses = tuple(statuses)
        bad = set(statuses) - set(STATUSES)
        if bad:
            raise ValueError(f"unknown status {sorted(bad)}; expected some of {', '.join(STATUSES)}")
        if not statuses:
            return 0
        sql = (f"UPDATE runs SET status = 'queued', error = NULL, host = NULL, pid = NULL, started = NULL, "
               f"finished = NULL WHERE status IN ({', '.join('?' * len(statuses))})")
        params: list[Any] = list(statuses)
        if sweep is not None:
            sql += " AND id IN (SELECT run FROM sweep_runs WHERE sweep = ?)"
            params.append(sweep)
        with _transaction(self._conn) as c:
            return c.execute(sql, params).rowcount

    @_reports_errors
    def mark_running(self, run_id: str, host: str, pid: int, started: float | None = None) -> None:
        """Record that `run_id` is being trained by process `pid` on `host`."""
        with _transaction(self._conn) as c:
            cur = c.execute("UPDATE runs SET status = 'running', host = ?, pid = ?, started = ?, error = NULL, "
                            "finished = NULL WHERE id = ?",
                            (host, pid, time.time() if started is None else started, run_id))
            if cur.rowcount == 0:
                raise ValueError(f"unknown run id {run_id!r}")

    @_reports_errors
    def finish_run(self, run_id: str, status: str, *, error: str | None = None, wall_time_s: float | None = None,
                   steps_done: int | None = None, final_train_loss: float | None = None,
                   final_test_loss: float | None = None, metrics: Sequence[tuple[int, str, str, float]] = (),
                   finished: float | None = None, host: str | None = None) -> None:
        """Record the outcome of a run and its metrics (step, split, name, value), in one transaction.

        `status` is done, failed or diverged. The metrics replace any the run had from an earlier
        attempt. Non-finite losses and metric values are stored as NULL. Raises ValueError for an
        unknown status or run id (and then writes nothing)."""
        if status not in FINISHED_STATUSES:
            raise ValueError(f"unknown final status {status!r}; expected one of {', '.join(FINISHED_STATUSES)}")
        with _transaction(self._conn) as c:
            cur = c.execute(
                "UPDATE runs SET status = ?, error = ?, wall_time_s = ?, steps_done = ?, final_train_loss = ?, "
                "final_test_loss = ?, finished = ?, host = COALESCE(?, host) WHERE id = ?",
                (status, error, _finite(wall_time_s), steps_done, _finite(final_train_loss),
                 _finite(final_test_loss), time.time() if finished is None else finished, host, run_id))
            if cur.rowcount == 0:
                raise ValueError(f"unknown run id {run_id!r}")
            # A retried run may log fewer steps than the failed attempt: drop the old curve entirely.
            c.execute("DELETE FROM metrics WHERE run = ?", (run_id,))
            c.executemany("INSERT OR REPLACE INTO metrics (run, step, split, name, value) VALUES (?, ?, ?, ?, ?)",
                          ((run_id, int(step), split, name, _finite(value)) for step, split, name, value in metrics))

    # -- reads -------------------------------------------------------------------------------------

    @_reports_errors
    def runs(self, sweep: str | None = None, status: str | None = None) -> list[dict]:
        """All runs (of `sweep`, with `status`) as dicts with the config parsed, by created then id."""
        sql, params = "SELECT * FROM runs WHERE 1", []
        if sweep is not None:
            sql += " AND id IN (SELECT run FROM sweep_runs WHERE sweep = ?)"
            params.append(sweep)
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        return [_with_config(r) for r in self._conn.execute(sql + " ORDER BY created, rowid", params)]

    @_reports_errors
    def pending(self, sweep: str) -> list[tuple[str, dict]]:
        """(id, config) of the sweep's queued runs, in the order the sweep queued them."""
        rows = self._conn.execute(
            "SELECT runs.id, runs.config FROM sweep_runs JOIN runs ON runs.id = sweep_runs.run "
            "WHERE sweep_runs.sweep = ? AND runs.status = 'queued' ORDER BY sweep_runs.position", (sweep,))
        return [(r["id"], json.loads(r["config"])) for r in rows]

    @_reports_errors
    def get_run(self, run_id_or_prefix: str) -> dict:
        """The run with this id, or the only one whose id starts with it; with its "metrics" and the
        "sweeps" it belongs to. StoreError if no run or several runs match."""
        key = run_id_or_prefix
        row = self._conn.execute("SELECT * FROM runs WHERE id = ?", (key,)).fetchone()
        if row is None and key:
            matches = self._conn.execute("SELECT * FROM runs WHERE substr(id, 1, ?) = ? LIMIT 2",
                                         (len(key), key)).fetchall()
            if len(matches) > 1:
                n = self._conn.execute("SELECT COUNT(*) FROM runs WHERE substr(id, 1, ?) = ?",
                                       (len(key), key)).fetchone()[0]
                raise StoreError(f"run id prefix {key!r} is ambiguous: it matches {n} runs in {self.path}")
            row = matches[0] if matches else None
        if row is None:
            raise StoreError(f"no run with id or prefix {key!r} in {self.path}")
        run = _with_config(row)
        run["sweeps"] = [r[0] for r in self._conn.execute(
            "SELECT sweep FROM sweep_runs WHERE run = ? ORDER BY sweep", (run["id"],))]
        run["metrics"] = self.metrics(run["id"])
        return run

    @_reports_errors
    def metrics(self, run_id: str) -> list[dict]:
        """The run's metrics as dicts {step, split, name, value}, ordered by name, split, step."""
        rows = self._conn.execute("SELECT step, split, name, value FROM metrics WHERE run = ? "
                                  "ORDER BY name, split, step", (run_id,))
        return [dict(r) for r in rows]

    @_reports_errors
    def sweeps(self) -> list[dict]:
        """All sweeps as dicts {name, config, created, updated}, oldest first."""
        rows = self._conn.execute("SELECT * FROM sweeps ORDER BY created, name")
        return [_with_config(r) for r in rows]

    @_reports_errors
    def counts(self, sweep: str | None = None) -> dict[str, int]:
        """Number of runs (of `sweep`) per status; every status is a key, zero included."""
        sql, params = "SELECT status, COUNT(*) FROM runs", []
        if sweep is not None:
            sql += " WHERE id IN (SELECT run FROM sweep_runs WHERE sweep = ?)"
            params.append(sweep)
        counts = dict.fromkeys(STATUSES, 0)
        counts.update({r[0]: r[1] for r in self._conn.execute(sql + " GROUP BY status", params)})
        return counts


# -- analysis: read-only access as pandas DataFrames ------------------------------------------------

RUN_COLUMNS = ("id", "sweep", "status", "error", "host", "started", "finished", "wall_time_s", "n_params",
               "n_params_non_embedding", "precision_bits", "storage_bits_per_weight", "train_flops", "samples_seen",
               "steps_done", "final_train_loss", "final_test_loss")


def load_runs(path: str | Path, sweep: str | None = None):
    """One row per run (of `sweep`): the RUN_COLUMNS, the other runs columns (pid, created, ...), then
    the config flattened into dotted columns ("model.width", "train.lr"). A config column whose name
    clashes with a runs column is prefixed "config.". Read-only; StoreError if `path` is not a store."""
    import pandas as pd

    with _reported(path):
        return _load_runs(Path(path).expanduser(), sweep, pd)


def _load_runs(path: Path, sweep: str | None, pd):
    conn = _open_readonly(path)
    try:
        sql, params = "SELECT * FROM runs", []
        if sweep is not None:
            sql += " WHERE id IN (SELECT run FROM sweep_runs WHERE sweep = ?)"
            params.append(sweep)
        cur = conn.execute(sql + " ORDER BY created, rowid", params)
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
    finally:
        conn.close()
    table = pd.DataFrame.from_records(rows, columns=names)
    configs = pd.json_normalize([json.loads(c) for c in table.pop("config")], sep=".")
    configs.columns = [f"config.{c}" if c in table.columns else c for c in configs.columns]
    order = [c for c in RUN_COLUMNS if c in table.columns] + [c for c in table.columns if c not in RUN_COLUMNS]
    return pd.concat([table[order], configs.set_axis(table.index)], axis=1)


def load_sweeps(path: str | Path) -> list[dict]:
    """The sweeps table, oldest first, as dicts {name, config, created, updated}. Read-only; StoreError
    if `path` is not a store."""
    with _reported(path):
        conn = _open_readonly(Path(path).expanduser())
        conn.row_factory = sqlite3.Row
        try:
            return [_with_config(r) for r in conn.execute("SELECT * FROM sweeps ORDER BY created, name")]
        finally:
            conn.close()


def load_metrics(path: str | Path, sweep: str | None = None):
    """All metrics (of `sweep`'s runs) in long format: columns run, step, split, name, value."""
    import pandas as pd

    with _reported(path):
        conn = _open_readonly(Path(path).expanduser())
        try:
            sql, params = "SELECT run, step, split, name, value FROM metrics", []
            if sweep is not None:
                sql += " WHERE run IN (SELECT run FROM sweep_runs WHERE sweep = ?)"
                params.append(sweep)
            rows = conn.execute(sql + " ORDER BY run, name, split, step", params).fetchall()
        finally:
            conn.close()
    return pd.DataFrame.from_records(rows, columns=["run", "step", "split", "name", "value"])


def _json_records(df) -> str:
    def plain(v: Any) -> Any:
        if hasattr(v, "item") and not isinstance(v, (list, dict, str)):
            v = v.item()  # numpy scalar -> Python
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    records = [{k: plain(v) for k, v in rec.items()} for rec in df.to_dict(orient="records")]
    # json.dumps writes floats with repr, so values round-trip exactly (DataFrame.to_json rounds)
    return json.dumps(records, indent=1, allow_nan=False, default=str) + "\n"


def export_runs(path: str | Path, out: str | Path | None, fmt: str, sweep: str | None = None) -> str | None:
    """Write load_runs(path, sweep) as csv, json (records; NaN -> null) or parquet.

    With `out` a file path the file is written atomically and None is returned. With out=None the
    csv/json text is written to stdout and also returned; parquet needs a file (ValueError)."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {', '.join(EXPORT_FORMATS)}")
    if fmt == "parquet":
        if out is None:
            raise ValueError("parquet export needs an output file")
        if importlib.util.find_spec("pyarrow") is None:
            raise StoreError("parquet export needs pyarrow: pip install 'bitscale[parquet]'")
    df = load_runs(path, sweep)
    if fmt == "parquet":
        write: Callable[[str], None] = lambda tmp: df.to_parquet(tmp, index=False, engine="pyarrow")  # noqa: E731
    else:
        text = df.to_csv(index=False) if fmt == "csv" else _json_records(df)
        if out is None:
            sys.stdout.write(text)
            return text
        write = lambda tmp: Path(tmp).write_text(text)  # noqa: E731
    atomic_write(Path(out).expanduser(), write)
    return None
