"""Diverged means diverged: the first non-finite parameter, buffer or optimizer state of a model.

A finite loss does not prove a finite model. The sign quantizers compute where(w > 0, 1, -1), which
sends a NaN latent weight to -1, so a paper-1bit run at lr = inf kept a finite loss while every hidden
weight was NaN. The training loops therefore call `first_nonfinite` at every evaluation
and at the end, and stop the run as `diverged` when it names something.
"""

from __future__ import annotations

import torch
from torch import nn


def _bad(t: torch.Tensor) -> bool:
    return t.is_floating_point() and t.numel() > 0 and not bool(torch.isfinite(t).all())


def first_nonfinite(model: nn.Module, optimizer: "torch.optim.Optimizer | None" = None) -> str | None:
    """What first holds a NaN or an infinity: "parameter 'w'", "buffer 'b'" or "optimizer state
    'exp_avg' of 'w'"; None when the model and the optimizer's state are all finite."""
    names = {}
    for name, p in model.named_parameters():
        names.setdefault(id(p), name)
        if _bad(p.detach()):
            return f"parameter {name!r}"
    for name, b in model.named_buffers():
        if _bad(b):
            return f"buffer {name!r}"
    if optimizer is not None:
        for p, state in optimizer.state.items():
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and _bad(value):
                    return f"optimizer state {key!r} of {names.get(id(p), 'a parameter')!r}"
    return None
