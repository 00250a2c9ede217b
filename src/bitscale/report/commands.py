"""The exact commands that reproduce a report, rebuilt from the store.

The sweeps table holds each sweep's config as `bitscale sweep` parsed it (defaults filled in), not the
path of its file. `sweep_toml` writes that config back as a sweep file: loading it with
`bitscale.sweep.spec.load_sweep` gives the same runs (same ids), so `bitscale sweep <it> --store STORE`
re-runs (or, on the same store, skips) exactly the stored runs. The report writes it beside
report.html as `<sweep>.toml`.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from ..sweep.sweep_file import sweep_file_text


def sweep_toml(config: dict[str, Any]) -> str:
    """The stored sweep config as a sweep file (TOML)."""
    return sweep_file_text(config, header="rebuilt by `bitscale report` from the sweeps table of the store (defaults filled in)")


def quote(x: Any) -> str:
    return shlex.quote(str(x))


def sweep_command(store: Path, toml_path: Path) -> str:
    return f"bitscale sweep {quote(toml_path)} --store {quote(store)}"


def compare_command(store: Path, sweep: str, by: str, size: str, reference: str) -> str:
    return (f"bitscale compare --store {quote(store)} --sweep {quote(sweep)} --by {quote(by)} "
            f"--size {quote(size)} --reference {quote(reference)}")


def fit_command(store: Path, sweep: str, law: str, joint: bool, by: str, n_column: str, bootstrap: int) -> str:
    parts = [f"bitscale fit --law {quote(law)} --store {quote(store)} --sweep {quote(sweep)}"]
    if not joint:
        parts.append(f"--by {quote(by)}")
    parts.append(f"--columns {quote('N=' + n_column)}")
    if bootstrap:
        parts.append(f"--bootstrap {bootstrap}")
    return " ".join(parts)


def report_command(store: Path, out: Path, options: dict[str, Any]) -> str:
    parts = [f"bitscale report --store {quote(store)} --out {quote(out)}"]
    for flag, value in options.items():
        for v in (value if isinstance(value, list) else [value]):  # a repeatable option: once per value
            if v is not None:
                parts.append(f"--{flag.replace('_', '-')} {quote(v)}")
    return " ".join(parts)
