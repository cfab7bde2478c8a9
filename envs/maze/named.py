"""Named evaluation levels: hand-designed layouts and fixed larger perfect mazes.

The hand-made layouts (13x13 or smaller) are written here as text. The larger perfect mazes
are carved by a small pure-Python depth-first generator driven by a fixed-seed integer
generator, so the evaluation set does not change with the JAX version or backend (JAX's
random bits have changed between releases). ``SHORTEST_PATHS`` records every level's BFS
length; the tests check it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.maze.level import Level, host_bfs, host_distances, level_from_text

HAND_MADE: dict[str, str] = {
    # 3x3 rooms joined by single doors.
    "nine_rooms": """
....#...#....
.>..#...#....
........#....
....#...#....
##.####.###.#
....#........
....#...#....
........#....
....#...#....
####.##.#.###
....#........
....#...#..G.
....#...#....
""",
    # One corridor winding inwards to the centre.
    "spiral": """
>............
############.
...........#.
.#########.#.
.#.......#.#.
.#.#####.#.#.
.#.#..G#.#.#.
.#.#.###.#.#.
.#.#.....#.#.
.#.#######.#.
.#.........#.
.###########.
.............
""",
    # Long switchback corridors, two cells wide at the turns.
    "switchbacks": """
v............
###########..
.............
..###########
.............
###########..
.............
..###########
.............
###########..
.............
..###########
G............
""",
    # A spine with dead-end teeth; the goal is at the tip of one tooth.
    "comb": """
.#.#.#.#.#G#.
.#.#.#.#.#.#.
.#.#.#.#.#.#.
.#.#.#.#.#.#.
.#.#.#.#.#.#.
.#.#.#.#.#.#.
.............
.#.#.#.#.#.#.
.#.#.#.#.#.#.
.#.#.#.#.#.#.
.#.#.#.#.#.#.
.#.#.#.#.#.#.
^#.#.#.#.#.#.
""",
    # No walls at all: the goal is out of sight at the start.
    "open_field": """
.............
.............
.............
..........G..
.............
.............
.............
.............
.............
.............
..^..........
.............
.............
""",
    # A lattice of single-cell pillars.
    "pillars": """
>............
.#.#.#.#.#.#.
.............
.#.#.#.#.#.#.
.............
.#.#.#.#.#.#.
.............
.#.#.#.#.#.#.
.............
.#.#.#.#.#.#.
.............
.#.#.#.#.#.#.
............G
""",
    # Concentric rings whose gaps alternate between top and bottom.
    "rings": """
.............
.#####.#####.
.#.........#.
.#.#######.#.
.#.#.....#.#.
.#.#.#.#.#.#.
.#.#.#G#.#.#.
.#.#.###.#.#.
.#.#.....#.#.
.#.###.###.#.
.#.........#.
.###########.
^............
""",
    # Two rooms joined by one door at the far end (13 wide, 9 high).
    "two_chambers": """
......#......
.>....#....G.
......#......
......#......
......#......
......#......
......#......
......#......
.............
""",
    # The goal sits in a cup that opens away from the agent (7x7).
    "cup": """
.......
.#...#.
.#.G.#.
.#...#.
.#####.
.......
...^...
""",
    # A low hall of staggered baffles (13 wide, 3 high).
    "long_hall": """
>..#...#...#.
.#.#.#.#.#.#.
.#...#...#..G
""",
    # Two ways round; the goal's pocket opens only from below (9x9).
    "fork": """
.........
.#######.
.#.....#.
.#.###.#.
>#.#G#.#.
.#.#.#.#.
.#.#...#.
.#.#####.
.........
""",
    # Staircase walls, then a corridor back across the bottom.
    "stairs": """
>.#..........
..#..........
..####.......
.....#.......
.....####....
........#....
........####.
...........#.
##.........#.
.#########.#.
.#.........#.
.#.##########
.#..........G
""",
}

# (size, seed) of the generated perfect mazes.
GENERATED: dict[str, tuple[int, int]] = {
    "perfect_maze_15": (15, 15),
    "perfect_maze_19": (19, 19),
    "perfect_maze_25": (25, 25),
}

# Fewest moves from agent to goal (BFS), checked by the tests.
SHORTEST_PATHS: dict[str, int] = {
    "nine_rooms": 20,
    "spiral": 96,
    "switchbacks": 74,
    "comb": 22,
    "open_field": 15,
    "pillars": 24,
    "rings": 48,
    "two_chambers": 24,
    "cup": 14,
    "long_hall": 22,
    "fork": 24,
    "stairs": 40,
    "perfect_maze_15": 100,
    "perfect_maze_19": 154,
    "perfect_maze_25": 176,
}


class _Lcg:
    """A 64-bit linear congruential generator: stable across Python/NumPy/JAX versions."""

    def __init__(self, seed: int):
        self.state = seed & (2**64 - 1)

    def below(self, n: int) -> int:
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) % 2**64
        return (self.state >> 33) % n


def _bfs_far(free: list[list[bool]], start: tuple[int, int]) -> tuple[int, int]:
    """The free cell farthest from ``start`` (first in row-major order on ties)."""
    dist = host_distances(host_bfs(np.array(free, bool), start))
    return min(dist, key=lambda c: (-dist[c], c[1], c[0]))


def perfect_maze_text(size: int, seed: int) -> str:
    """A depth-first perfect maze of odd ``size`` as text: agent top-left facing right,
    goal on the free cell farthest from it."""
    if size < 3 or size % 2 == 0:
        raise ValueError(f"perfect maze size must be odd and >= 3, got {size}")
    rng, k = _Lcg(seed), (size + 1) // 2
    free = [[x % 2 == 0 and y % 2 == 0 for x in range(size)] for y in range(size)]
    visited, stack = {(0, 0)}, [(0, 0)]
    while stack:
        x, y = stack[-1]
        options = [
            (x + dx, y + dy)
            for dx, dy in ((1, 0), (0, 1), (-1, 0), (0, -1))
            if 0 <= x + dx < k and 0 <= y + dy < k and (x + dx, y + dy) not in visited
        ]
        if not options:
            stack.pop()
            continue
        nx, ny = options[rng.below(len(options))]
        free[y + ny][x + nx] = True  # the passage cell between rooms (x, y) and (nx, ny)
        visited.add((nx, ny))
        stack.append((nx, ny))
    gx, gy = _bfs_far(free, (0, 0))
    rows = [["." if f else "#" for f in row] for row in free]
    rows[0][0], rows[gy][gx] = ">", "G"
    return "\n".join("".join(row) for row in rows)


def named_texts(max_size: int | None = None) -> dict[str, str]:
    """All named levels as text; only those fitting ``max_size`` when it is given."""
    texts = {name: text.strip() for name, text in HAND_MADE.items()}
    texts.update({name: perfect_maze_text(*args) for name, args in GENERATED.items()})
    if max_size is None:
        return texts
    return {
        name: text
        for name, text in texts.items()
        if max(len(rows := text.splitlines()), max(len(r) for r in rows)) <= max_size
    }


def named_levels(env: Any) -> dict[str, Level]:
    """The named evaluation levels that fit in ``env.max_size``, padded to it.

    A 13x13 env gets the hand-made layouts; ``max_size=25`` also gets the generated 15, 19
    and 25 perfect mazes.
    """
    return {name: level_from_text(env, text) for name, text in named_texts(env.max_size).items()}
