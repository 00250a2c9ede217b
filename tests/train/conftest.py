"""A tiny stand-in for `bitscale.data.RegressionTask`: noisy linear regression y = x @ w + eps."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor


@dataclass
class LinearTask:
    name: str
    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    noise_std: float

    @property
    def d(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_train(self) -> int:
        return self.x_train.shape[0]

    @property
    def n_test(self) -> int:
        return self.x_test.shape[0]

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        return torch.mean((pred.reshape(-1) - target) ** 2)

    def batches(self, batch_size: int | None, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        if batch_size is None or batch_size >= self.n_train:
            while True:
                yield self.x_train, self.y_train
        while True:
            perm = torch.randperm(self.n_train, generator=generator)
            for i in range(0, self.n_train - batch_size + 1, batch_size):
                idx = perm[i : i + batch_size]
                yield self.x_train[idx], self.y_train[idx]


def make_linear_task(n_train: int = 64, n_test: int = 64, d: int = 8, noise_std: float = 0.0, seed: int = 0) -> LinearTask:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=g)
    x_train, x_test = torch.randn(n_train, d, generator=g), torch.randn(n_test, d, generator=g)
    y_train = x_train @ w + noise_std * torch.randn(n_train, generator=g)
    y_test = x_test @ w + noise_std * torch.randn(n_test, generator=g)
    return LinearTask("linear", x_train, y_train, x_test, y_test, noise_std)


@pytest.fixture
def task() -> LinearTask:
    return make_linear_task()


@pytest.fixture
def make_task():
    """Factory fixture: ``make_task(n_train=..., d=..., noise_std=..., seed=...)``."""
    return make_linear_task
