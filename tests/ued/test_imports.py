"""The package's layers, read from its import statements: imports only point down.

``ued/__init__.py`` lists the layers, bottom to top: its sub-packages, and the front door
(``ued.api``) beside the package root. A module imports only from its own layer or a lower
one; layers on one row sit side by side and import nothing from each other. Every import
counts, also one inside a function (a late import hides a cycle, it does not remove it). So
the config sits below the curricula and the experiment, which read it; what it needs from
them (a curriculum's option types) is passed in as an argument.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "ued"
TOP = "ued"  # the package root: above every layer (it applies the XLA flags, re-exports the api)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def import_targets(path: Path, package: str) -> set[str]:
    """The ued modules that the import statements of the file at ``path`` name, anywhere in
    it; ``package`` resolves its relative imports."""
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
        found.update(t for t in targets if t in MODULES)
    return found


def imported(name: str) -> set[str]:
    """The ued modules that module ``name``'s import statements name, anywhere in it."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    return import_targets(path, package) - {name}


GRAPH = {name: imported(name) for name in MODULES}


def read_layers() -> tuple[tuple[str, ...], ...]:
    """The rows of the layer table in ``ued/__init__.py``'s docstring, bottom to top: each
    row's first column, a comma-separated list of layers."""
    doc = ast.get_docstring(ast.parse((PACKAGE / "__init__.py").read_text()))
    rows = []
    for line in doc.split("::\n\n", 1)[1].splitlines():
        if line.strip() and not line.startswith("    "):
            break  # the table ends where the text continues
        if line.startswith("    ") and line[4] != " ":
            first = re.split(r"\s{2,}", line.strip())[0]
            rows.append(tuple(name.strip() for name in first.split(",")))
    return tuple(rows)


LAYERS = read_layers()
RANK = {layer: i for i, row in enumerate(LAYERS) for layer in row}


def layer_of(name: str) -> str:
    """``ued.core.buffer`` -> ``core``, ``ued.api`` -> ``api``, the package root -> ``ued``."""
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else TOP


def rank(layer: str) -> int:
    return len(LAYERS) if layer == TOP else RANK[layer]


def back_arrows(graph: dict[str, set[str]]) -> list[str]:
    """Every import of ``graph`` that does not point down: into a higher layer, or across
    into a layer beside its own."""
    found = []
    for name, targets in sorted(graph.items()):
        for target in sorted(targets):
            here, there = layer_of(name), layer_of(target)
            if here != there and rank(there) >= rank(here):
                way = "across" if rank(there) == rank(here) else "up"
                found.append(f"{name} ({here}) -> {target} ({there}): {way}")
    return found


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
    # Known edges of each kind: a plain import, ``from ued.x import module``, a late import.
    assert "ued.config.options" in GRAPH["ued.config.config"]
    assert "ued.core.level_sets" in GRAPH["ued.core.buffer"]
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


def test_the_table_is_read():
    assert LAYERS[:2] == (("files",), ("config",)) and ("step", "evaluation", "human") in LAYERS
    assert RANK["core"] < RANK["curricula"] < RANK["step"] == RANK["human"] < RANK["host"]


def test_the_folders_are_the_layers():
    # Every folder of ued/ is a layer of the table, once; beside ued/__init__.py sits only
    # the front door, in the top row.
    listed = [layer for row in LAYERS for layer in row]
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    loose = {p.stem for p in PACKAGE.glob("*.py")} - {"__init__"}
    assert len(listed) == len(set(listed)), listed
    assert set(listed) == folders | loose, set(listed) ^ (folders | loose)
    assert loose <= set(LAYERS[-1]), loose
    assert all(layer_of(name) in RANK or name == TOP for name in MODULES)


def test_every_import_points_down():
    arrows = back_arrows(GRAPH)
    assert not arrows, "imports that do not point down:\n" + "\n".join(arrows)


@pytest.mark.parametrize(
    ("source", "target", "way"),
    [
        ("ued.core.buffer", "ued.curricula.base", "up"),
        ("ued.config.eval_setup", "ued.evaluation.evaluate", "up"),
        ("ued.files.safe_io", "ued.config.options", "up"),
        ("ued.evaluation.gallery", "ued.human.inbox", "across"),
        ("ued.step.experiment", "ued.evaluation.stats", "across"),
        ("ued.config.config", "ued", "up"),  # the root's lazy names are above every layer
    ],
)
def test_a_back_arrow_is_found(source, target, way):
    graph = {name: set(targets) for name, targets in GRAPH.items()}
    graph[source].add(target)
    assert back_arrows(graph) == [
        f"{source} ({layer_of(source)}) -> {target} ({layer_of(target)}): {way}"
    ]


def envs_imports(path: Path) -> set[str]:
    """The env-family modules (``envs.*``) that the file at ``path`` imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module)
    return {name for name in found if name == "envs" or name.startswith("envs.")}


def test_envs_sit_between_files_and_config():
    # The env families import only the files layer of ued; the layers from config up may
    # import them, the files layer may not.
    found = {}
    for path in sorted((ROOT / "envs").rglob("*.py")):
        package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
        found[str(path.relative_to(ROOT))] = import_targets(path, package)
    assert "ued.files.safe_io" in found["envs/core.py"]
    above = {p: sorted(t) for p, t in found.items() if {layer_of(m) for m in t} - {"files"}}
    assert not above, above
    assert "envs.core" in envs_imports(MODULES["ued.config.eval_setup"])  # a late import
    below = {n: envs_imports(MODULES[n]) for n in MODULES if layer_of(n) == "files"}
    assert not any(below.values()), below


def test_checkpoint_takes_the_curricula_as_an_argument():
    assert not {m for m in GRAPH["ued.host.checkpoint"] if m.startswith("ued.curricula")}
    assert not {m for m in reachable("ued.config.config") if m.startswith("ued.curricula")}
