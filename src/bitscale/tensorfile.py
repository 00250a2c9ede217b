"""Verified tensor files: safetensors with a sha256 per tensor, read back only after every byte is checked.

A tensor file is a standard safetensors file (written by `safetensors.torch.save_file`, readable by any
safetensors reader):

    8 bytes        N, the header length (unsigned little-endian)
    N bytes        the header, a JSON object: {NAME: {"dtype": "F32", "shape": [...],
                   "data_offsets": [begin, end]}, ..., "__metadata__": {KEY: "string", ...}}
    the data       each tensor's raw little-endian bytes at [begin, end) counted from the end of the header

`save_tensors` adds one metadata key, `bitscale.sha256` (CHECKSUM_KEY), whose value is the JSON object
{NAME: sha256 hex digest of the tensor's raw bytes as stored, ..., "__metadata__": sha256 of the other
metadata entries as compact JSON with sorted keys} (no tensor can be named "__metadata__"; safetensors
reserves it). `load_tensors` checks, before it returns any tensor: the header (length, JSON, entries),
each tensor's dtype and shape against its byte count, its offsets against the file (in range, not
overlapping, nothing after the last tensor), every tensor's checksum and the metadata's.
A failure is a `DamagedFileError`, one line naming the file and the tensor. A file without the checksum
key (written before bitscale checksummed its files, or by another tool) passes the same structural
checks and loads with one `UncheckedFileWarning` naming the file.

Why the header is read here rather than by `safetensors.safe_open`: the safetensors loader has no
per-tensor checksum, so a flipped bit in a weight loads silently, and on a truncated or malformed file it
raises a `SafetensorError` whose message names neither the file nor the tensor. This module is the one
reader that verifies; `bitscale.kernels.packfile` keeps its own metadata (with its own checksums) and
reads the bytes through `read_header` / `read_tensors`.

The bytes are read as stored, i.e. little-endian, which is the byte order of every machine bitscale runs on.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from torch import Tensor

from .atomic import atomic_write, file_kind

CHECKSUM_KEY = "bitscale.sha256"
METADATA_DIGEST = "__metadata__"  # the checksum table's entry for the other metadata
MAX_HEADER = 100_000_000  # the safetensors limit

DTYPES: dict[str, torch.dtype] = {
    name: dtype
    for name, dtype in {
        "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
        "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
        "U64": getattr(torch, "uint64", None), "U32": getattr(torch, "uint32", None),
        "U16": getattr(torch, "uint16", None), "U8": torch.uint8, "BOOL": torch.bool,
        "F8_E4M3": getattr(torch, "float8_e4m3fn", None), "F8_E5M2": getattr(torch, "float8_e5m2", None),
    }.items()
    if dtype is not None
}


class DamagedFileError(ValueError):
    """A tensor file that fails a check: one line, naming the file and, where it applies, the tensor."""


class UncheckedFileWarning(UserWarning):
    """A tensor file without checksums was loaded: its structure was checked, its bytes could not be."""


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a header: dtype, shape and its bytes' absolute offsets [begin, end) in the file."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class Header:
    """A checked header: the tensors in file order and the `__metadata__` strings."""

    path: Path
    tensors: dict[str, TensorEntry]
    metadata: dict[str, str]


def _fail(path: Path, message: str) -> None:
    raise DamagedFileError(f"{path}: {message}")


def tensor_sha256(t: Tensor) -> str:
    """sha256 hex digest of a tensor's raw bytes in C order (what safetensors stores)."""
    t = t.detach().contiguous().cpu()
    if t.numel() == 0:
        return hashlib.sha256(b"").hexdigest()
    return hashlib.sha256(memoryview(t.reshape(-1).view(torch.uint8).numpy())).hexdigest()


