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

from pydantic import ConfigDict

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
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"  # pragma: no cover


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
