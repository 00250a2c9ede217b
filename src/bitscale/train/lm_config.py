"""What an LM run is: the text, the decoder and the recipe (`LMRunConfig`), read from TOML.

A config file has [model] (DecoderConfig), [data] (LMDataConfig) and [train] (TrainConfig) tables; a
[train] table overrides the recipe defaults below field by field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from ..limits import MAX_COUNT, MAX_SAMPLES, MAX_SEED, STRICT, read_toml

from ..models.decoder import DecoderConfig
from .config import TrainConfig
from .speed import AUTOCAST_MODES


# The LM recipe; a [train] table in a config overrides these field by field.
LM_TRAIN_DEFAULTS: dict[str, Any] = {
    "optimizer": "adamw",
    "lr": 1e-3,
    "betas": (0.9, 0.95),
    "weight_decay": 0.1,
    "stage2_weight_decay": 0.0,
    "schedule": "two-stage",
    "warmup_steps": 20,
    "grad_clip": 1.0,
    "steps": 200,
    "batch_size": 16,
    "eval_every": 50,
}


class LMDataConfig(BaseModel):
    """The text: a shipped corpus name (see bitscale.data.text.CORPORA) or a UTF-8 file path; the
    tokenizer ("byte" or "bpe:<vocab>", trained on the corpus); the validation tail; the window length."""

    model_config = STRICT

    corpus: str = "tinyshakespeare"
    tokenizer: str = "byte"
    val_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    block_size: int = Field(128, ge=1, le=MAX_SAMPLES)

    @field_validator("tokenizer")
    @classmethod
    def _tok(cls, v: str) -> str:
        v = v.strip()
        if v != "byte" and not (v.startswith("bpe:") and len(v) > 4):
            raise ValueError("tokenizer must be 'byte' or 'bpe:<vocab size>'")
        return v


class LMRunConfig(BaseModel):
    """A language-model run. `kind` tells it apart from a regression `RunConfig` where both can appear
    (a sweep file, the results store); config files may leave it out."""

    model_config = STRICT

    kind: Literal["lm"] = "lm"
    model: DecoderConfig = Field(default_factory=DecoderConfig)
    data: LMDataConfig = Field(default_factory=LMDataConfig)
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(**LM_TRAIN_DEFAULTS))
    eval_batches: int = Field(8, ge=1, le=MAX_COUNT, description="fixed validation batches (of train.batch_size windows)")
    eval_seed: int = Field(1234, ge=-MAX_SEED, le=MAX_SEED)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    autocast: Literal[AUTOCAST_MODES] = Field(  # type: ignore[valid-type]
        "auto", description="forward-pass autocast: auto = bf16 on CUDA, off on a CPU; bf16 anywhere (see train.speed)"
    )

    @field_validator("train", mode="before")
    @classmethod
    def _recipe_defaults(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {**LM_TRAIN_DEFAULTS, **v}
        return v

    @model_validator(mode="after")
    def _check(self) -> "LMRunConfig":
        if self.train.batch_size is None:
            raise ValueError("train.batch_size (global batch, in sequences) must be set for LM training")
        if self.data.block_size > self.model.block_size:
            raise ValueError(f"data.block_size ({self.data.block_size}) exceeds model.block_size ({self.model.block_size})")
        return self


def load_lm_config(path: "str | Path") -> LMRunConfig:
    """Read a TOML LMRunConfig (raises InputFileError, a ValueError, or pydantic.ValidationError)."""
    return LMRunConfig.model_validate(read_toml(path))
