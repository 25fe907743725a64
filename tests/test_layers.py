"""The packages' layers, as docs/ARCHITECTURE.md draws them: every import points down.

Every import counts, wherever it stands: at the top of a module, inside a function, or
under `if TYPE_CHECKING:` (a type-only import still makes the lower module know the higher
one, and it is how the old import circles hid). A module may import its own layer or a
lower one, and no set of modules may import each other in a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("classroom", "signaling", "recorder", "web")

# Lowest first. A module belongs to the layer of its longest matching prefix.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("domain", ("classroom", "web")),
    (
        "vocabulary",
        (
            "signaling.errors",
            "signaling.protocol",
            "signaling.live.state",
            "signaling.live.tokens",
            "recorder.storage",
        ),
    ),
    ("agent", ("classroom.agent",)),
    ("app keys", ("signaling.appkeys",)),
    ("media", ("signaling.media",)),
    ("live", ("signaling.live",)),
    ("services", ("signaling.services",)),
    ("rest", ("signaling.rest",)),
    ("recorder", ("recorder",)),
    ("composition", ("signaling.app",)),
    ("cli", ("signaling.cli", "signaling.__main__")),
)


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" not in path.parts:
                found[_module_name(path)] = path
    return found


MODULES = _modules()


def _target(name: str) -> str | None:
    """The module of ours an import names (a package's __init__ or the module itself)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str) -> set[str]:
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from pkg import module` names a module; `from module import name` the module
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            target = _target(name)
            if target is not None and target != module:
                found.add(target)
    return found


def layer_of(module: str) -> int:
    if module in ("signaling", "recorder"):  # a package's docstring, imported by nobody
        return 0
    best, best_len = None, -1
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = rank, len(prefix)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


GRAPH = {module: imports_of(module) for module in MODULES}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_import_points_to_the_same_layer_or_below(module: str) -> None:
    upward = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} "
        f"({LAYERS[layer_of(target)][0]})"
        for target in sorted(GRAPH[module])
        if layer_of(target) > layer_of(module)
    ]
    assert not upward, "\n".join(upward)


def test_no_modules_import_each_other_in_a_circle() -> None:
    # Tarjan's strongly connected components: any component of two or more is a circle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert not circles, f"import circles: {circles}"


def test_the_layer_table_knows_every_package() -> None:
    # a new top-level folder or sub-package must be placed deliberately
    for module in MODULES:
        layer_of(module)
    assert {"signaling.media", "signaling.live", "signaling.rest", "signaling.app"} <= set(
        MODULES
    ) | {m.rpartition(".")[0] for m in MODULES}
