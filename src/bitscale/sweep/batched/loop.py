"""The training loop of one batched group, its checkpoints, and `train_batched`.

Divergence: a member whose minibatch loss (before update ``s``) or evaluation loss (after ``s`` updates) is
not finite, or whose parameters or optimizer state are not (checked at each evaluation), is marked
diverged at that step, as in the solo loop. It is then frozen: its parameters and
optimizer state are zeroed and its learning rate set to 0, so it stays finite and never touches the others.

Checkpoints (``checkpoint_path``): every ``checkpoint_every`` steps the whole stacked state (parameters,
optimizer state, each member's batch-generator state and permutation, the step, the curves so far and each
member's status) is written to one verified tensor file (`bitscale.tensorfile`: a sha256 per tensor), atomically.
A call that finds the file resumes from it and gives the same results as an uninterrupted call; the file is
deleted when the group finishes. A checkpoint that fails verification, belongs to another group, or restores
a live member with a non-finite loss is discarded with a warning, and the group starts from scratch (each
result's ``restarts`` counts it). Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ...quant import resolve_config
from ...tensorfile import load_tensors, save_tensors
from ...train.loop import RunResult
from ...train.run import RunConfig
from .ensemble import Ensemble
from .grouping import BATCHABLE_FIELDS, can_batch, group_key
from .optim import Optimizer, Sampler, clip_, schedule_tables
from .quantizers import act_key, weight_key

_CHECKPOINT_VERSION = 1


def _fingerprint(configs: list[RunConfig]) -> str:
    text = json.dumps([c.model_dump(mode="json") for c in configs], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _save_checkpoint(path: Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    save_tensors(path, tensors, {"bitscale": json.dumps(meta)}, fsync=True)


def _load_checkpoint(path: Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The verified tensors and the metadata of a checkpoint (DamagedFileError on a damaged file)."""
    tensors, metadata = load_tensors(path)
    if "bitscale" not in metadata:
        raise ValueError(f"{path}: not a batched checkpoint (no 'bitscale' metadata)")
    return tensors, json.loads(metadata["bitscale"])


