"""The community's standard maze evaluation levels, shipped as annotated level files.

``levels/standard.txt`` holds the eight 13x13 mazes that JaxUED, SFL, minimax and dcd report
on (SixteenRooms ... StandardMaze3); ``levels/standard_large.txt`` holds dcd's and minimax's
further levels (crossing, four rooms, corridors, perfect mazes up to 99x99);
``levels/random_9x9.txt`` holds 50 solvable 9x9 random-wall levels (12 walls, drawn by
``scripts/make_levels.py`` with a seed no run uses): the default run's held-out set. All are
in the maze text format; lines starting with ``;`` carry each level's name, size, BFS shortest path,
the horizon each peer evaluates it at, its source (repository and file) and how its start
direction maps from each source.

A level larger than the env's ``max_size`` is refused, never cropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from envs.maze.level import Level, level_from_text

LEVELS_DIR = Path(__file__).parent / "levels"
SET_FILES = {
    "standard": "standard.txt",
    "standard_large": "standard_large.txt",
    "random_9x9": "random_9x9.txt",
}
COMMENT = ";"


@dataclass(frozen=True)
class Entry:
    """One annotated level of a catalogue file."""

    name: str
    text: str  # the level in the maze text format
    meta: dict  # its ``; key: value`` lines: size, shortest_path, horizon, source, start
    line: int  # 1-based line of its first row in the file

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the level."""
        rows = self.text.splitlines()
        return len(rows[0]), len(rows)


def parse_catalogue(text: str) -> list[Entry]:
    """Splits an annotated level file into entries; each level is preceded by ``; name: X``.

    Raises:
        ValueError: a level without a name, or a repeated name.
    """
    entries, meta, rows, first = [], {}, [], 0

    def close():
        if not rows:
            return
        if "name" not in meta:
            raise ValueError(f"line {first}: level without a '; name: ...' line above it")
        if any(e.name == meta["name"] for e in entries):
            raise ValueError(f"line {first}: a second level named {meta['name']!r}")
        entries.append(Entry(meta["name"], "\n".join(rows), dict(meta), first))

    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith(COMMENT):
            if rows:  # a comment after rows starts the next level
                close()
                meta, rows = {}, []
            key, sep, value = stripped[1:].partition(":")
            if sep and key.strip().isidentifier():
                meta[key.strip()] = value.strip()
        elif stripped:
            if not rows:
                first = number
            rows.append(stripped)
        elif rows:
            close()
            meta, rows = {}, []
    close()
    return entries


def catalogue(set_name: str) -> list[Entry]:
    """The entries of a shipped set (a key of ``SET_FILES``)."""
    if set_name not in SET_FILES:
        raise ValueError(f"unknown maze level set {set_name!r}; shipped: {sorted(SET_FILES)}")
    return parse_catalogue((LEVELS_DIR / SET_FILES[set_name]).read_text())


def check_fits(env: Any, entries: list[Entry], set_name: str) -> None:
    """Raises a ValueError naming the levels larger than ``env.max_size`` and the size needed."""
    too_big = [e for e in entries if max(e.size) > env.max_size]
    if too_big:
        need = max(max(e.size) for e in too_big)
        listed = ", ".join(f"{e.name} ({e.size[0]}x{e.size[1]})" for e in too_big)
        raise ValueError(
            f"level set {set_name!r}: {listed} larger than the env's max_size {env.max_size}; "
            f"raise env.options.max_size to at least {need} (scripts/evaluate.py: --max-size "
            f"{need}); levels are never cropped"
        )


def load_set(env: Any, set_name: str) -> dict[str, Level]:
    """A shipped set as ``{name: Level}`` padded to ``env.max_size``; refuses levels that
    do not fit (see ``check_fits``)."""
    entries = catalogue(set_name)
    check_fits(env, entries, set_name)
    return {e.name: level_from_text(env, e.text) for e in entries}


def standard_levels(env: Any) -> dict[str, Level]:
    """The eight 13x13 mazes of JaxUED, SFL, minimax and dcd."""
    return load_set(env, "standard")


def standard_large_levels(env: Any) -> dict[str, Level]:
    """dcd's and minimax's larger levels; needs ``max_size >= 99``."""
    return load_set(env, "standard_large")


def random_9x9_levels(env: Any) -> dict[str, Level]:
    """50 held-out solvable 9x9 random-wall levels (12 walls), the default run's set."""
    return load_set(env, "random_9x9")


level_sets = {
    "standard": standard_levels,
    "standard_large": standard_large_levels,
    "random_9x9": random_9x9_levels,
}
