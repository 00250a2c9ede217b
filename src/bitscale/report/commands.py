"""The exact commands that reproduce a report, rebuilt from the store.

The sweeps table holds each sweep's config as `bitscale sweep` parsed it (defaults filled in), not the
path of its file. `sweep_toml` writes that config back as a sweep file: loading it with
`bitscale.sweep.spec.load_sweep` gives the same runs (same ids), so `bitscale sweep <it> --store STORE`
re-runs (or, on the same store, skips) exactly the stored runs. The report writes it beside
report.html as `<sweep>.toml`.
"""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path
from typing import Any


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        if not any(x is not None for x in v.values()):
            return "{}"
        return "{ " + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items() if x is not None) + " }"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else json.dumps(k)


def _table(name: str, data: dict[str, Any], lines: list[str]) -> None:
    """[name] with scalars first, then one [name.sub] per nested table (None values are left out: TOML
    has no null, and the loader fills the default, which is what None was)."""
    scalars = {k: v for k, v in data.items() if v is not None and not (isinstance(v, dict) and v)}
    lines.append(f"[{name}]")
    lines.extend(f"{_key(k)} = {_value(v)}" for k, v in scalars.items())
    for k, v in data.items():
        if isinstance(v, dict) and v:
            lines.append("")
            _table(f"{name}.{_key(k)}", v, lines)


def sweep_toml(config: dict[str, Any]) -> str:
    """The stored sweep config as a sweep file (TOML)."""
    lines = ["# rebuilt by `bitscale report` from the sweeps table of the store (defaults filled in)"]
    for key in ("name", "description", "kind", "checkpoint_every", "compile", "tokens_per_param", "isoflop"):
        if config.get(key) is not None:
            lines.append(f"{key} = {_value(config[key])}")
    lines.append("")
    _table("base", config.get("base", {}), lines)
    if config.get("grid"):
        lines += ["", "[grid]"] + [f"{_key(k)} = {_value(v)}" for k, v in config["grid"].items()]
    zips = config.get("zip") or []
    for z in [zips] if isinstance(zips, dict) else zips:
        lines += ["", "[[zip]]"] + [f"{_key(k)} = {_value(v)}" for k, v in z.items()]
    return "\n".join(lines) + "\n"


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
        if value is not None:
            parts.append(f"--{flag} {quote(value)}")
    return " ".join(parts)
