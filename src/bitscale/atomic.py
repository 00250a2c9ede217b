"""Atomic, safe file writes: a reader (or a process restarted after a crash) sees the old file or the
new one, never half of one, and a write never replaces anything but a regular file.

The data goes to a temporary file in the same directory, which os.replace renames over the target in
one step. A rename replaces whatever the target is, so the target is checked first (`check_target`):
a symbolic link, a directory, a device, a FIFO or a socket is refused with `UnsafeTargetError`. Without
the check, `--plot /dev/full` run as root turns the device node into a PNG file, and `--out LINK`
replaces the link instead of writing where it points. Passing the path of the regular file itself (or
a new name) is always allowed.

`check_output` is what commands call before any work: the target checks above, and an output that is
one of the command's inputs (`bitscale pack RUN RUN/model.safetensors` would destroy its own input).
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any, Callable, Iterable


class UnsafeTargetError(ValueError):
    """A write refused because of what its target is; the message is one line naming the path."""


def file_kind(mode: int) -> str | None:
    """What a non-regular file is, in words; None for a regular file."""
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return None if stat.S_ISREG(mode) else "not a regular file"


def _existing_mode(path: Path) -> int | None:
    """lstat's mode of `path`, or None when nothing is there (a link is not followed)."""
    try:
        return os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise UnsafeTargetError(f"{path}: a parent of this path is not a directory") from None


def check_target(path: "str | Path") -> Path:
    """`path` as a Path when it is a new name or an existing regular file; UnsafeTargetError otherwise."""
    path = Path(path)
    mode = _existing_mode(path)
    what = None if mode is None else file_kind(mode)
    if what is not None:
        hint = "; write to the file it points to, or to a new name" if what == "a symbolic link" else ""
        raise UnsafeTargetError(f"{path}: is {what}, not a regular file{hint}")
    return path


def check_directory_target(path: "str | Path") -> Path:
    """`path` as a Path when it is a new name or an existing directory (not a link to one)."""
    path = Path(path)
    mode = _existing_mode(path)
    if mode is not None and not stat.S_ISDIR(mode):
        raise UnsafeTargetError(f"{path}: is {file_kind(mode) or 'a regular file'}, expected a directory or a new name")
    return path


def check_output(path: "str | Path", *, inputs: Iterable["str | Path"] = (), directory: bool = False) -> Path:
    """Check an output path before a command does any work: a new name or a regular file (a directory
    when `directory`), and not the same file as any of `inputs` (the files the command reads).
    UnsafeTargetError (one line) otherwise."""
    path = check_directory_target(path) if directory else check_target(path)
    for source in map(Path, inputs):
        if path.exists() and source.exists() and os.path.samefile(path, source):
            raise UnsafeTargetError(f"{path}: is also an input of this command ({source}); write the output elsewhere")
    return path


def atomic_write(path: "str | Path", write: Callable[[str], None]) -> None:
    """Call write(tmp_path) on a temporary file next to `path`, then rename it onto `path`. The target
    must be a new name or a regular file (`check_target`), checked before and again just before the rename."""
    path = check_target(path)
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
        check_target(path)  # the target may have been replaced by something else while we wrote
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: "str | Path", obj: Any) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2) + "\n"))
