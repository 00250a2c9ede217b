"""The training loop: minimize ``task.loss(model(x), y)`` with a torch optimizer.

One run = ``cfg.steps`` optimizer updates. At update ``s`` (0-based) the loop sets
``lr = lr_at(s, cfg)`` and ``weight_decay = weight_decay_at(s, cfg)`` on every param group,
draws a batch, and takes one step

    theta <- OptimizerStep(theta, clip(grad L_batch(theta)), lr, weight_decay)

where ``clip`` rescales the gradient to global L2 norm ``cfg.grad_clip`` if it is larger.

Curves are indexed by the number of updates applied so far: the entry at step ``k`` is
the loss of the model after ``k`` updates (``k = 0`` is the initialization, ``k = steps``
the final model). A non-finite loss (minibatch or evaluation) ends the run as "diverged"
at the step it was observed; the loop never raises on divergence.

The task is duck-typed (see `bitscale.data.task.SupervisedTask`): it needs ``x_train``,
``y_train``, ``x_test``, ``y_test``, ``loss(pred, target)`` and
``batches(batch_size, generator)``. A task with ``metrics(pred, target) -> {name: value}`` (a
classification task's error rate) has those recorded at every evaluation too, on both splits, as
``metric_curves["train/<name>"]`` and ``["test/<name>"]``.

Resume: with ``checkpoint=PATH`` the loop writes its whole state (weights, optimizer state, RNG
states, step, curves; see `bitscale.train.state`) to PATH every ``checkpoint_every`` updates, and
if PATH already exists when it starts, it continues from there. The minibatch stream is replayed
from the seed up to the saved step and checked against the saved generator state, so a resumed
run takes exactly the updates an uninterrupted run takes and ends at the same loss. A checkpoint that
fails verification or restores a model with a non-finite loss is discarded (with a warning) and the
run starts from scratch, counted in ``RunResult.restarts``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bitscale.train.config import TrainConfig
from bitscale.train.finite import first_nonfinite
from bitscale.train.optimizers import make_optimizer
from bitscale.train.schedules import lr_at, weight_decay_at
from bitscale.train.state import resume_training_state, save_training_state


@dataclass
class RunResult:
    """Outcome of one `train` call. Losses of a diverged run are ``nan``."""

    status: str  # "done" | "diverged"
    steps_done: int  # updates applied
    diverged_at: int | None  # step at which a loss became NaN/inf
    train_curve: list[tuple[int, float]] = field(default_factory=list)  # (step, full train-set loss)
    test_curve: list[tuple[int, float]] = field(default_factory=list)  # (step, test-set loss)
    final_train_loss: float = math.nan
    final_test_loss: float = math.nan
    wall_time_s: float = 0.0
    n_params: int = 0  # trainable parameters
    restarts: int = 0  # checkpoints discarded (damaged, or a non-finite loss): the run restarted from scratch
    # "split/name" -> [(step, value)]: the task's own metrics at every evaluation (empty without any)
    metric_curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for `json.dumps`; curves become lists of ``[step, loss]`` pairs.

        A diverged run's losses stay ``float('nan')``, which Python's json writes as ``NaN``.
        """
        d = asdict(self)
        d["train_curve"] = [[s, v] for s, v in self.train_curve]
        d["test_curve"] = [[s, v] for s, v in self.test_curve]
        d["metric_curves"] = {k: [[s, v] for s, v in c] for k, c in self.metric_curves.items()}
        return d


@torch.no_grad()
def _evaluate(model: nn.Module, task: Any, device: torch.device, extras: dict | None = None) -> tuple[float, float]:
    """Loss on the full train and test sets, in eval mode; the task's `metrics` go into `extras`
    ("split/name" -> value) when it has them and `extras` is given."""
    was_training = model.training
    model.eval()
    losses = []
    try:
        for split, x, y in (("train", task.x_train, task.y_train), ("test", task.x_test, task.y_test)):
            pred, target = model(x.to(device)), y.to(device)
            losses.append(task.loss(pred, target).item())
            if extras is not None and hasattr(task, "metrics"):
                extras.update({f"{split}/{k}": v for k, v in task.metrics(pred, target).items()})
    finally:
        model.train(was_training)
    return losses[0], losses[1]


