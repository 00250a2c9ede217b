"""Supervised tasks with fixed train/test splits: the shared minibatch stream, and regression on a seeded target function."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from bitscale.data.functions import function_names, make_function
from bitscale.data.inputs import check_input_dist, randn_rows, sample_inputs

# Size of the fixed sample whose clean targets set the standardization constants.
_REFERENCE_SIZE = 8192


@dataclass
class SupervisedTask:
    """Fixed train and test sets (x, y) with the minibatch stream the training loop draws from.

    Subclasses give the loss: `RegressionTask` (mean squared error) and
    `bitscale.data.classification.ClassificationTask` (cross-entropy).
    """

    name: str
    x_train: Tensor  # (n_train, d)
    y_train: Tensor  # (n_train,)
    x_test: Tensor  # (n_test, d)
    y_test: Tensor  # (n_test,)

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.x_train, self.y_train), ("test", self.x_test, self.y_test)):
            if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
                raise ValueError(
                    f"x_{split} must be (n, d) and y_{split} (n,), got {tuple(x.shape)} and {tuple(y.shape)}"
                )
        if self.x_train.shape[1] != self.x_test.shape[1]:
            d_train, d_test = self.x_train.shape[1], self.x_test.shape[1]
            raise ValueError(f"x_train and x_test have different d: {d_train} != {d_test}")

    @property
    def d(self) -> int:
        return self.x_train.shape[1]

    @property
    def n_train(self) -> int:
        """Number of training points: the data size D of scaling laws."""
        return self.x_train.shape[0]

    @property
    def n_test(self) -> int:
        return self.x_test.shape[0]

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def batches(self, batch_size: int | None, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        """Endless (x, y) training minibatches.

        Each epoch is a fresh permutation of the training set drawn from ``generator``
        and cut into batches of ``batch_size`` (the last one smaller when batch_size
        does not divide n_train), so every epoch visits every point exactly once.
        batch_size None or >= n_train yields the full training set every time.
        """
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")
        if batch_size is None or batch_size >= self.n_train:
            return self._full_batches()
        return self._shuffled_batches(batch_size, generator)

    def _full_batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        while True:
            yield self.x_train, self.y_train

    def _shuffled_batches(
        self, batch_size: int, generator: torch.Generator
    ) -> Iterator[tuple[Tensor, Tensor]]:
        while True:
            perm = torch.randperm(self.n_train, generator=generator, device=generator.device)
            perm = perm.to(self.x_train.device)
            for start in range(0, self.n_train, batch_size):
                idx = perm[start : start + batch_size]
                yield self.x_train[idx], self.y_train[idx]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None):
        """A copy with all tensors moved to ``device`` and the floating ones cast to ``dtype`` (class
        labels stay integers)."""
        if dtype is not None and not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating point dtype, got {dtype}")

        def move(t: Tensor) -> Tensor:
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None)

        return dataclasses.replace(
            self,
            x_train=move(self.x_train),
            y_train=move(self.y_train),
            x_test=move(self.x_test),
            y_test=move(self.y_test),
        )


@dataclass
class RegressionTask(SupervisedTask):
    """Train and test sets of a regression problem y = f(x) (+ noise on train only).

    ``y_shift`` and ``y_scale`` record the standardization: y = (f(x) - y_shift) / y_scale
    (0 and 1 when targets are not standardized).
    """

    noise_std: float = 0.0
    y_shift: float = 0.0
    y_scale: float = 1.0

    def loss(self, pred: Tensor, target: Tensor) -> Tensor:
        """Mean squared error, mean((pred - target)^2), as a scalar; pred may be (n,) or (n, 1)."""
        pred = pred.reshape(-1)
        if pred.shape != target.shape:
            raise ValueError(f"pred has {pred.numel()} values but target has shape {tuple(target.shape)}")
        return (pred - target).square().mean()


def make_task(
    function: str = "sines",
    d: int = 16,
    n_train: int = 256,
    n_test: int = 1024,
    noise_std: float = 0.0,
    input_dist: str = "gaussian",
    seed: int = 0,
    standardize: bool = True,
    dtype: torch.dtype = torch.float32,
    **function_kwargs: Any,
) -> RegressionTask:
    """Build a regression task y = f(x), f = make_function(function, d, seed, input_dist, **function_kwargs).

    Inputs are drawn from ``input_dist`` ("gaussian": N(0, I_d); "sphere": uniform
    on S^{d-1}). Train inputs, train noise, test inputs and the standardization
    sample each come from their own generator derived from ``seed``, so:
    the same arguments always give the same tensors; the test set does not depend
    on n_train; and training sets are nested (n_train = 100 gives the first 100
    points of n_train = 1000).

    ``standardize=True`` maps targets to y = (f(x) - mu) / sigma, with mu and sigma
    the mean and std of f over a fixed reference sample of 8192 inputs (independent
    of n_train, so test targets stay identical as n_train grows). The clean targets
    then have mean ~0 and std ~1, and predicting the mean scores a test loss ~1.

    Label noise N(0, noise_std^2) is added, after standardization, to the training
    targets only; test targets are clean, so the test loss measures the distance
    to f and its floor is 0, not noise_std^2.

    All data are computed in float64 and cast to ``dtype`` at the end.
    """
    if function not in function_names():
        raise ValueError(f"function={function!r} is unknown; allowed values: {', '.join(function_names())}")
    check_input_dist(input_dist)
    if function == "radial" and input_dist == "sphere":
        raise ValueError("function='radial' is constant on the sphere; use input_dist='gaussian'")
    for arg, value in (("d", d), ("n_train", n_train), ("n_test", n_test)):
        if value < 1:
            raise ValueError(f"{arg} must be >= 1, got {value}")
    if noise_std < 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating point dtype, got {dtype}")

    f = make_function(function, d, seed, input_dist, **function_kwargs)
    x_train = sample_inputs(n_train, d, input_dist, _stream(seed, "train_inputs"))
    x_test = sample_inputs(n_test, d, input_dist, _stream(seed, "test_inputs"))
    y_train, y_test = f(x_train), f(x_test)

    shift, scale = 0.0, 1.0
    if standardize:
        y_ref = f(sample_inputs(_REFERENCE_SIZE, d, input_dist, _stream(seed, "reference_inputs")))
        shift, scale = y_ref.mean().item(), y_ref.std().item()
        if scale < 1e-12:
            raise ValueError(
                f"function={function!r} is constant for input_dist={input_dist!r}; cannot standardize"
            )
        y_train, y_test = (y_train - shift) / scale, (y_test - shift) / scale

    if noise_std > 0:
        noise = randn_rows(n_train, 1, _stream(seed, "train_noise")).reshape(-1)
        y_train = y_train + noise_std * noise

    name = f"{function}-d{d}" + ("-sphere" if input_dist == "sphere" else "")
    task = RegressionTask(name, x_train, y_train, x_test, y_test, float(noise_std), shift, scale)
    return task.to(dtype=dtype)


def _stream(seed: int, stream: str) -> torch.Generator:
    """An independent CPU generator for one named random stream of a task seed."""
    digest = hashlib.sha256(f"bitscale.data/{seed}/{stream}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
