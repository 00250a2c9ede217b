"""The interface shared by all target functions: a seeded, callable f: R^{n x d} -> R^n."""

from __future__ import annotations

import torch
from torch import Tensor

from bitscale.data.inputs import input_scale


class TargetFunction:
    """A deterministic function f(x) of inputs x of shape (n, d), returning shape (n,).

    Random coefficients are drawn once, in float64 on the CPU, from a
    ``torch.Generator`` seeded with ``seed``, so a function is fixed by
    (name, d, seed, kwargs) and does not depend on the dtype or device it is called with.

    Subclasses implement ``forward(z)`` on the Gaussian scale: ``__call__`` first
    maps x to z = input_scale * x (1 for "gaussian" inputs, sqrt(d) for "sphere"
    inputs, see ``bitscale.data.inputs``) so that outputs are O(1) for both.
    """

    name: str = "target"

    def __init__(self, d: int, seed: int = 0, input_dist: str = "gaussian") -> None:
        if d < 1:
            raise ValueError(f"d must be >= 1, got {d}")
        self.d = d
        self.seed = seed
        self.input_dist = input_dist
        self.input_scale = input_scale(input_dist, d)

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)

    def __call__(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.d:
            raise ValueError(f"x must have shape (n, {self.d}), got {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"x must be a floating point tensor, got {x.dtype}")
        return self.forward(x * self.input_scale)

    def forward(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = f"name={self.name!r}, d={self.d}, seed={self.seed}, input_dist={self.input_dist!r}"
        return f"{type(self).__name__}({args})"


def random_directions(k: int, d: int, generator: torch.Generator) -> Tensor:
    """k independent unit vectors uniform on S^{d-1}, shape (k, d), float64.

    For x ~ N(0, I_d) each projection <u, x> is exactly N(0, 1).
    """
    g = torch.randn(k, d, generator=generator, dtype=torch.float64)
    return g / g.norm(dim=1, keepdim=True)


def check_positive(**values: int) -> None:
    for arg, value in values.items():
        if value < 1:
            raise ValueError(f"{arg} must be >= 1, got {value}")
