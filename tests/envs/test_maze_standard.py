"""The literature's maze evaluation levels: transcribed layouts, shortest paths, sizes, sets."""

from collections import deque

import jax
import numpy as np
import pytest

from envs.maze import Maze, family
from envs.maze.standard import catalogue, load_set, parse_catalogue
from tests.toy_family import toy_config
from ued.config.config import ConfigError, from_dict
from ued.config.eval_setup import load_level_sets

STANDARD = [
    "SixteenRooms", "SixteenRooms2", "Labyrinth", "LabyrinthFlipped", "Labyrinth2",
    "StandardMaze", "StandardMaze2", "StandardMaze3",
]  # fmt: skip
LARGE = [
    "SimpleCrossingS11N5", "FourRooms", "SmallCorridor", "LargeCorridor",
    "PerfectMazeMedium", "PerfectMazeLarge", "PerfectMazeXL",
]  # fmt: skip
# JaxUED's Level.from_str: '>' 0, 'v' 1, '<' 2, '^' 3; ued's directions are the same
# minigrid ones (0 right, 1 down, 2 left, 3 up), so a character keeps its meaning.
JAXUED_DIRS = {">": 0, "v": 1, "<": 2, "^": 3}


def bfs(text: str) -> int:
    """Fewest 4-connected moves from the agent to the goal; independent of envs.maze."""
    rows = text.split("\n")
    cells = {(x, y): c for y, row in enumerate(rows) for x, c in enumerate(row)}
    start = next(p for p, c in cells.items() if c in JAXUED_DIRS)
    dist, queue = {start: 0}, deque([start])
    while queue:
        x, y = queue.popleft()
        if cells[(x, y)] == "G":
            return dist[(x, y)]
        for n in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
            if cells.get(n, "#") != "#" and n not in dist:
                dist[n] = dist[(x, y)] + 1
                queue.append(n)
    return -1


@pytest.fixture(scope="module")
def metrics():
    return jax.jit(lambda level: family.level_metrics(None, level))


def check_entries(env, entries, metrics):
    for entry in entries:
        level = family.level_from_text(env, entry.text)
        assert bool(family.is_valid(env, level)), entry.name
        width, height = entry.size
        assert entry.meta["size"] == f"{width}x{height}"
        path = bfs(entry.text)
        assert path > 0 and int(entry.meta["shortest_path"]) == path, entry.name
        assert int(metrics(level)["shortest_path"]) == path, entry.name  # ued's own BFS agrees
        assert entry.meta["source"] and entry.meta["start"] and entry.meta["horizon"], entry.name
        char = next(c for c in entry.text if c in JAXUED_DIRS)
        assert int(level.agent_dir) == JAXUED_DIRS[char]


def test_standard_set_transcribed_and_valid(metrics):
    entries = catalogue("standard")
    assert [e.name for e in entries] == STANDARD
    assert all(e.size == (13, 13) for e in entries)
    check_entries(Maze(max_size=13), entries, metrics)
    paths = {e.name: int(e.meta["shortest_path"]) for e in entries}
    # Labyrinths: 96 moves round the spiral; SixteenRooms: the Manhattan distance 10 + 10.
    assert paths["Labyrinth"] == paths["LabyrinthFlipped"] == paths["Labyrinth2"] == 96
    assert paths["SixteenRooms"] == 20
    assert all("DramaCow/jaxued" in e.meta["source"] for e in entries)


def test_start_directions_follow_jaxued():
    levels = load_set(Maze(max_size=13), "standard")
    dirs = {name: int(level.agent_dir) for name, level in levels.items()}
    assert dirs.pop("LabyrinthFlipped") == 2  # faces left, as in JaxUED and minimax
    assert set(dirs.values()) == {0}  # every other start faces right


