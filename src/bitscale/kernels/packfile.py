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

`load_packed` reads the file through `bitscale.tensorfile` (not the safetensors library, which has no
per-tensor checksum) so that every byte is checked before a tensor is built: the header and each
tensor's extent (`read_header`), the version, every tensor's presence, dtype and shape against this
metadata, the checksums (`read_tensors`, with the `sha256` of this metadata), and every layer's shapes
against its format. Any failure raises `PackedFileError`, one line that names the file and the tensor.
Nothing is built from a file that fails a check.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..atomic import atomic_write
from ..tensorfile import DTYPES, DamagedFileError, Header, read_header, read_tensors, tensor_sha256
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

_SUPPORTED = set(DTYPES.values())
# Metadata names the dtypes the torch way ("uint8", "float32", ...).
_TORCH_NAMES = {v: str(v).removeprefix("torch.") for v in DTYPES.values()}


class PackedFileError(ValueError):
    """A packed file that cannot be trusted: one line naming the file and, where it applies, the tensor."""


@dataclass
class PackedFile:
    """What `load_packed` returns: the packed layers, the other tensors, and the free-form metadata."""

    layers: dict[str, PackedWeight]
    tensors: dict[str, Tensor]
    metadata: dict[str, Any] = field(default_factory=dict)
    layer_attrs: dict[str, dict[str, Any]] = field(default_factory=dict)


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
        if t.dtype not in _SUPPORTED:
            raise ValueError(f"save_packed: tensor {name!r} has unsupported dtype {t.dtype}")
        key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if t.numel() and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        store[name] = t.contiguous().clone() if t.untyped_storage().nbytes() != t.numel() * t.element_size() else t.contiguous()
    table = {
        name: {"dtype": _TORCH_NAMES[t.dtype], "shape": list(t.shape), "sha256": tensor_sha256(t)} for name, t in store.items()
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


def _header(path: Path) -> Header:
    try:
        return read_header(path)
    except DamagedFileError as e:
        raise PackedFileError(str(e)) from None


def _read_metadata(path: Path, header: Header) -> dict:
    raw = header.metadata.get(METADATA_KEY)
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


def _check_entry(path: Path, name: str, entry: Any, header: Header) -> None:
    """A tensor of the metadata against the file's header: present, with the dtype and shape it lists."""
    where = f"tensor {name!r}"
    if not isinstance(entry, dict) or not {"dtype", "shape", "sha256"} <= entry.keys():
        _fail(path, f"{where}: malformed metadata entry")
    info = header.tensors.get(name)
    if info is None:
        _fail(path, f"{where}: missing from the file")
    if _TORCH_NAMES[info.dtype] != entry["dtype"]:
        _fail(path, f"{where}: dtype {_TORCH_NAMES[info.dtype]} disagrees with metadata ({entry['dtype']})")
    if list(info.shape) != list(entry["shape"]):
        _fail(path, f"{where}: shape {list(info.shape)} disagrees with metadata {entry['shape']}")


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
    header = _header(path)
    meta = _read_metadata(path, header)
    table = meta["tensors"]
    for name in header.tensors:
        if name not in table:
            _fail(path, f"tensor {name!r}: in the file but not in the metadata")
    for name, entry in table.items():
        _check_entry(path, name, entry, header)
    try:
        raw = read_tensors(header, {name: entry["sha256"] for name, entry in table.items()})
    except DamagedFileError as e:
        raise PackedFileError(str(e)) from None
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
    """The packed metadata JSON of a file (its header and tensor extents checked, no tensor read)."""
    path = Path(path)
    return _read_metadata(path, _header(path))


__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "PackedFile", "PackedFileError", "file_metadata", "load_packed", "save_packed"]
