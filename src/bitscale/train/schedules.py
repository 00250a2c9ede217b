"""Learning-rate and weight-decay schedules, as pure functions of the step.

Notation: ``s`` is the 0-based index of the update about to be applied (``0 <= s < T``),
``T = cfg.steps``, ``W = cfg.warmup_steps``, ``eta = cfg.lr``, ``m = cfg.min_lr_ratio``,
``r = cfg.stage2_lr_ratio``. Every schedule starts with a linear warmup from 0

    lr(s) = eta * (s + 1) / W                       for s < W

after which the decay progress is ``t = (s - W) / (T - W)`` in ``[0, 1)`` (``t = 1`` would be
the state after the last update, so the floor is approached but the final update uses
``t = (T - 1 - W) / (T - W)``):

    constant:   lr(s) = eta
    cosine:     lr(s) = eta * (m + (1 - m) * (1 + cos(pi * t)) / 2)
    linear:     lr(s) = eta * (1 - (1 - m) * t)
    two-stage:  lr(s) = eta * (1 - (1 - m) * t)          for s <  T // 2   (stage 1)
                lr(s) = eta * (1 - (1 - m) * t) * r      for s >= T // 2   (stage 2)

``two-stage`` is the BitNet b1.58 recipe (Ma et al. 2024, "The Era of 1-bit LLMs: All Large
Language Models are in 1.58 Bits", and Microsoft's "training tips" FAQ): one linear decay
over the whole run, with a sudden cut by ``r`` half-way through; weight decay is on in
stage 1 and switched off (``cfg.stage2_weight_decay``, default 0) in stage 2. The intuition:
large early updates let the latent full-precision weights cross quantization thresholds,
then the cut and the absence of decay let them settle. Every other schedule uses
``cfg.weight_decay`` throughout.
"""

from __future__ import annotations

import math

from bitscale.train.config import TrainConfig


def _decay_progress(step: int, cfg: TrainConfig) -> float:
    """t = (s - W) / (T - W), clamped to [0, 1]."""
    t = (step - cfg.warmup_steps) / (cfg.steps - cfg.warmup_steps)
    return min(max(t, 0.0), 1.0)


def _stage2_start(cfg: TrainConfig) -> int:
    return cfg.steps // 2


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate for update ``step`` (0-based); see the module docstring for formulas."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    t = _decay_progress(step, cfg)
    m = cfg.min_lr_ratio
    if cfg.schedule == "cosine":
        return cfg.lr * (m + (1.0 - m) * 0.5 * (1.0 + math.cos(math.pi * t)))
    linear = cfg.lr * (1.0 - (1.0 - m) * t)
    if cfg.schedule == "linear":
        return linear
    if cfg.schedule == "two-stage":
        return linear * (cfg.stage2_lr_ratio if step >= _stage2_start(cfg) else 1.0)
    raise ValueError(f"unknown schedule {cfg.schedule!r}")


def weight_decay_at(step: int, cfg: TrainConfig) -> float:
    """Weight decay for update ``step``: ``cfg.stage2_weight_decay`` in two-stage stage 2
    (``step >= T // 2``), else ``cfg.weight_decay``."""
    if cfg.schedule == "two-stage" and step >= _stage2_start(cfg):
        return cfg.stage2_weight_decay
    return cfg.weight_decay
