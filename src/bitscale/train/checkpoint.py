"""Run directories: the weights in a verified safetensors file, the run config and result in JSON, the
directory written as a unit. Nothing is ever unpickled.

A run directory holds
    model.safetensors   the model's state_dict (latent full-precision weights), a `bitscale.tensorfile`
                        (a sha256 per tensor) whose metadata also carries the sha256 of the config.json
                        text it was saved with (CONFIG_KEY), and for a BPE LM that of tokenizer.json
    config.json         the run config that builds the model
    result.json         the run's result (curves, final losses, status)
    tokenizer.json      (BPE language models only) the tokenizer

Written as a unit (`write_run_dir`): the files go into a temporary sibling directory `.NAME.tmp-XXXX`,
which is then renamed onto DIR. An existing run at DIR is swapped out in the same step (Linux:
renameat2 with RENAME_EXCHANGE; elsewhere the old run is renamed to `.NAME.old-XXXX` just before the new
one goes in) and deleted afterwards. A process killed at any moment leaves DIR holding the old run or
the new one, whole, never a mix. DIR must be new, an empty directory or a run directory: a file, a
symbolic link, or a directory with anything but run files in it is refused with a one-line ValueError
before anything is written, so a user's folder is never deleted.

Loading (`load_model`, `bitscale.train.lm_files.load_lm`) verifies every tensor and the config binding
before a model is built: a damaged file or a config.json that is not the one the weights were saved with
is a one-line `DamagedFileError` (a ValueError) naming the file (and the tensor). Directories written
before these checks (no checksums) load with one warning.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import sys
import warnings
from pathlib import Path
from typing import Callable, Mapping

import torch

from ..atomic import check_directory_target
from ..tensorfile import CHECKSUM_KEY, DamagedFileError, load_tensors, save_tensors
from .loop import RunResult
from .run import RunConfig, build_model

RUN_FILES = ("config.json", "model.safetensors")  # what every run directory has
OPTIONAL_FILES = ("result.json", "tokenizer.json")
WEIGHTS = "model.safetensors"
CONFIG_KEY = "bitscale.config_sha256"  # weights metadata: sha256 of the config.json text
TOKENIZER_KEY = "bitscale.tokenizer_sha256"  # weights metadata (BPE LMs): sha256 of tokenizer.json
# atomic_write's temporary files (".NAME.<8 hex>"), which a kill during an older in-place save left behind
_LEFTOVER = re.compile(r"^\.(?:%s)\.[0-9a-f]{8}$" % "|".join(re.escape(n) for n in RUN_FILES + OPTIONAL_FILES))


def sha256_text(text: "str | bytes") -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


def require_run_files(directory: Path) -> None:
    """ValueError (one line) unless `directory` is a directory holding config.json and model.safetensors."""
    if not directory.is_dir():
        aside = sorted(directory.parent.glob(f".{directory.name}.old-*")) if directory.parent.is_dir() else []
        hint = f" (an interrupted save left the previous run in {aside[0]})" if aside else ""
        raise ValueError(f"{directory}: no such directory{hint}")
    for name in RUN_FILES:
        if not (directory / name).is_file():
            raise ValueError(f"{directory}: missing {name} (not a run directory of `bitscale lm --out` or `bitscale train --out`)")


def check_run_dir_target(directory: "str | Path") -> Path:
    """`directory` as a Path when a run may be written there: a new name, an empty directory, or a run
    directory (config.json and only run files). ValueError (one line, naming it) otherwise."""
    directory = check_directory_target(directory)  # a file, a link, a FIFO or a device: UnsafeTargetError
    if not directory.exists():
        return directory
    names = sorted(p.name for p in directory.iterdir())
    if not names:
        return directory
    if "config.json" not in names:
        raise ValueError(f"{directory}: not empty and not a run directory (no config.json); refusing to replace it")
    others = [n for n in names if n not in RUN_FILES + OPTIONAL_FILES and not _LEFTOVER.match(n)]
    if others:
        raise ValueError(f"{directory}: holds {others[0]!r}, which is not a run file; refusing to replace the "
                         "directory (move it away or choose another directory)")
    return directory


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where that is unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):  # old kernel or filesystem
        return False
    raise OSError(err, os.strerror(err), str(b))


def _sibling(directory: Path, tag: str) -> Path:
    """A new, empty directory `.NAME.<tag>-XXXX` next to `directory` (mode from the umask, unlike mkdtemp's 0700)."""
    while True:
        path = directory.parent / f".{directory.name}.{tag}-{secrets.token_hex(4)}"
        try:
            os.mkdir(path, 0o777)
            return path
        except FileExistsError:
            continue


def write_run_dir(directory: "str | Path", write: Callable[[Path], None]) -> Path:
    """Call write(tmp) to fill a temporary sibling directory, then put it in place of `directory` as one
    unit (see the module docstring). ValueError (one line) when `directory` may not be replaced."""
    given = check_run_dir_target(Path(directory))
    directory = Path(os.path.abspath(given))  # "." or "run/.." has no name to put a sibling next to
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(directory, "tmp")
    try:
        write(tmp)
        check_run_dir_target(given)  # it may have changed while we wrote
        if not directory.exists() or not any(directory.iterdir()):
            os.replace(tmp, directory)  # onto a missing or empty directory: one rename
            return given
        if _exchange(tmp, directory):
            shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old run
            return given
        old = directory.parent / f".{directory.name}.old-{secrets.token_hex(4)}"
        os.rename(directory, old)
        try:
            os.rename(tmp, directory)
        except BaseException:
            os.rename(old, directory)
            raise
        shutil.rmtree(old, ignore_errors=True)
        return given
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_weights(path: Path, state: Mapping[str, torch.Tensor], fmt: str, bound: Mapping[str, str]) -> None:
    """Write a run's weights with their format tag and the sha256 of the files they are bound to
    (CONFIG_KEY, TOKENIZER_KEY -> digest)."""
    save_tensors(path, state, {"format": fmt, **bound})


def load_weights(directory: Path, bound: Mapping[str, "tuple[str, bytes | str]"]) -> dict[str, torch.Tensor]:
    """The verified tensors of DIR/model.safetensors, after checking that each file in `bound`
    (key -> (file name, its content)) is the one they were saved with. DamagedFileError otherwise; a
    legacy file (no checksums) loads with the tensor file's warning, a checksummed one without the
    binding with a warning of its own."""
    path = directory / WEIGHTS
    tensors, metadata = load_tensors(path)
    for key, (name, content) in bound.items():
        saved = metadata.get(key)
        if saved is None:
            if CHECKSUM_KEY in metadata:  # a legacy file has been warned about already
                warnings.warn(f"{path}: does not record which {name} it was saved with; loaded as is", stacklevel=3)
        elif saved != sha256_text(content):
            raise DamagedFileError(f"{path} was saved with a different {name} (it is not {directory / name} "
                                   "as it now stands: a mixed or edited run directory)")
    return tensors


def config_text(config) -> str:
    """The config.json text of a run config."""
    return json.dumps(config.model_dump(mode="json"), indent=2) + "\n"


def save_run(directory: "str | Path", model: torch.nn.Module, config, result: RunResult) -> Path:
    """Write model.safetensors, config.json and result.json into `directory`, as one unit (`write_run_dir`).
    `config` is the run's validated config (a regression `RunConfig` or a classification run's)."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    text = config_text(config)

    def write(tmp: Path) -> None:
        (tmp / "config.json").write_text(text)
        save_weights(tmp / WEIGHTS, state, "bitscale", {CONFIG_KEY: sha256_text(text)})
        (tmp / "result.json").write_text(json.dumps(result.to_dict(), indent=2) + "\n")

    return write_run_dir(directory, write)


def load_run_model(directory: "str | Path", config_class: type, build: Callable) -> tuple[torch.nn.Module, object]:
    """Rebuild the model of a saved run with `build(config)` and load its weights, verified first (see
    the module docstring); `config_class` validates config.json."""
    directory = Path(directory)
    require_run_files(directory)
    text = (directory / "config.json").read_text()
    config = config_class.model_validate_json(text)  # first: a folder that is not a run says so, unwarned
    tensors = load_weights(directory, {CONFIG_KEY: ("config.json", text)})
    model = build(config)
    model.load_state_dict(tensors)
    return model, config


def load_model(directory: "str | Path") -> tuple[torch.nn.Module, RunConfig]:
    """The model and config of a saved regression run (`load_run_model`)."""
    return load_run_model(directory, RunConfig, lambda c: build_model(c.model, c.task.d, c.train.seed))