def train(
    model: nn.Module,
    task: Any,
    cfg: TrainConfig,
    *,
    callback: Callable[[int, float], None] | None = None,
    checkpoint: "str | Path | None" = None,
    checkpoint_every: int | None = None,
) -> RunResult:
    """Train ``model`` in place on ``task`` for ``cfg.steps`` updates and report the curves.

    Minibatches come from ``task.batches(cfg.batch_size, g)`` with a private generator
    ``g`` seeded by ``cfg.seed``, so the batch sequence does not depend on global RNG state
    (model initialization is the caller's business). Only parameters with
    ``requires_grad`` are optimized and counted. ``callback(step, train_loss)`` is called
    after every finite evaluation (step 0, every ``cfg.eval_every`` steps, and the end).

    ``checkpoint``: path of the training-state file to resume from if it exists and to write every
    ``checkpoint_every`` updates (default ``cfg.eval_every``). The file is left in place at the end;
    deleting it once the result is stored is the caller's business.
    """
    if checkpoint_every is not None and checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    t0 = time.perf_counter()
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    device = params[0].device
    optimizer = make_optimizer(params, cfg)
    generator = torch.Generator().manual_seed(cfg.seed)
    batches = task.batches(cfg.batch_size, generator)
    result = RunResult(
        status="done",
        steps_done=0,
        diverged_at=None,
        n_params=sum(p.numel() for p in params),
    )

    def diverge(step: int) -> RunResult:
        """A non-finite loss, parameter or optimizer state at `step`: the run stops as diverged."""
        result.status, result.diverged_at, result.steps_done = "diverged", step, step
        result.final_train_loss = result.final_test_loss = math.nan
        result.wall_time_s = elapsed_before + time.perf_counter() - t0
        return result

    def save(step: int) -> None:
        extra = {
            "train_curve": result.train_curve,
            "test_curve": result.test_curve,
            "metric_curves": result.metric_curves,
            "wall_time_s": elapsed_before + time.perf_counter() - t0,
        }
        save_training_state(checkpoint, model, optimizer, generator, step, extra)

    def evaluate(step: int) -> bool:
        """Record the curves at ``step``; False if a loss, a parameter or an optimizer state is not finite."""
        extras: dict[str, float] = {}
        train_loss, test_loss = _evaluate(model, task, device, extras)
        if not (math.isfinite(train_loss) and math.isfinite(test_loss)):
            return False
        if first_nonfinite(model, optimizer) is not None:
            return False
        result.train_curve.append((step, train_loss))
        result.test_curve.append((step, test_loss))
        for key, value in extras.items():
            result.metric_curves.setdefault(key, []).append((step, value))
        result.final_train_loss, result.final_test_loss = train_loss, test_loss
        if callback is not None:
            callback(step, train_loss)
        return True

    model.train()
    start, elapsed_before = 0, 0.0
    resumed = None
    if checkpoint is not None and Path(checkpoint).exists():
        resumed = resume_training_state(checkpoint, model, optimizer, lambda: sum(_evaluate(model, task, device)))
        result.restarts += resumed is None
    if resumed is not None:
        start, batch_state, extra = resumed
        result.train_curve = [(int(s), float(v)) for s, v in extra["train_curve"]]
        result.test_curve = [(int(s), float(v)) for s, v in extra["test_curve"]]
        result.metric_curves = {str(k): [(int(s), float(v)) for s, v in c] for k, c in extra.get("metric_curves", {}).items()}
        if result.train_curve:
            result.final_train_loss, result.final_test_loss = result.train_curve[-1][1], result.test_curve[-1][1]
        elapsed_before = float(extra["wall_time_s"])
        for _ in range(start):  # replay the minibatch stream: permutations are cheap to redraw
            next(batches)
        if not torch.equal(generator.get_state(), batch_state):
            raise RuntimeError(f"{checkpoint}: minibatch stream does not match the checkpoint (different task or seed?)")
    elif not evaluate(0):
        return diverge(0)
    every = checkpoint_every or cfg.eval_every
    for step in range(start, cfg.steps):
        lr, wd = lr_at(step, cfg), weight_decay_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"], group["weight_decay"] = lr, wd

        x, y = next(batches)
        loss = task.loss(model(x.to(device)), y.to(device))
        if not math.isfinite(loss.item()):
            return diverge(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip is not None:
            nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()

        done = step + 1
        if done % cfg.eval_every == 0 or done == cfg.steps:
            if not evaluate(done):
                return diverge(done)
        if checkpoint is not None and done % every == 0 and done < cfg.steps:
            save(done)

    result.steps_done = cfg.steps
    result.wall_time_s = elapsed_before + time.perf_counter() - t0
    return result
