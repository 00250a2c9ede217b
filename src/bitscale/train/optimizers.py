"""The optimizer a `TrainConfig` names, built once for both training loops.

SGD (with `momentum`), Adam or AdamW (with `betas`), at the schedule's step-0 learning rate and weight
decay (`bitscale.train.schedules`); the loops set both on every step. `params` is a list of parameters
or of parameter groups (dicts, as torch.optim takes them: the LM recipe passes a decayed and a
non-decayed group).
"""

from __future__ import annotations

from typing import Any, Iterable

import torch

from .config import TrainConfig
from .schedules import lr_at, weight_decay_at


def make_optimizer(params: Iterable[Any], cfg: TrainConfig) -> torch.optim.Optimizer:
    """torch.optim.SGD / Adam / AdamW for `params` with `cfg`'s settings (see the module docstring)."""
    lr, wd = lr_at(0, cfg), weight_decay_at(0, cfg)
    params = list(params)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=cfg.momentum, weight_decay=wd)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, betas=cfg.betas, weight_decay=wd)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=cfg.betas, weight_decay=wd)
    raise ValueError(f"optimizer: unknown {cfg.optimizer!r}; expected sgd, adam or adamw")
