"""Many runs: sweep files -> run specs with stable ids -> an executor -> the SQLite results store."""

from bitscale.sweep.accounting import Accounting, account
from bitscale.sweep.executors import EXECUTORS, Executor, RunOutcome, RunTask, SerialExecutor, make_executor
from bitscale.sweep.runner import SweepReport, run_sweep
from bitscale.sweep.spec import RunSpec, SweepError, SweepFile, expand, load_sweep, run_id
from bitscale.sweep.store import Store, StoreError, export_runs, load_metrics, load_runs

__all__ = [
    "Accounting", "EXECUTORS", "Executor", "RunOutcome", "SerialExecutor", "RunSpec", "RunTask", "Store", "StoreError",
    "SweepError", "SweepFile", "SweepReport", "account", "expand", "export_runs", "load_metrics",
    "load_runs", "load_sweep", "make_executor", "run_id", "run_sweep",
]
