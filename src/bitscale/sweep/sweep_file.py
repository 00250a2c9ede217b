"""Writing a sweep file: a sweep config (as `bitscale sweep` parsed it, or a dict of that shape) as TOML.

The one TOML writer of bitscale: the report rebuilds stored sweeps with it and the demo writes its sweep
files with it. It writes the subset sweep files use (scalars, arrays, inline and nested tables, arrays of
tables); None values are left out, since TOML has no null and the loader fills the default, which is what
None was. Loading the text with `bitscale.sweep.spec.load_sweep` gives the same runs (same ids).
"""

from __future__ import annotations

import json
import math
from typing import Any

from .spec import SweepFile

# The top-level settings of a sweep file, in SweepFile's order (the tables are written after them).
SETTINGS = tuple(name for name in SweepFile.model_fields if name not in ("base", "grid", "zip"))


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


def sweep_file_text(config: dict[str, Any], *, header: str | None = None) -> str:
    """A sweep config (a `SweepFile` dumped to JSON types, or a dict of the same shape) as a sweep file:
    the top-level settings, [base] with one sub-table per nested table, [grid] and each [[zip]]."""
    lines = [f"# {header}"] if header else []
    for key in SETTINGS:
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
