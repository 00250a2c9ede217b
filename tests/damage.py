"""Damaging files on purpose: where each tensor's bytes start in a safetensors file, flipped bits, cuts."""

from __future__ import annotations

import json
import struct
from pathlib import Path


def tensor_offsets(path: Path) -> dict[str, int]:
    """File offset of the first data byte of every non-empty tensor of a safetensors file."""
    data = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    return {k: 8 + n + v["data_offsets"][0] for k, v in header.items()
            if k != "__metadata__" and v["data_offsets"][1] > v["data_offsets"][0]}


def flip(path: Path, offset: int, mask: int = 0x01) -> None:
    """XOR the byte at `offset` with `mask` (0x80 turns an ASCII byte into invalid UTF-8)."""
    data = bytearray(Path(path).read_bytes())
    data[offset] ^= mask
    Path(path).write_bytes(bytes(data))


def truncate(path: Path, size: int) -> None:
    with open(path, "r+b") as f:
        f.truncate(size)
