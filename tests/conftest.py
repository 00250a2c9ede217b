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
