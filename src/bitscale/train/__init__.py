"""One training run: config, schedules, the loop, run specs and model files."""

from bitscale.train.checkpoint import load_model, save_run
from bitscale.train.config import TrainConfig
from bitscale.train.loop import RunResult, train
from bitscale.train.run import ModelSpec, RunConfig, TaskSpec, build_model, build_task, format_validation_error, run
from bitscale.train.schedules import lr_at, weight_decay_at

__all__ = [
    "ModelSpec", "RunConfig", "RunResult", "TaskSpec", "TrainConfig", "build_model", "build_task",
    "format_validation_error", "load_model", "lr_at", "run", "save_run", "train", "weight_decay_at",
]