def metadata_sha256(metadata: Mapping[str, str]) -> str:
    """sha256 hex digest of a file's metadata without CHECKSUM_KEY, as compact JSON with sorted keys."""
    rest = {k: v for k, v in metadata.items() if k != CHECKSUM_KEY}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def save_tensors(
    path: "str | Path", tensors: Mapping[str, Tensor], metadata: "Mapping[str, str] | None" = None, *, fsync: bool = False
) -> Path:
    """Write `tensors` and `metadata` (string values) as a safetensors file, atomically
    (`bitscale.atomic.atomic_write`), with the checksum of every tensor under CHECKSUM_KEY (which replaces
    any value the caller passes under that key). Tensors that share memory (tied weights, which
    safetensors refuses) are written as copies; loading them into a model with load_state_dict fills
    the shared tensor once per name, with the same values. `fsync`: flush the file to disk before it is
    renamed into place."""
    from safetensors.torch import save_file

    path = Path(path)
    store, storages = {}, set()
    for name, t in tensors.items():
        t = t.detach().cpu().contiguous()
        storage = t.untyped_storage().data_ptr()
        if t.numel() and storage in storages:
            t = t.clone()
        storages.add(storage)
        store[name] = t
    meta = dict(metadata or {})
    for key, value in meta.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(f"save_tensors: metadata must map strings to strings (key {key!r})")
    meta.pop(CHECKSUM_KEY, None)
    table = {name: tensor_sha256(t) for name, t in store.items()}
    table[METADATA_DIGEST] = metadata_sha256(meta)
    meta[CHECKSUM_KEY] = json.dumps(table, separators=(",", ":"))

    def write(tmp: str) -> None:
        mode = os.stat(tmp).st_mode  # atomic_write made tmp with the umask's mode; safetensors writes 0600
        save_file(store, tmp, metadata=meta)
        os.chmod(tmp, stat.S_IMODE(mode))
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())

    atomic_write(path, write)
    return path


def read_header(path: "str | Path") -> Header:
    """Read and check the header of a safetensors file (no tensor data is read): the header itself, and
    each tensor's dtype, shape and offsets against the file's size. DamagedFileError on any failure;
    FileNotFoundError when there is no file."""
    path = Path(path)
    # O_NONBLOCK and the fstat check: a FIFO in place of the file would block a plain open() forever.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            _fail(path, f"is {file_kind(st.st_mode) or 'not a regular file'}, not a tensor file")
        size = st.st_size
        head = f.read(8)
        if len(head) < 8:
            _fail(path, f"truncated file ({size} bytes; not even a safetensors header length): the file is damaged")
        (n,) = struct.unpack("<Q", head)
        if n > MAX_HEADER:
            _fail(path, f"not a safetensors file (header length {n})")
        if 8 + n > size:
            _fail(path, f"truncated file (header of {n} bytes, file has {size} bytes): the file is damaged")
        text = f.read(n)
    try:
        raw = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        _fail(path, f"corrupt safetensors header ({' '.join(str(e).split())}): the file is damaged")
    if not isinstance(raw, dict):
        _fail(path, "corrupt safetensors header (not a JSON object): the file is damaged")
    metadata = raw.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        _fail(path, "corrupt safetensors header (__metadata__ is not a map of strings): the file is damaged")
    start = 8 + n
    entries: dict[str, TensorEntry] = {}
    for name, info in raw.items():
        entries[name] = _entry(path, name, info, start, size)
    last = start
    for name, entry in sorted(entries.items(), key=lambda item: (item[1].begin, item[1].end)):
        if entry.begin < last:
            _fail(path, f"tensor {name!r}: its bytes overlap another tensor's: the file is damaged")
        last = entry.end
    if last != size:
        _fail(path, f"{size - last} bytes after the last tensor (the header accounts for {last}): the file is damaged")
    return Header(path, entries, metadata)


def _entry(path: Path, name: str, info: object, start: int, size: int) -> TensorEntry:
    where = f"tensor {name!r}"
    if not isinstance(info, dict):
        _fail(path, f"{where}: malformed header entry: the file is damaged")
    dtype = DTYPES.get(info.get("dtype"))  # type: ignore[arg-type]
    if dtype is None:
        _fail(path, f"{where}: unknown dtype {info.get('dtype')!r}")
    shape = info.get("shape")
    if not (isinstance(shape, list) and all(type(s) is int and s >= 0 for s in shape)):
        _fail(path, f"{where}: malformed shape {shape!r}: the file is damaged")
    offsets = info.get("data_offsets")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(type(o) is int and o >= 0 for o in offsets)):
        _fail(path, f"{where}: malformed data offsets {offsets!r}: the file is damaged")
    begin, end = start + offsets[0], start + offsets[1]
    numel = 1
    for s in shape:
        numel *= s
    expected = numel * torch.empty((), dtype=dtype).element_size()
    if end - begin != expected:
        _fail(path, f"{where}: {end - begin} bytes of data for {info['dtype']} {shape} ({expected} expected): the file is damaged")
    if end > size:
        _fail(path, f"{where}: truncated (needs bytes up to {end}, file has {size}): the file is damaged")
    return TensorEntry(dtype, tuple(shape), begin, end)


