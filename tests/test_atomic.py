"""bitscale.atomic: a write replaces only a regular file or creates a new name, and never an input."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bitscale.atomic import UnsafeTargetError, atomic_write_json, check_directory_target, check_output, check_target


def test_a_new_name_and_a_regular_file_are_written(tmp_path):
    new = tmp_path / "sub" / "new.json"
    atomic_write_json(new, {"a": 1})
    assert new.read_text() == '{\n  "a": 1\n}\n'
    atomic_write_json(new, {"a": 2})  # an existing regular file is replaced
    assert '"a": 2' in new.read_text()
    assert [p.name for p in new.parent.iterdir()] == ["new.json"]  # no temp file left


def test_a_symlink_is_refused_and_left_alone(tmp_path):
    target = tmp_path / "real.json"
    target.write_text("keep")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    with pytest.raises(UnsafeTargetError, match="is a symbolic link") as err:
        atomic_write_json(link, {"a": 1})
    assert "\n" not in str(err.value) and str(link) in str(err.value)
    assert link.is_symlink() and target.read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.json", "real.json"]
    atomic_write_json(target, {"a": 1})  # the file the link names is a regular file: allowed
    assert link.read_text().startswith("{")


@pytest.mark.parametrize("make, what", [
    (lambda p: p.mkdir(), "a directory"),
    (lambda p: os.mkfifo(p), "a FIFO"),
])
def test_directories_and_fifos_are_refused(tmp_path, make, what):
    path = tmp_path / "target"
    make(path)
    with pytest.raises(UnsafeTargetError, match=what):
        atomic_write_json(path, {})
    assert not path.is_file()


def test_a_device_is_refused():
    with pytest.raises(UnsafeTargetError, match="a character device"):
        check_target("/dev/null")


def test_a_path_below_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UnsafeTargetError, match="not a directory"):
        check_target(tmp_path / "file" / "child.json")


def test_directory_targets(tmp_path):
    assert check_directory_target(tmp_path) == tmp_path
    assert check_directory_target(tmp_path / "new") == tmp_path / "new"
    (tmp_path / "f").write_text("x")
    with pytest.raises(UnsafeTargetError, match="expected a directory"):
        check_directory_target(tmp_path / "f")
    (tmp_path / "dirlink").symlink_to(tmp_path)
    with pytest.raises(UnsafeTargetError, match="symbolic link"):
        check_directory_target(tmp_path / "dirlink")


def test_an_output_that_is_an_input_is_refused_also_through_a_hard_link(tmp_path):
    source = tmp_path / "model.safetensors"
    source.write_bytes(b"weights")
    with pytest.raises(UnsafeTargetError, match="is also an input"):
        check_output(source, inputs=[source, tmp_path / "missing.json"])
    hard = tmp_path / "other-name"
    os.link(source, hard)
    with pytest.raises(UnsafeTargetError, match="is also an input"):
        check_output(hard, inputs=[source])
    assert check_output(tmp_path / "out.bin", inputs=[source]) == Path(tmp_path / "out.bin")
    assert source.read_bytes() == b"weights"


def test_a_directory_target_below_a_file_is_refused_in_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UnsafeTargetError, match="a parent of this path is not a directory"):
        check_directory_target(tmp_path / "file" / "out")
