"""MNIST-1D (Greydanus 2020, "Scaling down deep learning", arXiv 2011.14439): ten 1-D digit templates,
each padded, dilated, scaled, translated, given correlated and i.i.d. noise and sheared, then
resampled to 40 points. A small vision-style benchmark on which MLPs and CNNs differ clearly (the
paper: about 68% test accuracy for an MLP, 94% for a CNN), generated from code in seconds.

The examples come from the `mnist1d` package's own generator (`mnist1d.data.make_dataset`, Apache-2.0),
called with the options below; nothing is downloaded and its cached pickles are never read. The
package draws from NumPy's and Python's global random state; that state is saved and restored around
the call, so generating a dataset does not disturb the caller's random numbers.

The split is fixed by `seed`: one pool of `pool` examples is generated (the default, 5000 at seed 42,
is the standard MNIST-1D set), the test set is its last `n_test` examples and the training set its first
`n_train`, so training sets are nested as n_train grows and the test set does not depend on n_train.

Label noise, on the training set only: example i takes another label, uniformly among the other nine,
when u_i < label_noise, with u drawn once per pool position from a stream of the seed: the noisy
examples at noise 0.1 are among those at 0.2, and the labels of a given example do not depend on n_train.
"""

from __future__ import annotations

import hashlib
import random
from functools import lru_cache

import numpy as np
import torch
from pydantic import BaseModel, Field, model_validator

from bitscale.data.classification import ClassificationTask
from bitscale.limits import MAX_SEED, STRICT

N_CLASSES = 10
STANDARD_LENGTH = 40  # points per example of the standard set
_PADDED = 72  # template (12) + the largest padding (60): the length a translation acts on


class MNIST1DConfig(BaseModel):
    """The options of an MNIST-1D task (defaults: the standard set's generator arguments)."""

    model_config = STRICT

    dataset: str = Field("mnist1d", pattern="^mnist1d$", description="the dataset (MNIST-1D only)")
    n_train: int = Field(4000, ge=1, le=100_000)
    n_test: int = Field(1000, ge=1, le=100_000)
    pool: int = Field(5000, ge=10, le=200_000, description="examples generated; the splits are cut from it")
    seed: int = Field(42, ge=0, le=2**32 - 1, description="the generator's seed (NumPy seeds are 32-bit)")
    label_noise: float = Field(0.0, ge=0.0, le=1.0, description="fraction of training labels replaced")
    length: int = Field(STANDARD_LENGTH, ge=8, le=4096, description="points per example (final_seq_length)")
    scale_coeff: float = Field(0.4, ge=0.0, lt=2.0)
    max_translation: int = Field(48, ge=1, le=_PADDED)
    corr_noise_scale: float = Field(0.25, ge=0.0, le=100.0)
    iid_noise_scale: float = Field(2e-2, ge=0.0, le=100.0)
    shear_scale: float = Field(0.75, ge=0.0, le=100.0)
    shuffle_seq: bool = Field(False, description="permute the positions (the paper's spatial-prior test)")

    @model_validator(mode="after")
    def _splits_fit_the_pool(self) -> "MNIST1DConfig":
        if self.n_train + self.n_test > self.pool:
            raise ValueError(f"n_train + n_test = {self.n_train + self.n_test} exceeds pool = {self.pool}; "
                             "raise pool or shrink the splits")
        return self


def _stream(seed: int, name: str) -> np.random.Generator:
    digest = hashlib.sha256(f"bitscale.mnist1d/{seed}/{name}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


@lru_cache(maxsize=8)
def _generate(seed: int, pool: int, length: int, scale_coeff: float, max_translation: int, corr_noise: float,
              iid_noise: float, shear: float, shuffle_seq: bool) -> tuple[np.ndarray, np.ndarray]:
    """(x (pool, length) float32, y (pool,) int64) from mnist1d's generator, global RNG state restored."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    for name, value in (("num_samples", pool), ("train_split", 1.0), ("final_seq_length", length),
                        ("scale_coeff", scale_coeff), ("max_translation", max_translation),
                        ("corr_noise_scale", corr_noise), ("iid_noise_scale", iid_noise), ("shear_scale", shear),
                        ("shuffle_seq", shuffle_seq), ("seed", seed)):
        setattr(args, name, value)
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    x, y = data["x"].astype(np.float32), data["y"].astype(np.int64)
    x.flags.writeable = y.flags.writeable = False  # cached: shared by every caller
    return x, y


def noisy_labels(y: np.ndarray, label_noise: float, seed: int) -> np.ndarray:
    """y with each label i replaced, when u_i < label_noise, by (y_i + 1 + floor(9 v_i)) mod 10: another
    class, uniformly; u and v are drawn once per position from streams of `seed` (see the module docstring)."""
    rng = _stream(seed, "label_noise")
    u, v = rng.random(len(y)), rng.random(len(y))
    other = (y + 1 + np.floor(v * (N_CLASSES - 1)).astype(np.int64)) % N_CLASSES
    return np.where(u < label_noise, other, y)


def make_mnist1d(config: MNIST1DConfig | None = None, **options) -> ClassificationTask:
    """The MNIST-1D task of `config` (or of keyword options, validated the same way)."""
    c = config if config is not None else MNIST1DConfig(**options)
    x, y = _generate(c.seed, c.pool, c.length, c.scale_coeff, c.max_translation, c.corr_noise_scale,
                     c.iid_noise_scale, c.shear_scale, c.shuffle_seq)
    if len(y) < c.n_train + c.n_test:  # the generator makes pool // 10 examples of each class
        raise ValueError(f"pool: {c.pool} gives {len(y)} examples (a multiple of 10), fewer than "
                         f"n_train + n_test = {c.n_train + c.n_test}")
    y_train = noisy_labels(y[: c.n_train], c.label_noise, c.seed) if c.label_noise > 0 else y[: c.n_train]
    name = f"mnist1d-{c.length}" + (f"-noise{c.label_noise:g}" if c.label_noise else "")
    return ClassificationTask(
        name, torch.tensor(x[: c.n_train]), torch.tensor(y_train), torch.tensor(x[len(y) - c.n_test:]),
        torch.tensor(y[len(y) - c.n_test:]), n_classes=N_CLASSES, label_noise=c.label_noise,
    )
