"""The packed model file: a safetensors file of packed uint8 weights, float32 scales and full-precision
tensors, described by JSON metadata with a sha256 checksum per tensor (see docs/formats.md).

The file is a standard safetensors file (written by `safetensors.torch.save_file`, readable by any
safetensors reader). Its `__metadata__` has one key, `bitscale.packed`, whose value is a JSON object:

    {"format": "bitscale-packed", "version": 1,
     "layers":  {LAYER: {"format": "ternary-b3", "scheme": "ternary", "shape": [out, in],
                         "packed_shape": [out, row_bytes], "granularity": "tensor",
                         "packed": "LAYER.packed", "scale": "LAYER.scale", "attrs": {...}}},
     "tensors": {NAME: {"dtype": "uint8", "shape": [...], "sha256": "..."}},
     "aliases": {NAME: OTHER_NAME},          (tied tensors stored once)
     "model":   {...}}                       (free-form: how to rebuild the model; see nn.packed)

`load_packed` reads the file itself (not through the safetensors library) so that it can check every
byte before a tensor is built: header, version, every tensor's presence, dtype, shape, extent and
checksum, and every layer's shapes against its format. Any failure raises `PackedFileError`, one line
that names the file and the tensor. Nothing is built from a file that fails a check.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..atomic import atomic_write
from .formats import (
    FORMATS,
    KIND,
    SCALE_DTYPE,
    PackedWeight,
    granularity_of,
    packed_shape,
    scale_numel,
    unpack_codes,
)

FORMAT_NAME = "bitscale-packed"
FORMAT_VERSION = 1
METADATA_KEY = "bitscale.packed"
_MAX_HEADER = 100_000_000  # the safetensors limit

_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
_DTYPE_NAMES = {v: k for k, v in _DTYPES.items()}
# Metadata names the dtypes the torch way ("uint8", "float32", ...).
_TORCH_NAMES = {v: str(v).removeprefix("torch.") for v in _DTYPES.values()}


class PackedFileError(ValueError):
    """A packed file that cannot be trusted: one line naming the file and, where it applies, the tensor."""


@dataclass
class PackedFile:
    """What `load_packed` returns: the packed layers, the other tensors, and the free-form metadata."""

    layers: dict[str, PackedWeight]
    tensors: dict[str, Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)
    layer_attrs: dict[str, dict[str, Any]] = field(default_factory=dict)


def _sha256(t: Tensor) -> str:
    t = t.detach().contiguous().cpu()
    if t.numel() == 0:
        return hashlib.sha256(b"").hexdigest()
    return hashlib.sha256(t.reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()


def save_packed(
    path: "str | Path",
    layers: "dict[str, PackedWeight]",
    tensors: "dict[str, Tensor] | None" = None,
    *,
    metadata: "dict[str, Any] | None" = None,
    layer_attrs: "dict[str, dict[str, Any]] | None" = None,
) -> Path:
    """Write the packed file atomically.

    Args:
        layers: name -> PackedWeight; stored as tensors NAME.packed (uint8) and NAME.scale (float32).
        tensors: other tensors by name (embeddings, norms, biases, ...), any safetensors dtype. Tensors
            sharing storage (tied weights) are stored once, the others recorded as aliases.
        metadata: free-form JSON-able dict stored under "model".
        layer_attrs: name -> JSON-able dict stored with each layer (e.g. its quantization config).
    """
    from safetensors.torch import save_file

    path = Path(path)
    tensors = dict(tensors or {})
    layer_attrs = layer_attrs or {}
    store: dict[str, Tensor] = {}
    layer_meta: dict[str, Any] = {}
    for name, pw in layers.items():
        pname, sname = f"{name}.packed", f"{name}.scale"
        for key in (pname, sname):
            if key in tensors:
                raise ValueError(f"save_packed: tensor name {key!r} clashes with packed layer {name!r}")
        store[pname] = pw.data.contiguous()
        store[sname] = pw.scale.contiguous()
        layer_meta[name] = {
            "format": pw.format,
            "scheme": pw.kind,
            "shape": list(pw.shape),
            "packed_shape": list(pw.data.shape),
            "granularity": pw.granularity,
            "packed": pname,
            "scale": sname,
            "attrs": layer_attrs.get(name, {}),
        }
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for name, t in tensors.items():
        t = t.detach().cpu()
        if t.dtype not in _DTYPE_NAMES:
            raise ValueError(f"save_packed: tensor {name!r} has unsupported dtype {t.dtype}")
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if t.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        store[name] = t.contiguous().clone() if t.untyped_storage().nbytes() != t.numel() * t.element_size() else t.contiguous()
    table = {
        name: {"dtype": _TORCH_NAMES[t.dtype], "shape": list(t.shape), "sha256": _sha256(t)} for name, t in store.items()
    }
    meta = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "layers": layer_meta,
        "tensors": table,
        "aliases": aliases,
        "model": metadata or {},
    }
    text = json.dumps(meta, separators=(",", ":"))
    atomic_write(path, lambda tmp: save_file(store, tmp, metadata={METADATA_KEY: text}))
    return path


def _fail(path: Path, message: str) -> None:
    raise PackedFileError(f"{path}: {message}")


def _read_header(path: Path, data: memoryview) -> tuple[dict, int]:
    if len(data) < 8:
        _fail(path, f"truncated file ({len(data)} bytes; not even a safetensors header length)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > _MAX_HEADER:
        _fail(path, f"not a safetensors file (header length {n})")
    if 8 + n > len(data):
        _fail(path, f"truncated file (header of {n} bytes, file has {len(data)} bytes)")
    try:
        header = json.loads(bytes(data[8 : 8 + n]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        _fail(path, f"corrupt safetensors header ({e})")
    if not isinstance(header, dict):
        _fail(path, "corrupt safetensors header (not a JSON object)")
    return header, 8 + n


def _read_metadata(path: Path, header: dict) -> dict:
    raw = (header.get("__metadata__") or {}).get(METADATA_KEY)
    if raw is None:
        _fail(path, f"not a bitscale packed file (no {METADATA_KEY!r} metadata)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        _fail(path, f"corrupt packed metadata ({e})")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        _fail(path, f"not a bitscale packed file (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    version = meta.get("version")
    if version != FORMAT_VERSION:
        _fail(path, f"unsupported packed format version {version!r} (this bitscale reads version {FORMAT_VERSION})")
    for key, kind in (("layers", dict), ("tensors", dict), ("aliases", dict), ("model", dict)):
        if not isinstance(meta.get(key), kind):
            _fail(path, f"corrupt packed metadata (missing or malformed {key!r})")
    return meta


def _load_tensor(path: Path, name: str, entry: Any, header: dict, data: memoryview, start: int) -> Tensor:
    where = f"tensor {name!r}"
    if not isinstance(entry, dict) or not {"dtype", "shape", "sha256"} <= entry.keys():
        _fail(path, f"{where}: malformed metadata entry")
    info = header.get(name)
    if not isinstance(info, dict):
        _fail(path, f"{where}: missing from the file")
    dtype = _DTYPES.get(info.get("dtype"))
    if dtype is None or _TORCH_NAMES[dtype] != entry["dtype"]:
        _fail(path, f"{where}: dtype {info.get('dtype')} disagrees with metadata ({entry['dtype']})")
    shape = info.get("shape")
    if list(shape or []) != list(entry["shape"]) or not all(isinstance(s, int) and s >= 0 for s in shape):
        _fail(path, f"{where}: shape {shape} disagrees with metadata {entry['shape']}")
    offsets = info.get("data_offsets")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)):
        _fail(path, f"{where}: malformed data offsets")
    begin, end = start + offsets[0], start + offsets[1]
    numel = 1
    for s in shape:
        numel *= s
    itemsize = torch.empty((), dtype=dtype).element_size()
    if end - begin != numel * itemsize or begin < start:
        _fail(path, f"{where}: {end - begin} bytes of data for shape {shape} ({numel * itemsize} expected)")
    if end > len(data):
        _fail(path, f"{where}: truncated (needs bytes up to {end}, file has {len(data)})")
    raw = data[begin:end]
    if hashlib.sha256(raw).hexdigest() != entry["sha256"]:
        _fail(path, f"{where}: checksum mismatch (sha256 of its bytes differs from the metadata): the file is corrupt")
    if numel == 0:
        return torch.empty(shape, dtype=dtype)
    return torch.frombuffer(bytearray(raw), dtype=dtype).reshape(shape)


def _check_layer(path: Path, name: str, entry: Any, tensors: dict[str, Tensor]) -> PackedWeight:
    where = f"layer {name!r}"
    needed = {"format", "scheme", "shape", "packed_shape", "granularity", "packed", "scale"}
    if not isinstance(entry, dict) or not needed <= entry.keys():
        _fail(path, f"{where}: malformed metadata entry")
    fmt = entry["format"]
    if fmt not in FORMATS:
        _fail(path, f"{where}: unknown packed format {fmt!r}")
    if entry["scheme"] != KIND[fmt]:
        _fail(path, f"{where}: scheme {entry['scheme']!r} does not match format {fmt!r}")
    shape = entry["shape"]
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(s, int) and s >= 1 for s in shape)):
        _fail(path, f"{where}: bad shape {shape}")
    expected = list(packed_shape(tuple(shape), fmt))
    if entry["packed_shape"] != expected:
        _fail(path, f"{where}: packed_shape {entry['packed_shape']} disagrees with shape {shape} in format {fmt!r} ({expected})")
    data = tensors.get(entry["packed"])
    if data is None:
        _fail(path, f"{where}: missing tensor {entry['packed']!r}")
    if data.dtype != torch.uint8 or list(data.shape) != expected:
        _fail(path, f"tensor {entry['packed']!r}: {data.dtype} {list(data.shape)} disagrees with layer metadata (uint8 {expected})")
    scale = tensors.get(entry["scale"])
    if scale is None:
        _fail(path, f"{where}: missing tensor {entry['scale']!r}")
    gran = entry["granularity"]
    if gran not in ("tensor", "channel"):
        _fail(path, f"{where}: unknown scale granularity {gran!r}")
    want = [] if gran == "tensor" else [shape[0]]
    if scale.dtype != SCALE_DTYPE or list(scale.shape) != want or scale.numel() != scale_numel(shape[0], gran):
        _fail(path, f"tensor {entry['scale']!r}: {scale.dtype} {list(scale.shape)} disagrees with granularity {gran!r} (float32 {want})")
    if not bool(torch.isfinite(scale).all()):
        _fail(path, f"tensor {entry['scale']!r}: non-finite scale")
    try:
        unpack_codes(data, fmt, shape[1])  # rejects bytes no codes pack to
    except ValueError as e:
        _fail(path, f"tensor {entry['packed']!r}: {e}")
    pw = PackedWeight(data, (shape[0], shape[1]), scale, fmt)
    granularity_of(pw.scale, shape[0])
    return pw


def load_packed(path: "str | Path") -> PackedFile:
    """Read and verify a packed file (see the module docstring); raises PackedFileError (one line, naming
    the tensor) on a missing file, a truncated file or tensor, an unknown version, a checksum mismatch,
    shapes that disagree with the metadata, or a missing or unexpected tensor."""
    path = Path(path)
    if not path.is_file():
        raise PackedFileError(f"{path}: no such file")
    data = memoryview(path.read_bytes())
    header, start = _read_header(path, data)
    meta = _read_metadata(path, header)
    table = meta["tensors"]
    for name in header:
        if name != "__metadata__" and name not in table:
            _fail(path, f"tensor {name!r}: in the file but not in the metadata")
    raw = {name: _load_tensor(path, name, entry, header, data, start) for name, entry in table.items()}
    layers: dict[str, PackedWeight] = {}
    attrs: dict[str, dict] = {}
    claimed: set[str] = set()
    for name, entry in meta["layers"].items():
        layers[name] = _check_layer(path, name, entry, raw)
        attrs[name] = entry.get("attrs") or {}
        claimed.update((entry["packed"], entry["scale"]))
    tensors = {name: t for name, t in raw.items() if name not in claimed}
    for alias, target in meta["aliases"].items():
        if target not in tensors:
            _fail(path, f"tensor {alias!r}: alias of missing tensor {target!r}")
        tensors[alias] = tensors[target]
    return PackedFile(layers, tensors, meta["model"], attrs)


def file_metadata(path: "str | Path") -> dict:
    """The packed metadata JSON of a file (header only, no tensor read or checked)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            _fail(path, "truncated file")
        (n,) = struct.unpack("<Q", head)
        if n > _MAX_HEADER:
            _fail(path, f"not a safetensors file (header length {n})")
        body = f.read(n)
    header, _ = _read_header(path, memoryview(head + body))
    return _read_metadata(path, header)


__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "PackedFile", "PackedFileError", "file_metadata", "load_packed", "save_packed"]
