"""Atomic file writes: a reader (or a process restarted after a crash) sees the old file or the new one,
never half of one. The data goes to a temporary file in the same directory, which os.replace renames
over the target in one step."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any, Callable


def atomic_write(path: "str | Path", write: Callable[[str], None]) -> None:
    """Call write(tmp_path) on a temporary file next to `path`, then rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not tempfile.mkstemp: it creates files with mode 0600, and the final file keeps its temp file's
    # mode. O_EXCL with 0666 gives the mode a normal open() would (the umask applies).
    while True:
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: "str | Path", obj: Any) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2) + "\n"))
