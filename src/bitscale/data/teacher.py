"""Teacher-student target: a random wide two-layer ReLU network."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from bitscale.data.target import TargetFunction, check_positive


class TeacherNetwork(TargetFunction):
    """A random two-layer ReLU network of width m, the "teacher" a student must fit.

        f(x) = (1/sqrt(m)) * sum_{r=1}^{m} a_r * relu(<w_r, z> / sqrt(d))

    with w_r ~ N(0, I_d), a_r ~ N(0, 1), m = width. <w_r, z>/sqrt(d) is ~N(0, 1)
    for Gaussian and (rescaled) sphere inputs, so f is O(1) for any d and m.
    """

    name = "teacher"

    def __init__(self, d: int, seed: int = 0, input_dist: str = "gaussian", width: int = 256) -> None:
        super().__init__(d, seed, input_dist)
        check_positive(width=width)
        gen = self.generator()
        self.w = torch.randn(width, d, generator=gen, dtype=torch.float64)  # (m, d)
        self.a = torch.randn(width, generator=gen, dtype=torch.float64)  # (m,)

    @property
    def width(self) -> int:
        return self.a.numel()

    def forward(self, z: Tensor) -> Tensor:
        hidden = torch.relu(z @ self.w.to(z).T / math.sqrt(self.d))  # (n, m)
        return hidden @ self.a.to(z) / math.sqrt(self.width)
