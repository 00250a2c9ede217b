import sys

import pytest


@pytest.fixture
def cli(capsys, monkeypatch):
    """The `bitscale` entry point run in this process (fast): returns (exit code, stdout, stderr)."""
    from bitscale.cli import main

    def invoke(*args):
        monkeypatch.setattr(sys, "argv", ["bitscale", *map(str, args)])
        with pytest.raises(SystemExit) as exit_:
            main()
        out, err = capsys.readouterr()
        return exit_.value.code or 0, out, err

    return invoke


def train_sweeps(store, *sweep_texts):
    """Write each sweep file (TOML text) beside `store` and train it into the store with the serial
    executor; returns the store. The tiny real sweeps of the study command and report tests."""
    from bitscale.sweep.executors import SerialExecutor
    from bitscale.sweep.runner import run_sweep
    from bitscale.sweep.spec import load_sweep

    for i, text in enumerate(sweep_texts):
        path = store.parent / f"sweep-{i}.toml"
        path.write_text(text)
        run_sweep(*load_sweep(path), store, SerialExecutor())
    return store
