"""The import graph of rfobs/ keeps its shape: no cycle anywhere, and the lower layers never reach up.

Every import counts, including the ones inside functions (they are how a module depends on another, only
later); imports under `if TYPE_CHECKING:` do not (they never run).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "rfobs"

# Layers that must never import the ones named: the decorator core and the policies know the OTel API and
# the exceptions, not how the SDK is set up; the process-wide state sits below everything.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "rfobs.instrument": (
        "rfobs.sdk",
        "rfobs.config",
        "rfobs._pipeline",
        "rfobs.health",
        "rfobs.cli",
        "rfobs.perf",
        "rfobs.fleet",
    ),
    # The fleet's backends plug into the policies and are wired by the SDK, never the other way up.
    "rfobs.fleet": ("rfobs.sdk", "rfobs.config", "rfobs._pipeline", "rfobs.cli", "rfobs.perf"),
    "rfobs.health": ("rfobs.sdk", "rfobs._pipeline", "rfobs.cli"),
    "rfobs.perf": ("rfobs.sdk", "rfobs._pipeline"),
}
# The bottom of the graph: what these import, in all, transitively.
LEAVES: dict[str, set[str]] = {
    "rfobs._state": set(),
    # ConfigError scrubs its own message, whoever raises it.
    "rfobs.exceptions": {"rfobs._secrets", "rfobs._scrubber", "rfobs._state"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, except what sits under `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (child for statement in node.orelse for child in [statement, *runtime_nodes(statement)])
            continue
        yield node
        yield from runtime_nodes(node)


def imports_of(name: str) -> set[str]:
    """The rfobs modules `name` imports (a `from package import submodule` counts as the submodule)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {target for target in found if target in MODULES and target != name}


GRAPH = {name: imports_of(name) for name in MODULES}


def test_there_is_no_import_cycle_in_rfobs() -> None:
    cycles = [component for component in strongly_connected(GRAPH) if len(component) > 1]
    assert cycles == [], f"import cycles: {cycles}"


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_lower_layer_never_imports_an_upper_one(layer: str) -> None:
    members = [name for name in MODULES if name == layer or name.startswith(f"{layer}.")]
    assert members, f"no module in {layer}"
    arrows = [
        (name, target)
        for name in members
        for target in GRAPH[name]
        for forbidden in FORBIDDEN[layer]
        if target == forbidden or target.startswith(f"{forbidden}.")
    ]
    assert arrows == []


@pytest.mark.parametrize("leaf", sorted(LEAVES))
def test_the_bottom_layer_imports_only_what_it_is_allowed(leaf: str) -> None:
    reached: set[str] = set()
    pending = [leaf]
    while pending:
        for target in GRAPH[pending.pop()]:
            if target not in reached:
                reached.add(target)
                pending.append(target)
    assert reached <= LEAVES[leaf], sorted(reached - LEAVES[leaf])


def test_the_walk_sees_function_level_imports() -> None:
    # The test above would pass vacuously if the walk missed imports inside functions.
    assert "rfobs._pipeline" in GRAPH["rfobs.sdk"]
    assert "rfobs.health.setup" in GRAPH["rfobs._pipeline"]  # imported inside a function


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the strongly connected components of `graph`."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return components