class _Group:
    """One batched group in flight: the ensemble, its optimizer, schedules, sampler and per-member records.

    Members are in internal order (sorted by quantizer, so that each quantizer acts on one slice).
    """

    def __init__(self, members: list[RunConfig]) -> None:
        self.members, self.k = members, len(members)
        self.cfg = members[0].train
        self.ens = Ensemble(members)
        self.opt = Optimizer(self.cfg, self.ens.params, self.ens.trainable)
        self.tables, self.wds, self.extra = schedule_tables([c.train for c in members])
        self.sampler = Sampler(self.ens.x_train.shape[1], self.cfg.batch_size, [c.train.seed for c in members])
        self.status = ["done"] * self.k
        self.diverged_at: list[int | None] = [None] * self.k
        self.train_curves: list[list[tuple[int, float]]] = [[] for _ in range(self.k)]
        self.test_curves: list[list[tuple[int, float]]] = [[] for _ in range(self.k)]
        self.alive = [True] * self.k
        self.fingerprint = _fingerprint(members)

    def diverge(self, members: list[int], step: int, freeze_from: int) -> None:
        """Mark `members` diverged at `step`; zero their parameters and optimizer state, and their lr from
        update `freeze_from` on, so that they stay finite and idle."""
        for j in members:
            self.status[j], self.diverged_at[j], self.alive[j] = "diverged", step, False
        self.freeze(members, freeze_from)

    def freeze(self, members: list[int], from_step: int) -> None:
        idx = torch.tensor(members, dtype=torch.long)
        self.ens.zero_members(idx)
        self.opt.zero_members(idx)
        for name, table in self.tables.items():
            table[from_step:, idx] = 1.0 if name == "decay" else 0.0

    def nonfinite_members(self) -> list[bool]:
        """Per member: whether a parameter or an optimizer state holds a NaN or an infinity (what the
        solo loop's `bitscale.train.finite.first_nonfinite` checks at each evaluation)."""
        finite = torch.ones(self.k, dtype=torch.bool)
        for t in (*self.ens.params.values(), *self.opt.state.values()):
            finite &= torch.isfinite(t.detach().reshape(self.k, -1)).all(1)
        return (~finite).tolist()

    def evaluate(self, step: int) -> None:
        """Record the curves of the live members at `step`; a non-finite loss, parameter or optimizer
        state is divergence at `step`."""
        train, test = self.ens.evaluate()
        nonfinite = self.nonfinite_members()
        bad = []
        for j in range(self.k):
            if not self.alive[j]:
                continue
            if math.isfinite(train[j]) and math.isfinite(test[j]) and not nonfinite[j]:
                self.train_curves[j].append((step, train[j]))
                self.test_curves[j].append((step, test[j]))
            else:
                bad.append(j)
        if bad:
            self.diverge(bad, step, step)

    def update(self, step: int) -> None:
        """Update `step` (0-based) of every member; a non-finite minibatch loss is divergence at `step`
        (the member's update is then discarded, as the solo loop stops before it)."""
        losses = self.ens.losses_and_grads(self.sampler.next())
        bad = []
        if not math.isfinite(losses.sum().item()):  # one sync per step; members only when something is off
            finite = torch.isfinite(losses).tolist()
            bad = [j for j in range(self.k) if self.alive[j] and not finite[j]]
        if self.cfg.grad_clip is not None:
            clip_(self.ens.grads, self.ens.trainable, self.cfg.grad_clip)
        rows = {name: table[step] for name, table in self.tables.items()}
        self.opt.step(self.ens.params, self.ens.grads, rows, self.wds[step], self.extra[step])
        if bad:
            self.diverge(bad, step, step + 1)

    # -- checkpoints ------------------------------------------------------------------------------------

    def save(self, path: Path, step: int, elapsed: float) -> None:
        tensors = {f"param.{n}": p for n, p in self.ens.params.items()}
        tensors.update({f"opt.{n}": t for n, t in self.opt.state.items()})
        if not self.sampler.full:
            tensors["sampler.perm"] = self.sampler.perm
            for j, g in enumerate(self.sampler.generators):
                tensors[f"sampler.generator.{j}"] = g.get_state()
        meta = {
            "version": _CHECKPOINT_VERSION,
            "fingerprint": self.fingerprint,
            "step": step,
            "sampler_pos": self.sampler.pos,
            "elapsed_s": elapsed,
            "members": [
                {
                    "status": self.status[j],
                    "diverged_at": self.diverged_at[j],
                    "train_curve": [[s, v] for s, v in self.train_curves[j]],
                    "test_curve": [[s, v] for s, v in self.test_curves[j]],
                }
                for j in range(self.k)
            ],
        }
        _save_checkpoint(path, tensors, meta)

    def restore(self, path: Path) -> tuple[int, float] | None:
        """Load the checkpoint at `path`: (step, elapsed seconds), or None (with a warning) if it is
        unreadable, belongs to another group or restores a live member with a non-finite loss; the group
        may then have been changed and must be rebuilt."""
        try:
            tensors, meta = _load_checkpoint(path)
        except Exception as err:  # a damaged file: start over rather than fail the group
            reason = " ".join(str(err).removeprefix(f"{path}: ").split())
            warnings.warn(f"{path}: unreadable checkpoint ({reason}); checkpoint discarded, starting from scratch",
                          stacklevel=3)
            return None
        if meta.get("version") != _CHECKPOINT_VERSION or meta.get("fingerprint") != self.fingerprint:
            warnings.warn(f"{path}: checkpoint of another group; starting from scratch", stacklevel=3)
            return None
        with torch.no_grad():
            for name, p in self.ens.params.items():
                p.copy_(tensors[f"param.{name}"])
        self.opt.state = {n[len("opt.") :]: t.clone() for n, t in tensors.items() if n.startswith("opt.")}
        if not self.sampler.full:
            self.sampler.perm.copy_(tensors["sampler.perm"])
            self.sampler.pos = meta["sampler_pos"]
            for j, g in enumerate(self.sampler.generators):
                g.set_state(tensors[f"sampler.generator.{j}"])
        step = meta["step"]
        for j, member in enumerate(meta["members"]):
            self.status[j], self.diverged_at[j] = member["status"], member["diverged_at"]
            self.alive[j] = self.status[j] == "done"
            self.train_curves[j] = [(int(s), float(v)) for s, v in member["train_curve"]]
            self.test_curves[j] = [(int(s), float(v)) for s, v in member["test_curve"]]
        dead = [j for j in range(self.k) if not self.alive[j]]
        if dead:
            self.freeze(dead, step)
        train, test = self.ens.evaluate()
        bad = [j for j in range(self.k) if self.alive[j] and not (math.isfinite(train[j]) and math.isfinite(test[j]))]
        if bad:
            warnings.warn(f"{path}: member {bad[0]}'s restored loss is not finite; checkpoint discarded, starting "
                          "from scratch", stacklevel=3)
            return None
        return step, float(meta["elapsed_s"])

    def result(self, j: int, wall_time_s: float) -> RunResult:
        done = self.status[j] == "done"
        result = RunResult(
            status=self.status[j],
            steps_done=self.cfg.steps if done else self.diverged_at[j],  # type: ignore[arg-type]
            diverged_at=self.diverged_at[j],
            train_curve=self.train_curves[j],
            test_curve=self.test_curves[j],
            wall_time_s=wall_time_s,
            n_params=self.ens.n_params[j],
        )
        if done:
            result.final_train_loss = self.train_curves[j][-1][1]
            result.final_test_loss = self.test_curves[j][-1][1]
        return result


