"""Model files: weights in safetensors, the run config and result in JSON, every write atomic.

A run directory holds
    model.safetensors   the model's state_dict (latent full-precision weights)
    config.json         the RunConfig that builds the model
    result.json         the RunResult (curves, final losses, status)
Each file is written to a temporary name in the same directory and moved into place with os.replace,
so a reader sees the old file or the new one, never half of one. Nothing is ever unpickled.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from ..atomic import atomic_write, atomic_write_json
from .loop import RunResult
from .run import RunConfig, build_model


RUN_FILES = ("config.json", "model.safetensors")


def require_run_files(directory: Path) -> None:
    """ValueError (one line) unless `directory` is a directory holding config.json and model.safetensors."""
    if not directory.is_dir():
        raise ValueError(f"{directory}: no such directory")
    for name in RUN_FILES:
        if not (directory / name).is_file():
            raise ValueError(f"{directory}: missing {name} (not a run directory of `bitscale lm --out` or `bitscale train --out`)")


def save_run(directory: "str | Path", model: torch.nn.Module, config: RunConfig, result: RunResult) -> Path:
    """Write model.safetensors, config.json and result.json into `directory`."""
    directory = Path(directory)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(directory / "model.safetensors", lambda tmp: save_file(state, tmp, metadata={"format": "bitscale"}))
    atomic_write_json(directory / "config.json", config.model_dump(mode="json"))
    atomic_write_json(directory / "result.json", result.to_dict())
    return directory


def load_model(directory: "str | Path") -> tuple[torch.nn.Module, RunConfig]:
    """Rebuild the model of a saved run and load its weights (safetensors only, no pickle)."""
    directory = Path(directory)
    require_run_files(directory)
    config = RunConfig.model_validate_json((directory / "config.json").read_text())
    model = build_model(config.model, config.task.d, config.train.seed)
    model.load_state_dict(load_file(directory / "model.safetensors"))
    return model, config
