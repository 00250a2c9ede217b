"""What every config accepts: strict types, finite numbers, bounded sizes, and a memory estimate.

`STRICT` is the pydantic configuration of every config model (runs, models, quantizers, sweeps,
theory studies): unknown keys are errors, values are frozen, types are strict (`true` is not the integer
1 and `"yes"` is not a boolean; an integer is accepted for a float) and floats are finite (`inf` and
`nan` are refused for a learning rate, a kappa, a weight decay, a gradient clip or a RoPE base alike).
Fields that are tuples in the model but arrays in TOML and JSON set `strict=False` on themselves.

The `MAX_*` bounds keep sizes and counts where a run is possible at all: past them a value is a typo
(1e9 steps, a width of 1e9), an integer that SQLite cannot store (>= 2^63), or a run that would hang.
Scales (learning rates, kappas, weight decays) have no upper bound beyond being finite: a huge one
is a run that diverges, and divergence is detected (`bitscale.train.finite`). What fits in memory is
checked by `check_memory` against an estimate of the run's bytes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from pydantic import ConfigDict

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

STRICT = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

MAX_STEPS = 100_000_000          # optimizer updates
MAX_WIDTH = 1 << 24              # units of one layer (also d_model, d_ff, vocab, input dimension)
MAX_DEPTH = 1024                 # layers
MAX_SAMPLES = 1 << 31            # examples of a synthetic task, tokens of a window
MAX_COUNT = 1_000_000            # batches of an evaluation, groups, outliers and other counts
MAX_SEED = (1 << 63) - 1         # torch.manual_seed and SQLite integers


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (MemAvailable on Linux), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    """`n` bytes in the largest binary unit below 1024 of it (PiB at most), 3 significant digits."""
    unit = "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            break
        n /= 1024
    return f"{n:.3g} {unit}"


class InputFileError(ValueError):
    """An input file that cannot be read as what it should be; the message is one line naming it."""


MAX_TOML_DEPTH = 32  # tables and arrays nested in a config file; real ones nest 4 or 5 deep


def toml_depth(data: Any) -> int:
    """How deeply tables and arrays nest in a parsed TOML document (a flat table: 1), without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def read_toml(path: "str | Path") -> dict[str, Any]:
    """The TOML document at `path` as a dict; InputFileError with one line "PATH: ..." for a missing or
    unreadable file, text that is not UTF-8, invalid TOML, or a document nested more than
    MAX_TOML_DEPTH levels deep (tomllib recurses once per level: a deep enough `a = [[[...]]]` would
    otherwise end in a RecursionError, and validation recurses the same way). The one TOML reader of
    sweep files (`bitscale.sweep.spec`), run configs (`bitscale.cli.common.load_config`) and LM configs
    (`bitscale.train.lm_config.load_lm_config`, the torchrun entry)."""
    path = Path(path)
    if not path.exists():
        raise InputFileError(f"{path}: no such file")
    if not path.is_file():  # a FIFO would block the read forever; a directory cannot be read
        raise InputFileError(f"{path}: not a regular file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputFileError(f"{path}: not a UTF-8 text file") from None
    except OSError as e:
        raise InputFileError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputFileError(f"{path}: invalid TOML: {' '.join(str(e).split())}") from None
    except RecursionError:
        raise InputFileError(f"{path}: TOML nested too deeply (at most {MAX_TOML_DEPTH} levels of tables and arrays)") from None
    depth = toml_depth(data)
    if depth > MAX_TOML_DEPTH:
        raise InputFileError(f"{path}: TOML nested too deeply ({depth} levels of tables and arrays; "
                             f"at most {MAX_TOML_DEPTH})")
    return data


class MemoryLimitError(ValueError):
    """A run whose estimated memory exceeds what is available; the message gives both figures."""


def check_memory(estimate: int, what: str, available: int | None = None) -> None:
    """MemoryLimitError (one line) when `estimate` bytes exceed the available memory."""
    available = available_memory() if available is None else available
    if available is not None and estimate > available:
        raise MemoryLimitError(
            f"{what}: needs about {format_bytes(estimate)} of memory (parameters, optimizer state, activations "
            f"and data), more than the {format_bytes(available)} available; make the model, the batch or the "
            "data smaller")
