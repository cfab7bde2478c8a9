"""The package's layers, read from its import statements: imports only point down.

Every import counts, also one inside a function (a late import hides a cycle, it does not
remove it). The config sits below the curricula and the experiment, which read it; what it
needs from them (a curriculum's option types) is passed in as an argument.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ued"
# Modules below the curricula and the experiment: not even a late import of either.
BELOW_CURRICULA = (
    "ued.config.options",
    "ued.config.config",
    "ued.config.yaml_io",
    "ued.core.buffer_params",
)
ABOVE = ("ued.curricula", "ued.step.experiment")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imported(name: str) -> set[str]:
    """The ued modules that module ``name``'s import statements name, anywhere in it."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            # ``from ued.config import config`` imports the module ued.config.config;
            # ``from ued.x import f`` imports ued.x.
            targets = [
                f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source
                for alias in node.names
            ]
        else:
            continue
        found.update(t for t in targets if t in MODULES and t != name)
    return found


GRAPH = {name: imported(name) for name in MODULES}


def reachable(name: str) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        for child in GRAPH[todo.pop()] - seen:
            seen.add(child)
            todo.append(child)
    return seen


def find_cycle() -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None."""
    state: dict[str, str] = {}  # name -> "open" (on the current path) | "done"
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        state[name] = "open"
        path.append(name)
        for child in sorted(GRAPH[name]):
            if state.get(child) == "open":
                return path[path.index(child) :] + [child]
            if child not in state and (cycle := visit(child)):
                return cycle
        path.pop()
        state[name] = "done"
        return None

    for name in sorted(GRAPH):
        if name not in state and (cycle := visit(name)):
            return cycle
    return None


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports(name):
    assert importlib.import_module(name).__name__ == name


def test_the_graph_is_read_from_the_statements():
    # Known edges of each kind: a plain import, ``from ued import module``, a late import.
    assert "ued.config.options" in GRAPH["ued.config.config"]
    assert "ued.curricula" in GRAPH["ued.step.experiment"]
    assert "ued.step.experiment" in GRAPH["ued.host.checkpoint"]  # load_trained's late import
    assert "ued.api" in GRAPH["ued"]  # the package's lazy attributes


def test_no_import_cycle():
    assert find_cycle() is None, " -> ".join(find_cycle() or [])


def test_find_cycle_finds_one():
    GRAPH["ued.config.options"].add("ued.config.config")
    try:
        cycle = find_cycle()
        steps = list(zip(cycle, cycle[1:], strict=False))
        assert cycle[0] == cycle[-1] and ("ued.config.options", "ued.config.config") in steps
        assert all(b in GRAPH[a] for a, b in steps)
    finally:
        GRAPH["ued.config.options"].discard("ued.config.config")


@pytest.mark.parametrize("name", BELOW_CURRICULA)
def test_config_layer_imports_nothing_above_it(name):
    above = {m for m in reachable(name) if m in ABOVE or m.startswith("ued.curricula.")}
    assert not above, f"{name} imports {sorted(above)}"


def test_checkpoint_takes_the_curricula_as_an_argument():
    assert not {m for m in GRAPH["ued.host.checkpoint"] if m.startswith("ued.curricula")}
