"""Output paths are checked before any work: links, devices and FIFOs are refused, and a command never
writes over one of its own inputs."""

from __future__ import annotations

import os

from tests.test_cli import GOOD, bitscale


def test_train_out_onto_a_file_or_a_link_is_refused_before_training(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(GOOD.replace("steps = 40", "steps = 100000000"))  # would take hours if it trained
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for out, what in ((fifo, "a FIFO"), (config, "a regular file")):
        proc = bitscale("train", str(config), "--out", str(out))
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and what in proc.stderr and "Traceback" not in proc.stderr
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    proc = bitscale("train", str(config), "--out", str(link))
    assert proc.returncode == 2 and "symbolic link" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "link", "run.toml"]


def test_pack_refuses_to_overwrite_its_own_run(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(GOOD.replace('quant = "paper-1bit"', 'quant = "bitnet-b1.58"'))
    run = tmp_path / "run"
    assert bitscale("train", str(config), "--out", str(run)).returncode == 0
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    proc = bitscale("pack", str(run), str(run / "model.safetensors"))
    assert proc.returncode == 2 and "is also an input" in proc.stderr and "\n" not in proc.stderr.strip()
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    proc = bitscale("pack", str(run), str(tmp_path / "dev-null-link"))
    assert proc.returncode == 0, proc.stderr  # a new name is fine


def test_an_output_directory_that_is_a_device_is_refused(tmp_path):
    config = tmp_path / "theory.toml"
    config.write_text("")  # every field optional
    proc = bitscale("theory", str(config), "--out", "/dev/null")
    assert proc.returncode == 2 and "character device" in proc.stderr and "Traceback" not in proc.stderr
