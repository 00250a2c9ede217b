"""One run from one config: `RunConfig` (model + task + train) -> model and task -> `train` -> RunResult.

A run config is what a `bitscale train CONFIG.toml` file holds:

    [model]
    kind = "two_layer"        # or "mlp"
    width = 1024
    quant = "paper-1bit"      # a preset name, or a table of QuantConfig fields
    kappa = 1.0

    [task]
    function = "sines"
    d = 16
    n_train = 256

    [train]
    optimizer = "sgd"
    lr = 1.0
    steps = 2000

Every section is validated (unknown keys, wrong types and out-of-range values are rejected) and
`format_validation_error` turns pydantic's report into one line that names the field.
"""

from __future__ import annotations

import re

from typing import Annotated, Any, Collection, Literal, Optional, Union

import torch
from pydantic import BaseModel, Field, ValidationError, field_validator

from ..limits import MAX_DEPTH, MAX_SAMPLES, MAX_SEED, MAX_WIDTH, STRICT

from ..data import function_names, make_task
from ..data.task import RegressionTask
from ..models import ACTIVATIONS, MLP, TwoLayerNet
from ..quant import QuantConfig, resolve_config
from .config import TrainConfig
from .loop import RunResult, train


def resolve_quant_field(v: Any) -> Any:
    """A model spec's `quant`: a preset name (checked), or a table of QuantConfig fields (optionally with a
    base `preset`) resolved to a QuantConfig; ValueError naming the allowed presets otherwise."""
    if isinstance(v, str):
        resolve_config(v)
    elif isinstance(v, dict):
        return resolve_config(v)
    return v


def known_activation(v: str) -> str:
    """A model spec's `activation`, one of the named nonlinearities."""
    if v not in ACTIVATIONS:
        raise ValueError(f"expected one of {', '.join(ACTIVATIONS)}, got {v!r}")
    return v


class ModelSpec(BaseModel):
    """Which model to build. `two_layer` is the paper's TwoLayerNet (width = m); `mlp` stacks
    `depth` BitLinear layers of `width` units with a full-precision head."""

    model_config = STRICT

    kind: Literal["two_layer", "mlp"] = "two_layer"
    width: int = Field(1024, ge=1, le=MAX_WIDTH)
    depth: int = Field(1, ge=1, le=MAX_DEPTH, description="hidden layers (mlp only)")
    quant: Union[str, QuantConfig] = "paper-1bit"
    kappa: float = Field(1.0, gt=0, description="output scale (two_layer only)")
    activation: str = "relu"
    train_a: bool = False
    init_seed: Optional[int] = Field(None, ge=-MAX_SEED, le=MAX_SEED, description="seed of the initialization; default: the train seed")

    _resolve_quant = field_validator("quant", mode="before")(classmethod(lambda cls, v: resolve_quant_field(v)))
    _known_activation = field_validator("activation")(classmethod(lambda cls, v: known_activation(v)))


class TaskSpec(BaseModel):
    """Arguments of `bitscale.data.make_task`; `options` go to the target function (e.g. width for
    the teacher)."""

    model_config = STRICT

    function: str = "sines"
    d: int = Field(16, ge=1, le=MAX_WIDTH)
    n_train: int = Field(256, ge=1, le=MAX_SAMPLES)
    n_test: int = Field(1024, ge=1, le=MAX_SAMPLES)
    noise_std: float = Field(0.0, ge=0)
    input_dist: Literal["gaussian", "sphere"] = "gaussian"
    seed: int = Field(0, ge=-MAX_SEED, le=MAX_SEED)
    standardize: bool = True
    options: dict[str, Union[Annotated[int, Field(ge=-MAX_SEED, le=MAX_SEED)], float]] = Field(default_factory=dict)

    @field_validator("function")
    @classmethod
    def _known_function(cls, v: str) -> str:
        if v not in function_names():
            raise ValueError(f"expected one of {', '.join(function_names())}, got {v!r}")
        return v


class RunConfig(BaseModel):
    model_config = STRICT

    model: ModelSpec = Field(default_factory=ModelSpec)
    task: TaskSpec = Field(default_factory=TaskSpec)
    train: TrainConfig = Field(default_factory=TrainConfig)


def format_validation_error(err: ValidationError, source: str = "config", tags: Collection[str] = ()) -> str:
    """One line: `source: field.path: message (got value)` for each problem, joined by '; '. `tags` are
    the tags of a tagged union in the model (a sweep's [base], tagged by kind of run): pydantic puts the
    tag in an error's location, where it is not a field, so it is left out."""
    parts = []
    for e in err.errors():
        path = [str(p) for p in e["loc"] if not str(p).startswith("function-")]
        path = [p for i, p in enumerate(path) if not (i > 0 and p in tags)]
        loc = ".".join(path)
        msg = e["msg"].removeprefix("Value error, ")
        if not loc and re.match(r"[\w.]+: ", msg):  # a check across fields that names its field itself
            parts.append(msg)
            continue
        got = "" if e["type"] in ("missing",) else f" (got {e['input']!r})"
        parts.append(f"{loc or '(top level)'}: {msg}{got}")
    return f"{source}: " + "; ".join(parts)


def build_model(spec: ModelSpec, d: int, seed: int) -> torch.nn.Module:
    init_seed = seed if spec.init_seed is None else spec.init_seed
    if spec.kind == "two_layer":
        return TwoLayerNet(d, spec.width, spec.kappa, spec.quant, spec.activation, spec.train_a, seed=init_seed)
    torch.manual_seed(init_seed)
    return MLP(d, [spec.width] * spec.depth, 1, spec.quant, spec.activation)


def build_task(spec: TaskSpec) -> RegressionTask:
    return make_task(
        spec.function,
        spec.d,
        spec.n_train,
        spec.n_test,
        spec.noise_std,
        spec.input_dist,
        spec.seed,
        spec.standardize,
        **spec.options,
    )


def run(
    config: RunConfig, callback: Any = None, checkpoint: Any = None, checkpoint_every: Optional[int] = None
) -> tuple[torch.nn.Module, RegressionTask, RunResult]:
    """Build the task and model of `config`, train (resuming from `checkpoint` if it exists), and
    return all three."""
    task = build_task(config.task)
    model = build_model(config.model, task.d, config.train.seed)
    result = train(model, task, config.train, callback=callback, checkpoint=checkpoint, checkpoint_every=checkpoint_every)
    return model, task, result
