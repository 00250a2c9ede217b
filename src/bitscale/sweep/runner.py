"""Run a sweep into a store: queue its runs, skip finished ones, train the rest, record every outcome.

    run_sweep(sweep, specs, store_path, executor) -> SweepReport

1. Lock the store (an flock on `<store>.lock`, released by the kernel even on SIGKILL): two sweeps
   writing one store at once is refused, and any run still marked `running` is therefore stale,
   left by a process that died; it goes back to `queued`.
2. Add the sweep and its runs (INSERT OR IGNORE on the run id: a run already in the store, from this
   sweep or another, keeps its status and results).
3. Hand the queued runs to the executor; as each finishes, write its row and metrics in one
   transaction and delete its checkpoint directory.

A SIGKILL at any moment loses at most the training since each in-flight run's last checkpoint (kept
under `<store>.work/<run id>/`) and never a stored result: SQLite commits are atomic, and a run's
status turns `done` in the same transaction that writes its metrics.
"""

from __future__ import annotations

import fcntl
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .accounting import account
from .executors import Executor, RunOutcome, RunTask
from .spec import RunSpec, SweepFile
from .store import Store, StoreError



@dataclass
class SweepReport:
    sweep: str
    total: int  # runs in the sweep
    finished_before: int  # already finished when this invocation started: skipped
    outcomes: list[RunOutcome] = field(default_factory=list)  # runs trained now

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)


def workdir_of(store_path: "str | Path") -> Path:
    """Directory for the store's in-flight checkpoints: `<store>.work/` next to the store."""
    store_path = Path(store_path)
    return store_path.with_name(store_path.name + ".work")


class StoreLock:
    """Exclusive advisory lock on `<store>.lock` for the duration of a sweep."""

    def __init__(self, store_path: "str | Path") -> None:
        self.path = Path(str(store_path) + ".lock")
        self.fd: Optional[int] = None

    def __enter__(self) -> "StoreLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise StoreError(f"{self.path.with_suffix('')}: another sweep is writing to this store") from None
        return self

    def __exit__(self, *exc: object) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)


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
