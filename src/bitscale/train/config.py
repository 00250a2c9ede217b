"""Training hyper-parameters.

`TrainConfig` is a frozen pydantic model: a misspelled field (``learning_rate=``) or an
out-of-range value (``lr=-1``) fails loudly at construction instead of silently training
with a default. Derive variants with ``cfg.model_copy(update={...})``.

Note that ``model_copy`` does not re-run validation; build a fresh config with
``TrainConfig(**{**cfg.model_dump(), **changes})`` when the changes are untrusted.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from ..limits import MAX_SAMPLES, MAX_SEED, MAX_STEPS, STRICT

Beta = Annotated[float, Field(ge=0.0, lt=1.0)]


class TrainConfig(BaseModel):
    """Optimizer, schedule and loop settings for `bitscale.train.train`.

    Fields that only matter for some settings are accepted and ignored elsewhere:
    ``momentum`` is used by SGD only, ``betas`` by Adam/AdamW only, ``stage2_*`` by the
    ``two-stage`` schedule only. See `bitscale.train.schedules` for the lr/weight-decay
    formulas.
    """

    model_config = STRICT

    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0.0, description="peak learning rate")
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="SGD momentum (sgd only)")
    betas: tuple[Beta, Beta] = Field((0.9, 0.999), strict=False)  # a TOML / JSON array
    weight_decay: float = Field(0.0, ge=0.0, description="decoupled for adamw, L2 for sgd/adam")
    steps: int = Field(1000, ge=1, le=MAX_STEPS, description="number of optimizer updates")
    batch_size: Annotated[int, Field(ge=1, le=MAX_SAMPLES)] | None = Field(
        None, description="None = full-batch gradient descent (the NTK regime)"
    )
    schedule: Literal["constant", "cosine", "linear", "two-stage"] = "constant"
    warmup_steps: int = Field(0, ge=0, le=MAX_STEPS)
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0, description="lr floor for cosine/linear/two-stage")
    stage2_lr_ratio: float = Field(0.5, gt=0.0, le=1.0, description="lr cut at the two-stage midpoint")
    stage2_weight_decay: float = Field(0.0, ge=0.0, description="weight decay in two-stage stage 2")
    grad_clip: Annotated[float, Field(gt=0.0)] | None = Field(None, description="max global grad L2 norm")
    seed: int = Field(0, ge=-MAX_SEED, le=MAX_SEED, description="seeds minibatch sampling")
    eval_every: int = Field(100, ge=1, le=MAX_STEPS, description="evaluate full train/test loss every this many steps")

    @model_validator(mode="after")
    def _warmup_shorter_than_run(self) -> TrainConfig:
        if self.warmup_steps >= self.steps:
            raise ValueError(
                f"warmup_steps ({self.warmup_steps}) must be smaller than steps ({self.steps})"
            )
        return self
