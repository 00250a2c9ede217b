"""The `bitscale` command. Thin: parse, validate, call the library, print.

One module per group of commands (train.py, sweep.py, fit.py, scale_time.py, double_descent.py, theory.py, lm.py, hf.py, pack.py, bench.py, report.py), sharing common.py. User
mistakes (a missing file, bad TOML, a wrong config field) print one line `error: ...` to stderr and exit
with code 2, without a traceback.
"""

from __future__ import annotations

import sys

from . import train, sweep, fit, scale_time, double_descent, theory, lm, hf, gguf, pack, bench, report  # noqa: F401, I001  (importing each registers its commands, in this order)
from ..atomic import UnsafeTargetError
from ..limits import MemoryLimitError
from .common import UserError, app, err_console


def main() -> None:
    try:
        app()
    except (UserError, UnsafeTargetError, MemoryLimitError) as e:  # a user's input, refused in one line
        err_console.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
