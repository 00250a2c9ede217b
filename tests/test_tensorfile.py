"""Verified tensor files: a flipped bit, a truncation or a malformed header is one line naming the file (and
the tensor); a file without checksums loads with one warning."""

from __future__ import annotations

import json
import struct
import warnings

import pytest
import torch
from safetensors.torch import load_file, save_file

from bitscale.tensorfile import (
    CHECKSUM_KEY,
    DamagedFileError,
    UncheckedFileWarning,
    load_tensors,
    read_header,
    save_tensors,
)


def tensors():
    g = torch.Generator().manual_seed(0)
    return {
        "w": torch.randn(3, 4, generator=g),
        "b": torch.randn(4, generator=g).to(torch.bfloat16),
        "step": torch.tensor(7),
        "mask": torch.tensor([True, False, True]),
        "codes": torch.randint(0, 255, (5,), generator=g, dtype=torch.uint8),
        "empty": torch.zeros(0, 2),
    }


def split(path):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), 8 + n, data


def one_line_error(path, match):
    with pytest.raises(DamagedFileError, match=match) as err:
        load_tensors(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "t.safetensors"
    save_tensors(path, tensors(), {"note": "hello"})
    return path


def test_round_trip_keeps_values_dtypes_and_metadata(saved):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a checksummed file loads without a warning
        got, meta = load_tensors(saved)
    for name, t in tensors().items():
        assert got[name].dtype == t.dtype and torch.equal(got[name], t), name
    assert meta["note"] == "hello" and CHECKSUM_KEY in meta
    assert set(json.loads(meta[CHECKSUM_KEY])) == set(tensors()) | {"__metadata__"}
    assert set(load_file(saved)) == set(tensors())  # a standard safetensors file
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]  # atomic: no temp file left


@pytest.mark.parametrize("name", ["w", "b", "step", "mask", "codes"])
def test_a_flipped_bit_in_any_tensor_is_refused_naming_it(saved, name):
    header, start, data = split(saved)
    begin = start + header[name]["data_offsets"][0]
    data = bytearray(data)
    data[begin] ^= 0x10
    saved.write_bytes(bytes(data))
    one_line_error(saved, rf"tensor '{name}': checksum mismatch .*the file is damaged")


def test_a_changed_metadata_value_is_refused(saved):
    data = saved.read_bytes().replace(b'"hello"', b'"jello"')
    saved.write_bytes(data)
    one_line_error(saved, "metadata: checksum mismatch")


@pytest.mark.parametrize("cut", [1, 100, "header", 5])
def test_a_truncated_file_is_one_line_not_a_safetensor_error(saved, cut):
    header, start, data = split(saved)
    keep = {1: len(data) - 1, 100: len(data) - 100, "header": start - 10, 5: 5}[cut]
    saved.write_bytes(data[:keep])
    one_line_error(saved, "truncated")


def test_trailing_bytes_and_a_bad_header_are_refused(saved, tmp_path):
    saved.write_bytes(saved.read_bytes() + b"\0\0\0")
    one_line_error(saved, "3 bytes after the last tensor")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(struct.pack("<Q", 9) + b"{not json")
    one_line_error(bad, "corrupt safetensors header")
    bad.write_bytes(struct.pack("<Q", 2) + b"[]")
    one_line_error(bad, "not a JSON object")


def test_a_header_whose_shape_disagrees_with_its_bytes_is_refused(tmp_path):
    path = tmp_path / "x.safetensors"
    save_tensors(path, {"w": torch.zeros(2, 3)})
    header, start, data = split(path)
    header["w"]["shape"] = [2, 4]
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + data[start:])
    one_line_error(path, r"tensor 'w': 24 bytes of data for F32 \[2, 4\] \(32 expected\)")


def test_a_legacy_file_without_checksums_loads_with_one_warning(tmp_path):
    path = tmp_path / "legacy.safetensors"
    save_file({"w": torch.ones(2, 2)}, str(path), metadata={"format": "pt"})
    with pytest.warns(UncheckedFileWarning, match="has no checksums") as record:
        got, meta = load_tensors(path)
    assert len(record) == 1 and str(path) in str(record[0].message)
    assert torch.equal(got["w"], torch.ones(2, 2)) and meta == {"format": "pt"}
    # the structural checks still apply to it
    path.write_bytes(path.read_bytes()[:-2])
    one_line_error(path, "tensor 'w': truncated")


def test_read_header_reads_no_data(saved):
    header = read_header(saved)
    assert set(header.tensors) == set(tensors())
    assert header.tensors["w"].shape == (3, 4) and header.tensors["w"].dtype == torch.float32
    assert header.metadata["note"] == "hello"


def test_the_file_gets_the_mode_of_a_normal_file(tmp_path):
    import os

    path = save_tensors(tmp_path / "x.safetensors", {"w": torch.zeros(1)})
    plain = tmp_path / "plain"
    plain.write_text("")
    assert os.stat(path).st_mode == os.stat(plain).st_mode  # not safetensors' 0600


def test_metadata_must_be_strings(tmp_path):
    with pytest.raises(ValueError, match="strings"):
        save_tensors(tmp_path / "x.safetensors", {"w": torch.zeros(1)}, {"n": 3})


def test_tensors_that_share_memory_are_written_as_copies(tmp_path):
    # Tied weights (a decoder's embedding and head) are one tensor under two names; safetensors refuses them.
    shared = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    path = save_tensors(tmp_path / "tied.safetensors", {"emb": shared, "head": shared, "row": shared[1]})
    tensors, _ = load_tensors(path)
    assert torch.equal(tensors["emb"], shared) and torch.equal(tensors["head"], shared)
    assert torch.equal(tensors["row"], shared[1])
    assert shared.untyped_storage().data_ptr() == shared[1].untyped_storage().data_ptr()  # inputs untouched


def test_a_fifo_in_place_of_a_tensor_file_is_refused_without_blocking(tmp_path):
    import os

    fifo = tmp_path / "state.safetensors"
    os.mkfifo(fifo)  # a plain open() would wait for a writer forever
    with pytest.raises(DamagedFileError, match="is a FIFO, not a tensor file"):
        load_tensors(fifo)
