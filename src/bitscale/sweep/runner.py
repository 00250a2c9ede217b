"""Run a sweep into a store: queue its runs, skip finished ones, train the rest, record every outcome.

    run_sweep(sweep, specs, store_path, executor) -> SweepReport

1. Lock the store (StoreLock: an flock on `<resolved store>.lock`, released by the kernel even on
   SIGKILL; one lock per store file, whatever symlink names it, and a hard-linked store is refused):
   two sweeps writing one store at once is refused, and any run still marked `running` is therefore
   stale, left by a process that died; it goes back to `queued`.
2. Add the sweep and its runs (INSERT OR IGNORE on the run id: a run already in the store, from this
   sweep or another, keeps its status and results).
3. Hand the queued runs to the executor; as each finishes, write its row and metrics in one
   transaction and delete its checkpoint directory.

A SIGKILL at any moment loses at most the training since each in-flight run's last checkpoint (kept
under `<resolved store>.work/<run id>/`) and never a stored result: SQLite commits are atomic, and a run's
status turns `done` in the same transaction that writes its metrics.
"""

from __future__ import annotations

import errno
import fcntl
import math
import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..limits import MemoryLimitError
from .accounting import account
from .executors import Executor, RunOutcome, RunTask
from .kinds import kind_for
from .spec import RunSpec, SweepError, SweepFile
from .store import Store, StoreError, describe_error, store_file_exists, validate_store


@dataclass
class SweepReport:
    sweep: str
    total: int  # runs in the sweep
    finished_before: int  # already finished when this invocation started: skipped
    outcomes: list[RunOutcome] = field(default_factory=list)  # runs trained now

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)


def workdir_of(store_path: "str | Path") -> Path:
    """Directory for the store's in-flight checkpoints: `<store>.work/` next to the store file, symlinks
    resolved (so a sweep resumed through another symlink to the store finds its checkpoints)."""
    store_path = Path(os.path.realpath(Path(store_path).expanduser()))
    return store_path.with_name(store_path.name + ".work")


class StoreLock:
    """Exclusive advisory lock on one store file for the duration of a sweep; StoreError if it is held.

    The lock must belong to the store *file*, not to the name it was reached by, or two sweeps could
    write one store through two names. The design:

    - The store path is resolved (os.path.realpath: every symlink, in the path and the file name, is
      followed), and the lock is an flock(2) on `<resolved store>.lock`. Every symlink to the store
      therefore locks the same file; so does a second mount of its folder (the lock file is the same
      inode there too). A store that does not exist yet is keyed the same way, by its resolved folder
      and name, so a sweep that creates it and one that arrives after it exists contend for one lock.
    - A hard link is a second name in a folder of its own that resolving cannot find, so a store whose
      file has more than one link (os.stat().st_nlink > 1, which every name of the inode reports) is
      refused, checked before the lock file is opened and again once the lock is held (a link made
      meanwhile): no hard link, whichever of its names is used, gets a sweep past the lock.
    - A directory, FIFO, socket or device at the store path is refused from its stat() before anything
      is opened (a FIFO would block forever); a FIFO or symlink planted at the lock file's name is
      refused too (O_NOFOLLOW | O_NONBLOCK, then fstat).
    - The lock file is created only when there is none: a sweep refused because the lock is held opens
      the holder's file and leaves nothing new behind. It is never deleted (deleting a lock file races
      with a process about to lock it); the kernel drops the lock itself when the holder exits, SIGKILL
      included.

    The store file itself is not flocked: on BSD and macOS flock and SQLite's fcntl() locks on one
    file interact, and closing any other descriptor of the database file would drop SQLite's locks.
    """

    def __init__(self, store_path: "str | Path") -> None:
        self.store_path = Path(store_path).expanduser()
        self.resolved = Path(os.path.realpath(self.store_path))
        self.path = self.resolved.with_name(self.resolved.name + ".lock")
        self.fd: Optional[int] = None

    def _check_links(self) -> None:
        """Refuse a non-regular store file or one with hard links (see the class docstring)."""
        if not store_file_exists(self.store_path):  # the name the user gave, in messages; stat follows links
            return
        links = os.stat(self.store_path).st_nlink
        if links > 1:
            raise StoreError(f"{self.store_path}: the store file has {links} hard links; a sweep cannot lock a "
                             f"hard-linked store against sweeps through its other names (remove the extra links; "
                             f"a symlink is fine)")

    def __enter__(self) -> "StoreLock":
        self._check_links()
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, flags, 0o644)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise StoreError(f"{self.path}: the lock file is a symlink; remove it") from None
            raise StoreError(describe_error(self.store_path, e, "lock")) from e
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise StoreError(f"{self.path}: the lock file is not a regular file; remove it")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError(f"{self.store_path}: another sweep is writing to this store") from None
            self._check_links()
        except BaseException:
            os.close(fd)  # closing the descriptor releases the flock, if it was taken
            raise
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _finite(x: Optional[float]) -> Optional[float]:
    return x if x is not None and math.isfinite(x) else None


