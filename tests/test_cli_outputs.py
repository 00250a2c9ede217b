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


def test_fit_compare_and_export_check_their_outputs_before_any_work(tmp_path, capsys, monkeypatch):
    from tests.test_fuzz import assert_refused

    monkeypatch.chdir(tmp_path)
    points = tmp_path / "points.csv"
    points.write_text("N,loss\n1e3,3.0\n1e4,2.0\n1e5,1.5\n1e6,1.25\n")
    (tmp_path / "link.png").symlink_to(tmp_path / "elsewhere.png")
    fit = ["fit", "--law", "power_N", "--csv", str(points), "--columns", "N=N,loss=loss"]
    assert_refused([*fit, "--plot", str(tmp_path / "link.png")], tmp_path, capsys, "fit --plot onto a link")
    assert_refused([*fit, "--plot", str(points)], tmp_path, capsys, "fit --plot onto its own CSV")
    assert_refused([*fit, "--plot", "/dev/null"], tmp_path, capsys, "fit --plot onto a device")
    store = tmp_path / "store.db"
    store.write_bytes(b"")
    assert_refused(["runs", "export", "--store", str(store), "--out", str(store)], tmp_path, capsys,
                   "export onto its own store")


def test_a_sweep_with_a_run_too_large_for_memory_is_refused_before_the_store_exists(tmp_path, capsys, monkeypatch):
    from tests.test_fuzz import assert_refused

    monkeypatch.chdir(tmp_path)
    sweep = tmp_path / "big.toml"
    sweep.write_text("[base]\nmodel = { width = 16000000 }\ntask = { d = 4096, n_train = 100000 }\n"
                     "[grid]\nseed = [0, 1]\n")
    assert_refused(["sweep", str(sweep), "--store", str(tmp_path / "s.db")], tmp_path, capsys, "huge sweep")
    assert not (tmp_path / "s.db").exists()


def test_the_torchrun_entry_reports_a_bad_config_in_one_line(tmp_path):
    import subprocess
    import sys

    config = tmp_path / "bad.toml"
    config.write_text("[train]\nsteps = true\n")
    proc = subprocess.run([sys.executable, "-m", "bitscale.train.lm", str(config)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {config}: train.steps: Input should be a valid integer (got True)"
