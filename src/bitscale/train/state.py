"""Training state for exact resume: one safetensors file, written atomically, never unpickled.

A training checkpoint holds everything the loop needs to continue as if it had never stopped:

    model.<name>            the model's state_dict tensors (latent weights, buffers)
    optim.<i>.<key>         the optimizer's per-parameter state tensors (momentum, exp_avg, step, ...)
    rng.torch               torch's global CPU RNG state (uint8)
    rng.batches             the minibatch generator's state (uint8), checked on resume
and, in the file's JSON metadata (`bitscale.state`): the number of updates applied, the optimizer's
non-tensor state and param_groups, and whatever the caller adds (curves, elapsed time). The file is a
`bitscale.tensorfile` (a sha256 per tensor), verified before anything is loaded into the model.

The file is written to a temporary name in the same directory and renamed over the old one, so a
process killed at any moment leaves either the previous checkpoint or the new one, whole. (os.replace
is atomic against a process crash; surviving a power cut would also need an fsync, which we skip.)

`resume_training_state` is what the loops call: a checkpoint that fails verification (a flipped bit, a
truncated file) or whose restored model has a non-finite loss is discarded with one warning, and the
run starts from scratch, so that a sweep's retry succeeds where the run would otherwise stay failed.
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from ..tensorfile import DamagedFileError, load_tensors, read_header, save_tensors

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
    save_tensors(path, tensors, {"bitscale.state": json.dumps(meta)})


def load_training_state(
    path: "str | Path", model: torch.nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[int, torch.Tensor, dict[str, Any]]:
    """Load model and optimizer state from `path` in place and restore torch's global RNG.

    Returns (step, saved minibatch-generator state, extra). Every tensor is verified before the model is
    touched: DamagedFileError (a ValueError, one line naming the file and the tensor) on a damaged file;
    ValueError if the file is not a bitscale training state.
    """
    if "bitscale.state" not in read_header(path).metadata:  # before the tensors are read (and warned about)
        raise ValueError(f"{path}: not a bitscale training state (no 'bitscale.state' metadata)")
    tensors, metadata = load_tensors(path)
    raw = metadata["bitscale.state"]
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise DamagedFileError(f"{path}: corrupt 'bitscale.state' metadata ({e}): the file is damaged") from None
    if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ValueError(f"{path}: training state format {found!r}, expected {STATE_FORMAT!r}")
    for key in ("rng.torch", "rng.batches"):
        if key not in tensors:
            raise DamagedFileError(f"{path}: tensor {key!r}: missing from the file: the file is damaged")

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


def resume_training_state(
    path: "str | Path", model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: Callable[[], float]
) -> "tuple[int, torch.Tensor, dict[str, Any]] | None":
    """`load_training_state`, or None when the checkpoint is discarded: it fails verification
    (DamagedFileError), or `loss()`, the loss of the model it restored, is not finite. A discarded
    checkpoint leaves the model, the optimizer and torch's global RNG as they were before the call
    (the run then starts from scratch) and warns once, naming the file and the reason.

    Other errors (not a training state, a state whose layout does not fit the model) propagate: the
    file is not this run's to throw away."""
    weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    opt_state = copy.deepcopy(optimizer.state_dict())
    rng = torch.get_rng_state()
    try:
        loaded = load_training_state(path, model, optimizer)
    except DamagedFileError as e:
        reason = str(e)
    else:
        value = loss()
        if math.isfinite(value):
            return loaded
        reason = f"{path}: the restored model's loss is {value} (not finite)"
        model.load_state_dict(weights)
        optimizer.load_state_dict(opt_state)
        torch.set_rng_state(rng)
    warnings.warn(f"{reason}; checkpoint discarded, the run restarts from scratch", stacklevel=2)
    return None