def read_tensors(header: Header, checksums: "Mapping[str, str] | None") -> dict[str, Tensor]:
    """Every tensor of a checked header, read from its file; with `checksums` (name -> sha256 hex), each
    one's bytes are verified first and the names must match the header's. DamagedFileError on a mismatch."""
    path = header.path
    if checksums is not None:
        for name in header.tensors:
            if name not in checksums:
                _fail(path, f"tensor {name!r}: has no checksum in the file's metadata: the file is damaged")
        for name in checksums:
            if name not in header.tensors:
                _fail(path, f"tensor {name!r}: has a checksum but is missing from the file: the file is damaged")
    out: dict[str, Tensor] = {}
    with open(path, "rb") as f:
        for name, entry in header.tensors.items():
            buffer = bytearray(entry.end - entry.begin)
            f.seek(entry.begin)
            if f.readinto(buffer) != len(buffer):
                _fail(path, f"tensor {name!r}: truncated while reading (the file changed?): the file is damaged")
            if checksums is not None and hashlib.sha256(buffer).hexdigest() != checksums[name]:
                _fail(path, f"tensor {name!r}: checksum mismatch (the sha256 of its bytes differs from the one "
                            "saved with it): the file is damaged")
            if buffer:
                out[name] = torch.frombuffer(buffer, dtype=entry.dtype).reshape(entry.shape)
            else:
                out[name] = torch.empty(entry.shape, dtype=entry.dtype)
    return out


def checksums_of(header: Header) -> "dict[str, str] | None":
    """The CHECKSUM_KEY table of a header, or None when the file has none (a legacy file)."""
    raw = header.metadata.get(CHECKSUM_KEY)
    if raw is None:
        return None
    try:
        table = json.loads(raw)
    except json.JSONDecodeError as e:
        _fail(header.path, f"corrupt {CHECKSUM_KEY!r} metadata ({e}): the file is damaged")
    if not (isinstance(table, dict) and all(isinstance(v, str) for v in table.values())):
        _fail(header.path, f"corrupt {CHECKSUM_KEY!r} metadata (not a map of names to digests): the file is damaged")
    return table


def load_tensors(path: "str | Path") -> tuple[dict[str, Tensor], dict[str, str]]:
    """(tensors, metadata) of a tensor file, every tensor verified before any is returned (see the module
    docstring). `metadata` is the file's `__metadata__` as stored, CHECKSUM_KEY included when present.
    DamagedFileError (one line, naming the file and the tensor) on any failure; a file without checksums
    loads after the structural checks, with one UncheckedFileWarning."""
    header = read_header(path)
    checksums = checksums_of(header)
    if checksums is not None:
        checksums = dict(checksums)
        digest = checksums.pop(METADATA_DIGEST, None)
        if digest != metadata_sha256(header.metadata):
            _fail(header.path, "metadata: checksum mismatch (the sha256 of its metadata differs from the one saved "
                               "with it): the file is damaged")
    tensors = read_tensors(header, checksums)
    if checksums is None:
        warnings.warn(f"{header.path}: has no checksums (written before bitscale checksummed its files, or by "
                      "another tool); its tensors are loaded unverified", UncheckedFileWarning, stacklevel=2)
    return tensors, header.metadata


__all__ = [
    "CHECKSUM_KEY", "DTYPES", "DamagedFileError", "Header", "METADATA_DIGEST", "TensorEntry", "UncheckedFileWarning",
    "checksums_of", "load_tensors", "metadata_sha256", "read_header", "read_tensors", "save_tensors", "tensor_sha256",
]
