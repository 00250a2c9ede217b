"""Hidden-unit nonlinearities shared by the models, by name."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "gelu": F.gelu,
    "tanh": torch.tanh,
    "identity": lambda x: x,
}


def get_activation(name: str) -> Callable[[Tensor], Tensor]:
    """The function named `name`; ValueError naming the allowed ones otherwise."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation: unknown {name!r}; expected one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]
