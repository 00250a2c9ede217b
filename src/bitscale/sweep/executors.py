"""Executors: where a sweep's runs are trained. One interface, four engines.

    executor.run(tasks, on_start) -> iterator of RunOutcome, in the order runs finish

- `serial`     one run after another in this process.
- `processes`  N local worker processes (spawned, torch threads split between them). Workers only
               train and return outcomes; the parent, which iterates, is the only writer to the store.
- `batched`    runs that share a model shape and differ only in seed, quant preset, kappa, lr or label
               noise train together as one stacked ensemble (`bitscale.sweep.batched`); the rest (and
               every language-model run) run one by one as in `serial`.
- `ray`        Ray tasks on a local or remote cluster (`address="auto"` or "HOST:PORT"; None starts a
               local instance and stops it on close). Tasks return outcomes to this driver.

Every engine trains a run through `execute` (or, for ensembles, `train_batched`), which never raises:
an exception becomes a `failed` outcome carrying its message, so one bad run does not stop a sweep.
Each run checkpoints its training state under its task's `workdir`; a run whose checkpoint exists
resumes from it (see `bitscale.train.state`).

`on_start(ids)` is called just before runs are handed to a worker: at most as many runs are in flight
as there are workers, so the store's `running` rows are the runs actually being trained.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import multiprocessing
import os
import shutil
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..runs.outcome import RunOutcome, failed_outcome, outcome_from_result
from .kinds import kind_for, parse_run_config

EXECUTORS = ("serial", "processes", "batched", "ray")
STATE_FILE = "state.safetensors"


@dataclass(frozen=True)
class RunTask:
    """One run to train: id, config (plain JSON dict, cheap to send to another process), and the
    directory that holds its training-state checkpoint."""

    id: str
    config: dict[str, Any]
    workdir: str
    checkpoint_every: Optional[int] = None
    compile: bool = False  # LM runs: compile the decoder blocks (bitscale.train.speed)


def execute(task: RunTask) -> RunOutcome:
    """Train one run by its kind's record (`bitscale.runs.kinds`), resuming from its checkpoint if one
    exists; never raises."""
    started = time.time()
    try:
        config = parse_run_config(task.config)
        state = Path(task.workdir) / STATE_FILE
        outcome = kind_for(config).train(task.id, config, state, task.checkpoint_every, task.compile, started)
    except Exception as e:  # a crashed run is recorded with its error; the sweep goes on
        return failed_outcome(task.id, e, started)
    shutil.rmtree(task.workdir, ignore_errors=True)
    return outcome


OnStart = Callable[[list[str]], None]


class Executor(ABC):
    name: str

    @abstractmethod
    def run(self, tasks: list[RunTask], on_start: OnStart) -> Iterator[RunOutcome]:
        """Train `tasks`, yielding each outcome as its run finishes."""

    def close(self) -> None:
        pass

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SerialExecutor(Executor):
    name = "serial"

    def run(self, tasks: list[RunTask], on_start: OnStart) -> Iterator[RunOutcome]:
        for task in tasks:
            on_start([task.id])
            yield execute(task)


class BatchedExecutor(Executor):
    """Stacked ensembles for runs that share a shape; singletons train alone through `execute`."""

    name = "batched"

    def run(self, tasks: list[RunTask], on_start: OnStart) -> Iterator[RunOutcome]:
        from .batched import group_runs, train_batched

        configs = [parse_run_config(t.config) for t in tasks]
        for group in group_runs(configs):
            members = [tasks[i] for i in group]
            on_start([t.id for t in members])
            if len(members) == 1:
                yield execute(members[0])
                continue
            started = time.time()
            key = hashlib.sha256(",".join(sorted(t.id for t in members)).encode()).hexdigest()[:16]
            workdir = Path(members[0].workdir).parent / f"batch-{key}"
            try:
                results = train_batched(
                    [configs[i] for i in group],
                    checkpoint_path=workdir / STATE_FILE,
                    checkpoint_every=members[0].checkpoint_every,
                )
            except Exception as e:
                for t in members:
                    yield failed_outcome(t.id, e, started)
                continue
            shutil.rmtree(workdir, ignore_errors=True)
            for t, result in zip(members, results):
                yield outcome_from_result(t.id, result, started)


def _die_with_parent() -> None:
    """Linux: ask the kernel to SIGKILL this worker when its parent dies, so a killed sweep leaves no
    orphan still training (and writing checkpoints) behind it."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: workers end when their task queue closes
        pass


def _worker_init(threads: int) -> None:
    _die_with_parent()
    import torch

    torch.set_num_threads(threads)


