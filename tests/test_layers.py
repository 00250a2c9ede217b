"""The layer order of docs/architecture.md, checked on the source: no module imports a layer above its own.

Every `import bitscale.X`, `from bitscale.X import ...`, relative import and
`importlib.import_module("bitscale.X...")` in src/bitscale counts, wherever it sits (inside functions too).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "bitscale"


def layer_order() -> list[str]:
    """The `Layer order` line of docs/architecture.md: names from lowest to highest, joined by '<'."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    match = re.search(r"^Layer order, lowest first: `([^`]+)`", text, re.MULTILINE)
    assert match, "docs/architecture.md has no 'Layer order, lowest first: `a < b < ...`' line"
    return [name.strip() for name in match.group(1).split("<")]


def _layer_of(relative: Path) -> str:
    return relative.parts[0].removesuffix(".py")


def imported_layers(source: str, relative: Path) -> list[tuple[int, str]]:
    """(line, top-level bitscale layer) of every bitscale import in the source of src/bitscale/`relative`,
    in line order."""
    found = []
    for node in ast.walk(ast.parse(source, str(relative))):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(relative.parts[:-1])
                base = base[: len(base) - (node.level - 1)]
                names.append(".".join(base + ([node.module] if node.module else [])))
                if not base and not node.module:  # `from .. import x`: x is a layer
                    names = [alias.name for alias in node.names]
            elif node.module and (node.module == "bitscale" or node.module.startswith("bitscale.")):
                rest = node.module.removeprefix("bitscale").lstrip(".")
                names += [rest] if rest else [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            names += [a.name.removeprefix("bitscale.") for a in node.names if a.name.startswith("bitscale.")]
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and str(node.args[0].value).startswith("bitscale.")):
            names.append(str(node.args[0].value).removeprefix("bitscale."))
        found += [(node.lineno, name.split(".")[0]) for name in names if name]
    return sorted(found)


def test_the_layer_order_names_every_package():
    order = layer_order()
    layers = {_layer_of(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")} - {"__init__", "__main__"}
    assert set(order) == layers, f"in the source but not the order: {layers - set(order)}; in the order only: {set(order) - layers}"


def test_no_module_imports_a_layer_above_its_own():
    order = layer_order()
    rank = {name: i for i, name in enumerate(order)}
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        own = _layer_of(relative)
        if own in ("__init__", "__main__"):  # the package root re-exports; it is above every layer
            continue
        for line, layer in imported_layers(path.read_text(), relative):
            if layer in rank and rank[layer] > rank[own]:
                upward.append(f"{relative}:{line} ({own}) imports {layer}")
    assert not upward, "imports that run up the layer order of docs/architecture.md:\n" + "\n".join(upward)


def test_the_checker_sees_relative_function_level_and_importlib_imports():
    source = ("def f():\n    from ..train import lm\n    import importlib\n"
              "    importlib.import_module('bitscale.sweep.store')\nfrom .bitlinear import BitLinear\n"
              "from bitscale import models\nimport bitscale.laws.fit\nfrom .. import report\n")
    assert imported_layers(source, Path("nn/probe.py")) == [
        (2, "train"), (4, "sweep"), (5, "nn"), (6, "models"), (7, "laws"), (8, "report")]


def test_no_module_imports_another_packages_private_names():
    """`from <another package> import _name` reaches into that package's internals: make it public."""
    private = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        own = _layer_of(relative)
        for node in ast.walk(ast.parse(path.read_text(), str(relative))):
            if not isinstance(node, ast.ImportFrom):
                continue
            lines = imported_layers(ast.unparse(node), relative)
            layer = lines[0][1] if lines else None
            for alias in node.names:
                if layer not in (None, own) and alias.name.startswith("_") and not alias.name.startswith("__"):
                    private.append(f"{relative}:{node.lineno} imports {alias.name} from {layer}")
    assert not private, "\n".join(private)