def run_sweep(
    sweep: SweepFile,
    specs: list[RunSpec],
    store_path: "str | Path",
    executor: Executor,
    *,
    retry_failed: bool = False,
    on_plan: Optional[Callable[[int, int], None]] = None,
    on_outcome: Optional[Callable[[RunOutcome], None]] = None,
) -> SweepReport:
    """Train every run of `specs` not yet finished in the store at `store_path`.

    `on_plan(total, finished_before)` is called once the queue is known; `on_outcome(outcome)` after
    each run's result is stored. Runs recorded as `failed` are retried only with `retry_failed`.
    """
    name = sweep.name or "sweep"
    work = workdir_of(store_path)
    # Accounted before the store is touched, so that the sweep and its queued runs are written back to back.
    rows = [{"id": spec.id, "config": spec.config.model_dump(mode="json"), **account(spec.config).to_dict()}
            for spec in specs]
    for spec, row in zip(specs, rows):  # a run that cannot fit in memory is refused before anything is written
        try:
            kind_for(spec.config).check_fits(spec.config, f"{name}: run {spec.id}", n_params=row["n_params"])
        except MemoryLimitError as e:
            raise SweepError(str(e)) from None
    validate_store(store_path)  # a file that is not a store (or a FIFO, ...) is refused before its lock file is made
    with StoreLock(store_path), Store(store_path) as store:
        store.add_sweep(name, sweep.model_dump(mode="json"))
        store.add_runs(name, rows)
        store.requeue(statuses=("running",))  # we hold the lock: anything running was left by a dead process
        if retry_failed:
            store.requeue(name, statuses=("failed",))
        pending = store.pending(name)
        ids = {spec.id for spec in specs}
        pending = [(rid, cfg) for rid, cfg in pending if rid in ids]
        report = SweepReport(name, len(specs), len(specs) - len(pending))
        for rid in ids - {rid for rid, _ in pending}:  # checkpoints a finished run no longer needs
            shutil.rmtree(work / rid, ignore_errors=True)
        if on_plan is not None:
            on_plan(report.total, report.finished_before)

        tasks = [RunTask(rid, cfg, str(work / rid), sweep.checkpoint_every, sweep.compile) for rid, cfg in pending]

        def started(run_ids: list[str]) -> None:
            for rid in run_ids:
                store.mark_running(rid, host=os.uname().nodename, pid=os.getpid())

        for outcome in executor.run(tasks, started):
            store.finish_run(
                outcome.id,
                outcome.status,
                error=outcome.error,
                wall_time_s=outcome.wall_time_s,
                steps_done=outcome.steps_done,
                final_train_loss=_finite(outcome.final_train_loss),
                final_test_loss=_finite(outcome.final_test_loss),
                metrics=outcome.metrics,
                finished=outcome.finished,
                host=outcome.host,
            )
            report.outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
    return report
