"""Model files: weights in safetensors, the run config and result in JSON, every write atomic.

A run directory holds
    model.safetensors   the model's state_dict (latent full-precision weights)
    config.json         the RunConfig that builds the model
    result.json         the RunResult (curves, final losses, status)
Each file is written to a temporary name in the same directory and moved into place with os.replace,
so a reader sees the old file or the new one, never half of one. Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import load_file, save_file

from .loop import RunResult
from .run import RunConfig, build_model


def atomic_write(path: "str | Path", write: Callable[[str], None]) -> None:
    """Call write(tmp_path) on a temporary file next to `path`, then rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: "str | Path", obj: Any) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2) + "\n"))


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
    config = RunConfig.model_validate_json((directory / "config.json").read_text())
    model = build_model(config.model, config.task.d, config.train.seed)
    model.load_state_dict(load_file(directory / "model.safetensors"))
    return model, config