def train_batched(
    configs: list[RunConfig],
    *,
    checkpoint_path: str | Path | None = None,
    checkpoint_every: int | None = None,
    callback: Callable[[int], None] | None = None,
) -> list[RunResult]:
    """Train every config of one group (equal `group_key`) as one stacked ensemble.

    Returns one `RunResult` per config, in order, equal to ``bitscale.train.run(config)``'s up to float
    rounding (bit for bit in practice); ``wall_time_s`` is the group's wall time divided by the number of runs.

    With ``checkpoint_path``, the group's state is saved there every ``checkpoint_every`` updates (default: the
    group's ``eval_every``); a call that finds the file resumes from it, and the file is deleted when the
    group finishes. ``callback(step)`` is called after each update, with ``step`` the number of updates done
    (after that step's evaluation and checkpoint).
    """
    if not configs:
        return []
    keys = {group_key(c) for c in configs}
    if None in keys:
        reasons = sorted({can_batch(c) or "" for c in configs} - {""})
        raise ValueError(f"train_batched: some configs cannot be batched ({'; '.join(reasons)})")
    if len(keys) != 1:
        fields = ", ".join(f"{s}.{f}" for s, fs in BATCHABLE_FIELDS.items() for f in fs)
        raise ValueError(f"train_batched: configs differ in more than the batchable fields ({fields})")
    every = checkpoint_every if checkpoint_every is not None else configs[0].train.eval_every
    if every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {every}")
    path = Path(checkpoint_path) if checkpoint_path is not None else None

    t0 = time.perf_counter()
    quants = [resolve_config(c.model.quant) for c in configs]
    order = sorted(range(len(configs)), key=lambda i: (weight_key(quants[i]), act_key(quants[i])))  # stable
    group = _Group([configs[i] for i in order])
    steps, eval_every = group.cfg.steps, group.cfg.eval_every

    start, elapsed_before = 0, 0.0
    restored = group.restore(path) if path is not None and path.exists() else None
    restarts = int(restored is None and path is not None and path.exists())
    if restarts:
        group = _Group([configs[i] for i in order])  # a discarded restore may have changed it
    if restored is not None:
        start, elapsed_before = restored
    else:
        group.evaluate(0)
    for step in range(start, steps):
        if not any(group.alive):
            break
        group.update(step)
        done = step + 1
        if done % eval_every == 0 or done == steps:
            group.evaluate(done)
        if path is not None and done % every == 0 and done < steps:
            group.save(path, done, elapsed_before + time.perf_counter() - t0)
        if callback is not None:
            callback(done)

    wall = (elapsed_before + time.perf_counter() - t0) / len(configs)
    results: list[RunResult] = [None] * len(configs)  # type: ignore[list-item]
    for j, i in enumerate(order):
        results[i] = group.result(j, wall)
        results[i].restarts = restarts
    if path is not None:
        path.unlink(missing_ok=True)
        for stale in path.parent.glob(f".{path.name}.*"):  # atomic_write temp files left by a kill
            stale.unlink(missing_ok=True)
    return results
