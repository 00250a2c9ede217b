"""Classification runs: a 1-D CNN or an MLP of low-bit layers trained on MNIST-1D.

A classification run config (`kind = "classification"`):

    kind = "classification"

    [model]
    kind = "cnn1d"            # or "mlp"
    width = 32                # channels of every convolution (cnn1d), units of every hidden layer (mlp)
    depth = 3                 # convolutions (cnn1d), hidden layers (mlp)
    kernel_size = 5           # cnn1d only (stride 2, padding kernel_size // 2)
    quant = "bitnet-b1.58"

    [data]                    # bitscale.data.mnist1d.MNIST1DConfig
    n_train = 4000
    label_noise = 0.1         # training labels only

    [train]                   # defaults: Adam, lr 1e-2, batch 100, constant lr, 2000 steps
    steps = 4000

The loss is cross-entropy; the error rate is recorded beside it at every evaluation. A constant learning
rate (the default) makes a run's curve at step t the run of t steps: a scale-time study reads model
size x training time from one run per size (`bitscale.laws.scale_time`).
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

import torch
from pydantic import BaseModel, Field, field_validator, model_validator

from ..data.classification import ClassificationTask
from ..data.mnist1d import N_CLASSES, MNIST1DConfig, make_mnist1d
from ..limits import MAX_DEPTH, MAX_SEED, MAX_WIDTH, STRICT
from ..models import MLP
from ..models.cnn1d import CNN1d, conv_lengths
from ..quant import QuantConfig
from .config import TrainConfig
from .loop import RunResult, train
from .run import known_activation, resolve_quant_field

CLASSIFICATION_TRAIN_DEFAULTS: dict[str, Any] = {
    "optimizer": "adam", "lr": 1e-2, "batch_size": 100, "steps": 2000, "eval_every": 100,
}


class ClassifierSpec(BaseModel):
    """Which classifier to build (see the module docstring)."""

    model_config = STRICT

    kind: Literal["cnn1d", "mlp"] = "cnn1d"
    width: int = Field(32, ge=1, le=MAX_WIDTH)
    depth: int = Field(3, ge=1, le=MAX_DEPTH)
    kernel_size: int = Field(5, ge=1, le=4096, description="cnn1d only")
    stride: int = Field(2, ge=1, le=4096, description="cnn1d only")
    groups: int = Field(1, ge=1, le=MAX_WIDTH, description="cnn1d only: channel groups of the inner convolutions")
    quant: Union[str, QuantConfig] = "bitnet-b1.58"
    activation: str = "relu"
    quantize_ends: bool = Field(False, description="quantize the first convolution and the head too")
    init_seed: Optional[int] = Field(None, ge=-MAX_SEED, le=MAX_SEED, description="default: the train seed")

    _resolve_quant = field_validator("quant", mode="before")(classmethod(lambda cls, v: resolve_quant_field(v)))
    _known_activation = field_validator("activation")(classmethod(lambda cls, v: known_activation(v)))


class ClassificationRunConfig(BaseModel):
    """A classification run; `kind` tells it from the other kinds of run in a store or a sweep file."""

    model_config = STRICT

    kind: Literal["classification"] = "classification"
    model: ClassifierSpec = Field(default_factory=ClassifierSpec)
    data: MNIST1DConfig = Field(default_factory=MNIST1DConfig)
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(**CLASSIFICATION_TRAIN_DEFAULTS))

    @field_validator("train", mode="before")
    @classmethod
    def _defaults(cls, v: Any) -> Any:
        return {**CLASSIFICATION_TRAIN_DEFAULTS, **v} if isinstance(v, dict) else v

    @model_validator(mode="after")
    def _kernel_fits(self) -> "ClassificationRunConfig":
        m = self.model
        if m.kind == "cnn1d" and m.width % m.groups:
            raise ValueError(f"model.width: {m.width} channels are not divisible by model.groups = {m.groups}")
        if m.kind == "cnn1d":
            try:
                conv_lengths(self.data.length, m.depth, m.kernel_size, m.stride)
            except ValueError as e:
                raise ValueError(f"model.{e}") from None
        return self


def build_classifier(spec: ClassifierSpec, length: int, seed: int, device=None) -> torch.nn.Module:
    """The model of `spec` for inputs of `length` points, initialized from `init_seed` (default `seed`)."""
    torch.manual_seed(seed if spec.init_seed is None else spec.init_seed)
    if spec.kind == "cnn1d":
        return CNN1d(length, spec.width, spec.depth, N_CLASSES, spec.kernel_size, spec.stride, spec.groups,
                     spec.quant, spec.activation, spec.quantize_ends, device=device)
    return MLP(length, [spec.width] * spec.depth, N_CLASSES, spec.quant, spec.activation,
               quantize_head=spec.quantize_ends, device=device)


def build_dataset(config: MNIST1DConfig) -> ClassificationTask:
    return make_mnist1d(config)


def run_classification(
    config: ClassificationRunConfig, checkpoint: Any = None, checkpoint_every: Optional[int] = None
) -> tuple[torch.nn.Module, ClassificationTask, RunResult]:
    """Build the task and model of `config`, train (resuming from `checkpoint` if it exists)."""
    task = build_dataset(config.data)
    model = build_classifier(config.model, config.data.length, config.train.seed)
    result = train(model, task, config.train, checkpoint=checkpoint, checkpoint_every=checkpoint_every)
    return model, task, result
