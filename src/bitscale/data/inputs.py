"""Input distributions for the synthetic regression tasks.

Two distributions over R^d are supported:

- ``"gaussian"``: x ~ N(0, I_d). Every coordinate has unit variance and
  ||x|| ~ sqrt(d).
- ``"sphere"``: x uniform on the unit sphere S^{d-1}, i.e. ||x|| = 1 (the
  setting of NTK theory papers such as Du et al., 2019), sampled as g / ||g||
  with g ~ N(0, I_d).

The target functions are defined on the *Gaussian scale*, where coordinates are
O(1). Sphere inputs are therefore multiplied by ``input_scale = sqrt(d)`` before
a target function sees them: sqrt(d) * x lies on the sphere of radius sqrt(d),
which is where N(0, I_d) concentrates, so a projection <u, sqrt(d) x> with a
unit vector u is O(1) under both distributions and for every d.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

INPUT_DISTS: tuple[str, ...] = ("gaussian", "sphere")

# Rows are drawn in blocks of this fixed size, so the first n rows of a stream
# never depend on n (torch's CPU randn fills small and large tensors differently).
_BLOCK_ROWS = 1024


def check_input_dist(input_dist: str) -> None:
    if input_dist not in INPUT_DISTS:
        raise ValueError(f"input_dist={input_dist!r} is unknown; allowed values: {', '.join(INPUT_DISTS)}")


def input_scale(input_dist: str, d: int) -> float:
    """Factor that brings inputs of ``input_dist`` to the Gaussian scale: 1 or sqrt(d)."""
    check_input_dist(input_dist)
    return 1.0 if input_dist == "gaussian" else math.sqrt(d)


def randn_rows(n: int, d: int, generator: torch.Generator, dtype: torch.dtype = torch.float64) -> Tensor:
    """n rows of i.i.d. N(0, 1) entries, shape (n, d); the rows for n are a prefix of those for any n' > n.

    The prefix property makes training sets nested: growing n_train with the same
    seed keeps the smaller set and appends new points.
    """
    n_blocks = max(1, math.ceil(n / _BLOCK_ROWS))
    blocks = [torch.randn(_BLOCK_ROWS, d, generator=generator, dtype=dtype) for _ in range(n_blocks)]
    return torch.cat(blocks)[:n]


def sample_inputs(
    n: int, d: int, input_dist: str, generator: torch.Generator, dtype: torch.dtype = torch.float64
) -> Tensor:
    """Draw n inputs of dimension d from ``input_dist``; returns a tensor of shape (n, d)."""
    check_input_dist(input_dist)
    x = randn_rows(n, d, generator, dtype)
    if input_dist == "sphere":
        x = x / x.norm(dim=1, keepdim=True)
    return x