def _windowed(
    tasks: list[RunTask], width: int, submit: Callable[[RunTask], Any], wait: Callable[[set], tuple[set, set]],
    collect: Callable[[Any, RunTask], RunOutcome], on_start: OnStart,
) -> Iterator[RunOutcome]:
    """Keep at most `width` tasks in flight; yield outcomes as they complete."""
    queue = list(reversed(tasks))
    in_flight: dict[Any, RunTask] = {}
    while queue or in_flight:
        while queue and len(in_flight) < width:
            task = queue.pop()
            on_start([task.id])
            in_flight[submit(task)] = task
        done, _ = wait(set(in_flight))
        for handle in done:
            yield collect(handle, in_flight.pop(handle))


class ProcessExecutor(Executor):
    """`workers` spawned processes, each with cpu_count // workers torch threads."""

    name = "processes"

    def __init__(self, workers: Optional[int] = None) -> None:
        self.workers = workers or max(1, (os.cpu_count() or 1))
        threads = max(1, (os.cpu_count() or 1) // self.workers)
        ctx = multiprocessing.get_context("spawn")
        self._make_pool = lambda: cf.ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=_worker_init, initargs=(threads,))
        self.pool = self._make_pool()

    def run(self, tasks: list[RunTask], on_start: OnStart) -> Iterator[RunOutcome]:
        pool_of: dict[cf.Future, cf.ProcessPoolExecutor] = {}

        def submit(task: RunTask) -> cf.Future:
            future = self.pool.submit(execute, task)
            pool_of[future] = self.pool
            return future

        def collect(future: cf.Future, task: RunTask) -> RunOutcome:
            pool = pool_of.pop(future)
            try:
                return future.result()
            except cf.process.BrokenProcessPool:
                # a worker died (out of memory, a signal): its runs fail, a fresh pool takes the rest
                if pool is self.pool:
                    pool.shutdown(wait=False, cancel_futures=True)
                    self.pool = self._make_pool()
                return failed_outcome(task.id, "worker process died while training this run", time.time())

        def wait(futures: set) -> tuple[set, set]:
            return cf.wait(futures, return_when=cf.FIRST_COMPLETED)

        yield from _windowed(tasks, self.workers, submit, wait, collect, on_start)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on a HOST:PORT where nothing listens (ray.init would keep retrying for minutes)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise RuntimeError(f"--address: expected 'auto' or HOST:PORT, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise RuntimeError(f"ray: no cluster reachable at {address}: {e.strerror or e}") from None


class RayExecutor(Executor):
    """Ray tasks, one CPU-bound run each; at most as many in flight as the cluster has CPUs.

    Checkpoints are written under each task's workdir on the node that trains it: put the store's
    directory on storage every node shares for a run to resume on another node after a crash.
    """

    name = "ray"

    def __init__(self, address: Optional[str] = None, num_cpus: Optional[int] = None) -> None:
        try:
            import ray
        except ImportError:
            raise RuntimeError("the ray executor needs Ray: pip install 'bitscale[ray]'") from None
        if address not in (None, "auto"):
            _check_reachable(address)
        self.ray = ray
        self.started_here = not ray.is_initialized()
        if self.started_here:
            try:
                ray.init(address=address, num_cpus=num_cpus if address is None else None,
                         include_dashboard=False, log_to_driver=False, configure_logging=False)
            except (ConnectionError, ValueError, RuntimeError) as e:
                where = f"the cluster at {address}" if address else "a local instance"
                raise RuntimeError(f"ray: could not start or reach {where}: {' '.join(str(e).split())}") from None
        self.remote = ray.remote(num_cpus=1, max_retries=0)(execute)
        self.width = max(1, int(ray.cluster_resources().get("CPU", 1)))

    def run(self, tasks: list[RunTask], on_start: OnStart) -> Iterator[RunOutcome]:
        ray = self.ray

        def wait(refs: set) -> tuple[set, set]:
            done, rest = ray.wait(list(refs), num_returns=1)
            return set(done), set(rest)

        def collect(ref: Any, task: RunTask) -> RunOutcome:
            try:
                return ray.get(ref)
            except Exception as e:  # the worker process died or Ray lost the task
                return failed_outcome(task.id, e, time.time())

        yield from _windowed(tasks, self.width, self.remote.remote, wait, collect, on_start)

    def close(self) -> None:
        if self.started_here and self.ray.is_initialized():
            self.ray.shutdown()


def make_executor(name: str, workers: Optional[int] = None, address: Optional[str] = None) -> Executor:
    """The executor called `name` (one of EXECUTORS)."""
    if name == "serial":
        return SerialExecutor()
    if name == "batched":
        return BatchedExecutor()
    if name == "processes":
        return ProcessExecutor(workers)
    if name == "ray":
        return RayExecutor(address, num_cpus=workers)
    raise ValueError(f"executor: unknown {name!r}; expected one of {', '.join(EXECUTORS)}")

