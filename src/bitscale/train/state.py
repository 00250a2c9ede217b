"""Training state for exact resume: one safetensors file, written atomically, never unpickled.

A training checkpoint holds everything the loop needs to continue as if it had never stopped:

    model.<name>            the model's state_dict tensors (latent weights, buffers)
    optim.<i>.<key>         the optimizer's per-parameter state tensors (momentum, exp_avg, step, ...)
    rng.torch               torch's global CPU RNG state (uint8)
    rng.batches             the minibatch generator's state (uint8), checked on resume
and, in the file's JSON metadata (`bitscale.state`): the number of updates applied, the optimizer's
non-tensor state and param_groups, and whatever the caller adds (curves, elapsed time).

The file is written to a temporary name in the same directory and renamed over the old one, so a
process killed at any moment leaves either the previous checkpoint or the new one, whole. (os.replace
is atomic against a process crash; surviving a power cut would also need an fsync, which we skip.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..atomic import atomic_write

STATE_FORMAT = "bitscale-train-state-1"


def save_training_state(
    path: "str | Path",
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    step: int,
    extra: dict[str, Any],
) -> None:
    """Write the state after `step` updates to `path` atomically."""
    tensors: dict[str, torch.Tensor] = {
        f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()
    }
    opt = optimizer.state_dict()
    plain_state: dict[str, dict[str, Any]] = {}
    for index, entries in opt["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                plain_state.setdefault(str(index), {})[key] = value
    tensors["rng.torch"] = torch.get_rng_state()
    tensors["rng.batches"] = generator.get_state()
    meta = {
        "format": STATE_FORMAT,
        "step": step,
        "optim_plain": plain_state,
        "param_groups": opt["param_groups"],
        "extra": extra,
    }
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"bitscale.state": json.dumps(meta)}))


def load_training_state(
    path: "str | Path", model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[int, torch.Tensor, dict[str, Any]]:
    """Load model and optimizer state from `path` in place and restore torch's global RNG.

    Returns (step, saved minibatch-generator state, extra). Raises ValueError if the file is not a
    bitscale training state.
    """
    with safe_open(str(path), framework="pt") as f:
        raw = (f.metadata() or {}).get("bitscale.state")
        if raw is None:
            raise ValueError(f"{path}: not a bitscale training state (no 'bitscale.state' metadata)")
        meta = json.loads(raw)
        if meta.get("format") != STATE_FORMAT:
            raise ValueError(f"{path}: training state format {meta.get('format')!r}, expected {STATE_FORMAT!r}")
        tensors = {k: f.get_tensor(k) for k in f.keys()}

    model.load_state_dict({k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, entries in meta["optim_plain"].items():
        state.setdefault(int(index), {}).update(entries)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    return int(meta["step"]), tensors["rng.batches"], meta["extra"]