def test_simple_crossing_hand_checked(metrics):
    (crossing,) = [e for e in catalogue("standard_large") if e.name == "SimpleCrossingS11N5"]
    # Down 2 to (0,2); right 3 through the door at (1,2) to (3,2); down 2 through (3,3) to
    # (3,4); left 1 to (2,4); down 2 through (2,5) to (2,6); right 5 through (5,6) to (7,6);
    # down 2 through (7,7) to (7,8); right 1 to the goal (8,8): 2+3+2+1+2+5+2+1 = 18.
    assert crossing.text.split("\n")[0] == ">#...#..."
    assert bfs(crossing.text) == 18 and int(crossing.meta["shortest_path"]) == 18
    level = family.level_from_text(Maze(max_size=9), crossing.text)
    assert int(metrics(level)["shortest_path"]) == 18


def test_large_set_needs_a_larger_grid(metrics):
    with pytest.raises(ValueError, match=r"raise env.options.max_size to at least 99") as err:
        load_set(Maze(max_size=13), "standard_large")
    assert "PerfectMazeXL (99x99)" in str(err.value) and "SmallCorridor" not in str(err.value)
    entries = catalogue("standard_large")
    assert [e.name for e in entries] == LARGE
    sizes = {e.name: e.size for e in entries}
    # dcd's grids count their border: 11 -> 9, 19 -> 17, 21 -> 19, 51 -> 49, 101 -> 99.
    assert sizes["SimpleCrossingS11N5"] == (9, 9) and sizes["FourRooms"] == (17, 17)
    assert sizes["PerfectMazeMedium"] == (19, 19) and sizes["PerfectMazeXL"] == (99, 99)
    check_entries(Maze(max_size=99), entries, metrics)


@pytest.mark.parametrize("name", ["PerfectMazeMedium", "PerfectMazeLarge", "PerfectMazeXL"])
def test_perfect_mazes_are_trees(name):
    (entry,) = [e for e in catalogue("standard_large") if e.name == name]
    free = np.array([[c != "#" for c in row] for row in entry.text.split("\n")])
    edges = (free[1:] & free[:-1]).sum() + (free[:, 1:] & free[:, :-1]).sum()
    assert edges == free.sum() - 1  # connected (BFS reaches the goal) with no cycle
    assert free[::2, ::2].all()  # every room cell of the lattice is open


def test_catalogue_format_errors():
    with pytest.raises(ValueError, match="without a '; name"):
        parse_catalogue(">G\n")
    with pytest.raises(ValueError, match="a second level named 'a'"):
        parse_catalogue("; name: a\n>G\n\n; name: a\nG<\n")
    entries = parse_catalogue("; name: a\n; note: x\n>G\n; name: b\nG<\n")
    assert [(e.name, e.text, e.line) for e in entries] == [("a", ">G", 3), ("b", "G<", 5)]


def test_level_sets_by_name(tmp_path):
    env = Maze(max_size=13)
    both = load_level_sets(family, env, "both")
    assert list(both) == ["named", "standard"] and list(both["standard"]) == STANDARD
    assert load_level_sets(family, env, "none") == {}
    path = tmp_path / "two.txt"
    path.write_text(">G\n\n>#G\n")
    sets = load_level_sets(family, env, f"standard,{path}")
    assert list(sets["file:two.txt"]) == ["two/0", "two/1"]
    with pytest.raises(ConfigError, match="max_size to at least 99"):
        load_level_sets(family, env, "standard_large")
    from envs.core import get_family

    toy = get_family(toy_config().env.family)
    with pytest.raises(ConfigError, match="has no level set 'standard'"):
        load_level_sets(toy, toy.make_env(), "standard")


def test_eval_levels_config_values():
    for value in ("named", "standard", "both", "none", "standard_large", "my.txt", "named,a.txt"):
        assert from_dict({"eval": {"levels": value}}).eval.levels == value
    for bad in ("standrad", "named,", "levels.yaml"):
        with pytest.raises(ConfigError, match="eval.levels"):
            from_dict({"eval": {"levels": bad}})
