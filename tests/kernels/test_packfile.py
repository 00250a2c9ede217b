"""The packed file: round trip, and a one-line error naming the tensor for every kind of bad file."""

import json
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from bitscale.kernels.formats import pack_weight
from bitscale.kernels.packfile import METADATA_KEY, PackedFileError, file_metadata, load_packed, save_packed


def make_layers():
    gen = torch.Generator().manual_seed(0)
    tern = (torch.randint(0, 3, (3, 7), generator=gen) - 1).to(torch.int8)
    binc = (torch.randint(0, 2, (2, 33), generator=gen) * 2 - 1).to(torch.int8)
    return {
        "a.q": pack_weight(tern, torch.tensor(0.25), "ternary-b3"),
        "a.k": pack_weight(tern, torch.tensor(0.5), "ternary2"),
        "b": pack_weight(binc, torch.tensor([0.1, 0.2]), "binary"),
    }


@pytest.fixture
def packed_file(tmp_path):
    emb = torch.randn(5, 4)
    tensors = {"emb.weight": emb, "head.weight": emb, "norm.weight": torch.ones(4), "step": torch.tensor(3)}
    path = tmp_path / "m.packed.safetensors"
    save_packed(path, make_layers(), tensors, metadata={"kind": "test"}, layer_attrs={"b": {"act": "binary"}})
    return path, tensors


def read_raw(path):
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def write_raw(path, header, body):
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text)) + text + body)


def edit_metadata(path, edit):
    header, body = read_raw(path)
    meta = json.loads(header["__metadata__"][METADATA_KEY])
    edit(meta, header)
    header["__metadata__"][METADATA_KEY] = json.dumps(meta)
    write_raw(path, header, body)


def test_round_trip(packed_file):
    path, tensors = packed_file
    pf = load_packed(path)
    for name, pw in make_layers().items():
        got = pf.layers[name]
        assert got.format == pw.format and got.shape == pw.shape
        assert torch.equal(got.data, pw.data) and torch.equal(got.scale, pw.scale)
    for name, t in tensors.items():
        assert torch.equal(pf.tensors[name], t)
    assert pf.metadata == {"kind": "test"} and pf.layer_attrs["b"] == {"act": "binary"}
    meta = file_metadata(path)
    assert meta["aliases"] == {"head.weight": "emb.weight"}  # tied tensors stored once
    assert meta["layers"]["a.q"]["packed_shape"] == [3, 2] and meta["layers"]["b"]["granularity"] == "channel"
    assert len(meta["tensors"]["a.q.packed"]["sha256"]) == 64
    # a standard safetensors file
    assert set(load_file(path)) == {"a.q.packed", "a.q.scale", "a.k.packed", "a.k.scale", "b.packed", "b.scale", "emb.weight", "norm.weight", "step"}


def test_corrupt_bytes_fail_the_checksum(packed_file):
    path, _ = packed_file
    header, body = read_raw(path)
    begin = header["b.packed"]["data_offsets"][0]
    body = bytearray(body)
    body[begin] ^= 0x01
    write_raw(path, header, bytes(body))
    with pytest.raises(PackedFileError, match=r"tensor 'b\.packed': checksum mismatch") as e:
        load_packed(path)
    assert "\n" not in str(e.value)


def test_unknown_version(packed_file):
    path, _ = packed_file
    edit_metadata(path, lambda meta, header: meta.update(version=99))
    with pytest.raises(PackedFileError, match="unsupported packed format version 99"):
        load_packed(path)


def test_truncated_file(packed_file):
    path, _ = packed_file
    data = path.read_bytes()
    header, _ = read_raw(path)
    last = max((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][1])
    path.write_bytes(data[:-3])
    with pytest.raises(PackedFileError, match=rf"tensor '{last}': truncated"):
        load_packed(path)
    path.write_bytes(data[:20])
    with pytest.raises(PackedFileError, match="truncated file"):
        load_packed(path)
    path.write_bytes(data[:5])
    with pytest.raises(PackedFileError, match="truncated file"):
        load_packed(path)


def test_shape_disagrees_with_metadata(packed_file):
    path, _ = packed_file

    def edit(meta, header):
        meta["tensors"]["a.q.packed"]["shape"] = [3, 3]

    edit_metadata(path, edit)
    with pytest.raises(PackedFileError, match=r"tensor 'a\.q\.packed': shape \[3, 2\] disagrees with metadata \[3, 3\]"):
        load_packed(path)


def test_layer_shape_disagrees_with_packed_shape(packed_file):
    path, _ = packed_file
    edit_metadata(path, lambda meta, header: meta["layers"]["a.k"].update(shape=[3, 9]))
    with pytest.raises(PackedFileError, match=r"layer 'a\.k': packed_shape \[3, 2\] disagrees with shape \[3, 9\]"):
        load_packed(path)


def test_scale_shape_disagrees_with_granularity(packed_file):
    path, _ = packed_file
    edit_metadata(path, lambda meta, header: meta["layers"]["b"].update(granularity="tensor"))
    with pytest.raises(PackedFileError, match=r"tensor 'b\.scale'.*granularity 'tensor'"):
        load_packed(path)


def test_missing_tensor(packed_file):
    path, _ = packed_file
    tensors = load_file(path)
    meta = file_metadata(path)
    del tensors["a.k.scale"]
    save_file(tensors, path, metadata={METADATA_KEY: json.dumps(meta)})
    with pytest.raises(PackedFileError, match=r"tensor 'a\.k\.scale': missing from the file"):
        load_packed(path)


def test_tensor_not_in_metadata(packed_file):
    path, _ = packed_file
    tensors = load_file(path)
    meta = file_metadata(path)
    tensors["extra"] = torch.zeros(2)
    save_file(tensors, path, metadata={METADATA_KEY: json.dumps(meta)})
    with pytest.raises(PackedFileError, match=r"tensor 'extra': in the file but not in the metadata"):
        load_packed(path)


def test_invalid_packed_bytes_with_a_matching_checksum(packed_file, tmp_path):
    pw = make_layers()["a.q"]
    pw.data[0, 0] = 250  # no ternary-b3 codes pack to 250
    path = tmp_path / "bad.safetensors"
    save_packed(path, {"a.q": pw})
    with pytest.raises(PackedFileError, match=r"tensor 'a\.q\.packed': .*242"):
        load_packed(path)


def test_not_a_packed_file(tmp_path):
    with pytest.raises(PackedFileError, match="no such file"):
        load_packed(tmp_path / "nope")
    path = tmp_path / "plain.safetensors"
    save_file({"x": torch.zeros(2)}, path)
    with pytest.raises(PackedFileError, match="not a bitscale packed file"):
        load_packed(path)
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(PackedFileError, match="corrupt safetensors header"):
        load_packed(path)


def test_save_is_atomic_and_leaves_no_temporary_files(packed_file):
    path, _ = packed_file
    assert [p.name for p in path.parent.iterdir()] == [path.name]
