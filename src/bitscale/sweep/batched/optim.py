"""Per-member minibatches and optimizer steps on the stacked parameters.

- Minibatches: each member draws its epoch permutations from its own ``Generator().manual_seed(train.seed)``,
  as `RegressionTask.batches` does; full batch needs no sampling.
- Optimizer: SGD (momentum, L2 weight decay), Adam (L2) and AdamW (decoupled) re-implemented on the stacked
  tensors with a per-member learning rate, in the operation order of torch's single-tensor code paths.
  Schedules come from `lr_at` / `weight_decay_at` per member (precomputed tables); gradient clipping is
  `clip_grad_norm_` per member (global norm over that member's parameters).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...train.config import TrainConfig
from ...train.schedules import lr_at, weight_decay_at
from .quantizers import GRAIN_SIZE

_ADAM_EPS = 1e-8  # torch.optim.Adam / AdamW default, as `bitscale.train.loop` constructs them


class Sampler:
    """Per-member minibatch indices, drawn as `RegressionTask.batches` draws them: each epoch a fresh
    ``randperm(n_train, generator=g)`` from the member's own generator, cut into batches of batch_size."""

    def __init__(self, n: int, batch_size: int | None, seeds: list[int]) -> None:
        self.n, self.batch_size = n, batch_size
        self.full = batch_size is None or batch_size >= n
        self.pos = 0
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.perm = torch.zeros(len(seeds), n, dtype=torch.long)

    def next(self) -> Tensor | None:
        """Indices [k, b] of the next batch; None for full batch."""
        if self.full:
            return None
        if self.pos == 0:
            for j, g in enumerate(self.generators):
                self.perm[j] = torch.randperm(self.n, generator=g, device=g.device)
        idx = self.perm[:, self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        if self.pos >= self.n:
            self.pos = 0
        return idx


class Optimizer:
    """torch's SGD / Adam / AdamW (single-tensor code paths) on stacked parameters [k, ...].

    Per-member quantities (lr, Adam's step size, AdamW's decay factor) come as float32 rows [k], computed
    in float64 from the same Python expressions torch evaluates and rounded once, as torch rounds a Python
    scalar argument.
    """

    def __init__(self, cfg: TrainConfig, params: dict[str, Tensor], names: list[str]) -> None:
        self.optimizer, self.momentum = cfg.optimizer, cfg.momentum
        self.beta1, self.beta2 = cfg.betas
        self.names = names
        self.state: dict[str, Tensor] = {}  # SGD's momentum buffers appear at the first step, as in torch
        if self.optimizer in ("adam", "adamw"):
            for name in names:
                self.state[f"{name}.exp_avg"] = torch.zeros_like(params[name])
                self.state[f"{name}.exp_avg_sq"] = torch.zeros_like(params[name])

    @staticmethod
    def _view(row: Tensor, like: Tensor) -> Tensor:
        return row.view(row.shape[0], *([1] * (like.dim() - 1)))

    @torch.no_grad()
    def step(
        self,
        params: dict[str, Tensor],
        grads: dict[str, Tensor],
        rows: dict[str, Tensor],
        wd: float,
        extra: float,
    ) -> None:
        """One update. rows: 'neg_lr' (SGD), 'neg_step' and 'decay' (Adam/AdamW); extra: Adam's
        sqrt(1 - beta2^t)."""
        for name in self.names:
            p, g = params[name], grads[name]
            if self.optimizer == "sgd":
                if wd != 0:
                    g = g.add(p, alpha=wd)
                if self.momentum != 0:
                    key = f"{name}.momentum_buffer"
                    buf = self.state.get(key)
                    if buf is None:
                        buf = self.state[key] = g.detach().clone()
                    else:
                        buf.mul_(self.momentum).add_(g)
                    g = buf
                p.addcmul_(g, self._view(rows["neg_lr"], p))
                continue
            if wd != 0:
                if self.optimizer == "adamw":
                    p.mul_(self._view(rows["decay"], p))
                else:
                    g = g.add(p, alpha=wd)
            exp_avg, exp_avg_sq = self.state[f"{name}.exp_avg"], self.state[f"{name}.exp_avg_sq"]
            exp_avg.lerp_(g, 1 - self.beta1)
            exp_avg_sq.mul_(self.beta2).addcmul_(g, g, value=1 - self.beta2)
            denom = (exp_avg_sq.sqrt() / extra).add_(_ADAM_EPS)
            # p.addcdiv_(exp_avg, denom, value=-step_size) computes p + (value * exp_avg) / denom.
            update = exp_avg * self._view(rows["neg_step"], p)
            p.add_(update.div_(denom))

    def zero_members(self, idx: Tensor) -> None:
        for t in self.state.values():
            t[idx] = 0


def schedule_tables(configs: list[TrainConfig]) -> tuple[dict[str, Tensor], list[float], list[float]]:
    """Per-step rows of per-member optimizer scalars, weight decay per step, Adam's sqrt(1 - beta2^t)."""
    cfg0 = configs[0]
    steps = cfg0.steps
    by_lr: dict[float, list[float]] = {}
    for cfg in configs:
        if cfg.lr not in by_lr:
            by_lr[cfg.lr] = [lr_at(s, cfg) for s in range(steps)]
    lrs = torch.tensor([by_lr[cfg.lr] for cfg in configs], dtype=torch.float64).T.contiguous()  # [steps, k]
    wds = [weight_decay_at(s, cfg0) for s in range(steps)]
    tables: dict[str, Tensor] = {}
    extra = [1.0] * steps
    if cfg0.optimizer == "sgd":
        tables["neg_lr"] = (-lrs).float()
    else:
        beta1, beta2 = cfg0.betas
        bc1 = torch.tensor([1 - beta1 ** float(s + 1) for s in range(steps)], dtype=torch.float64)
        extra = [(1 - beta2 ** float(s + 1)) ** 0.5 for s in range(steps)]
        tables["neg_step"] = (-(lrs / bc1[:, None])).float()
        tables["decay"] = (1 - lrs * torch.tensor(wds, dtype=torch.float64)[:, None]).float()
    return tables, wds, extra


@torch.no_grad()
def clip_(grads: dict[str, Tensor], names: list[str], max_norm: float) -> None:
    """clip_grad_norm_ per member: the global L2 norm over each member's gradients."""
    k = grads[names[0]].shape[0]
    norms = []
    for n in names:
        g = grads[n]
        if g[0].numel() > GRAIN_SIZE:  # summed as the solo norm sums it (see quantizers.stacked_weight_value)
            norms.append(torch.stack([torch.linalg.vector_norm(g[j], 2) for j in range(k)]))
        else:
            norms.append(torch.linalg.vector_norm(g.reshape(k, -1), 2, dim=1))
    total = torch.linalg.vector_norm(torch.stack(norms, dim=1), 2, dim=1)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for n in names:
        g = grads[n]
        g.mul_(coef.view(k, *([1] * (g.dim() - 1))))
