"""What training one run reports, whatever its kind: a `RunOutcome` (status, losses, curves as metric
rows), made from a regression `RunResult` or an `LMResult`. Executors send outcomes back to the one
process that writes the store.

A run that discarded its checkpoint (damaged, or restoring a non-finite loss) and restarted from scratch
carries one more metric row, (0, "run", "checkpoint_discarded", number of restarts), so the store records
it without a schema change.
"""

from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Optional

from ..train.lm import LMResult
from ..train.loop import RunResult


@dataclass
class RunOutcome:
    """What an executor reports for one run; `metrics` rows are (step, split, name, value)."""

    id: str
    status: str  # done | diverged | failed
    error: Optional[str] = None
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started: float = 0.0
    finished: float = 0.0
    wall_time_s: float = 0.0
    steps_done: int = 0
    final_train_loss: Optional[float] = None
    final_test_loss: Optional[float] = None
    metrics: list[tuple[int, str, str, float]] = field(default_factory=list)


DISCARDED = (0, "run", "checkpoint_discarded")  # (step, split, name) of the restart metric


def restart_rows(restarts: int) -> list[tuple[int, str, str, float]]:
    """The metric row recording checkpoints discarded by a run (none for a run that never restarted)."""
    return [(*DISCARDED, float(restarts))] if restarts else []


def outcome_from_result(run_id: str, result: RunResult, started: float) -> RunOutcome:
    metrics = [(s, "train", "loss", v) for s, v in result.train_curve]
    metrics += [(s, "test", "loss", v) for s, v in result.test_curve]
    for key, curve in result.metric_curves.items():  # a classification run's error rates
        split, name = key.split("/", 1)
        metrics += [(s, split, name, v) for s, v in curve]
    metrics += restart_rows(result.restarts)
    error = None if result.status == "done" else f"loss became non-finite at step {result.diverged_at}"
    return RunOutcome(
        id=run_id,
        status=result.status,
        error=error,
        started=started,
        finished=time.time(),
        wall_time_s=result.wall_time_s,
        steps_done=result.steps_done,
        final_train_loss=result.final_train_loss,
        final_test_loss=result.final_test_loss,
        metrics=metrics,
    )


def outcome_from_lm_result(run_id: str, result: "LMResult", started: float) -> RunOutcome:
    """An LM run's outcome: the validation split is stored as `test` (so scaling-law inputs read LM and
    regression sweeps alike); each evaluation's mean training loss since the previous one as `train`;
    the final perplexity and bits per byte as test metrics at the last step."""
    metrics = [(s, "train", "loss", v) for s, v in zip(result.eval_steps, result.train_curve) if math.isfinite(v)]
    metrics += [(s, "test", "loss", v) for s, v in zip(result.eval_steps, result.val_curve)]
    done = result.status == "done"
    if done:
        metrics += [(result.steps, "test", "perplexity", result.perplexity),
                    (result.steps, "test", "bits_per_byte", result.bits_per_byte)]
    metrics += restart_rows(result.restarts)
    finite_train = [v for v in result.train_curve if math.isfinite(v)]
    return RunOutcome(
        id=run_id,
        status=result.status,
        error=None if done else f"loss became non-finite at step {result.diverged_at}",
        started=started,
        finished=time.time(),
        wall_time_s=result.wall_time_s,
        steps_done=len(result.train_losses) if done else (result.diverged_at or 0),
        final_train_loss=finite_train[-1] if done and finite_train else None,
        final_test_loss=result.final_val_loss if done else None,
        metrics=metrics,
    )


def failed_outcome(run_id: str, error: BaseException | str, started: float) -> RunOutcome:
    message = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return RunOutcome(id=run_id, status="failed", error=" ".join(message.split()), started=started, finished=time.time())
