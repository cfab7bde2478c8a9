"""The maze level: its struct, validity, BFS shortest paths, metrics and text format.

The level operations of the family bundle (``envs.maze.family``) are the functions here that
take the env first: ``example_level``, ``is_valid``, ``level_metrics``, ``level_to_text`` and
``level_from_text``.

A level is a grid of walls with an agent (position and facing) and a goal. Levels smaller
than the env's ``max_size`` are padded: every cell with ``x >= width`` or ``y >= height`` is a
wall. Positions are ``(x, y) = (column, row)``; directions follow minigrid
(0 right, 1 down, 2 left, 3 up). The outer border is implicit: outside the grid is wall.

Text format (one row per line, no border): ``#`` wall, ``.`` free, ``G`` goal and
``>``/``v``/``<``/``^`` the agent facing right/down/left/up. This is the convention of
JaxUED's maze ``Level.from_str``; surrounding blank lines and whitespace are ignored.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

# Unit moves for directions 0 right, 1 down, 2 left, 3 up, as (dx, dy).
DIR_TO_VEC = np.array([(1, 0), (0, 1), (-1, 0), (0, -1)], dtype=np.int32)
AGENT_CHARS = ">v<^"
WALL_CHAR, FREE_CHAR, GOAL_CHAR = "#", ".", "G"


@struct.dataclass
class Level:
    """One maze level, padded to the env's ``(max_size, max_size)`` grid."""

    wall_map: chex.Array  # (max_h, max_w) bool, True = wall; padding cells are walls
    agent_pos: chex.Array  # (2,) int32, agent (x, y) = (column, row)
    agent_dir: chex.Array  # () int32, 0 right, 1 down, 2 left, 3 up
    goal_pos: chex.Array  # (2,) int32, goal (x, y)
    width: chex.Array  # () int32, columns in use (1..max_w)
    height: chex.Array  # () int32, rows in use (1..max_h)


def example_level(env: Any) -> Level:
    """An empty ``max_size`` room: agent top-left facing right, goal bottom-right."""
    n = env.max_size
    return Level(
        wall_map=jnp.zeros((n, n), jnp.bool_),
        agent_pos=jnp.array([0, 0], jnp.int32),
        agent_dir=jnp.array(0, jnp.int32),
        goal_pos=jnp.array([n - 1, n - 1], jnp.int32),
        width=jnp.array(n, jnp.int32),
        height=jnp.array(n, jnp.int32),
    )


def cell_mask(pos: chex.Array, shape: tuple[int, int]) -> chex.Array:
    """(H, W) bool mask of the cell at ``pos = (x, y)``; all False when outside the grid."""
    ys, xs = jnp.indices(shape)
    return (xs == pos[0]) & (ys == pos[1])


def inside_mask(width: chex.Array, height: chex.Array, shape: tuple[int, int]) -> chex.Array:
    """(H, W) bool mask of the cells inside the level area (``x < width``, ``y < height``)."""
    ys, xs = jnp.indices(shape)
    return (xs < width) & (ys < height)


def blocked_map(level: Level) -> chex.Array:
    """(H, W) bool: walls, with every cell outside the level area counted as wall."""
    return level.wall_map | ~inside_mask(level.width, level.height, level.wall_map.shape)


def pick_cell(key: chex.PRNGKey, mask: chex.Array) -> chex.Array:
    """Uniformly picks a True cell of ``mask`` (H, W); returns (2,) int32 (x, y).

    When ``mask`` has no True cell the result is an arbitrary cell; callers check
    ``mask.any()`` (editors use it to make an infeasible edit a no-op).
    """
    h, w = mask.shape
    noise = jax.random.uniform(key, (h * w,))
    idx = jnp.argmax(jnp.where(mask.reshape(-1), noise, -1.0)).astype(jnp.int32)
    return jnp.stack([idx % w, idx // w])


def _in_area(pos: chex.Array, level: Level) -> chex.Array:
    return (pos[0] >= 0) & (pos[0] < level.width) & (pos[1] >= 0) & (pos[1] < level.height)


def is_valid(env: Any, level: Level) -> chex.Array:
    """Scalar bool: the level is playable and well formed (jittable, vmappable).

    Checks that the grid is the env's ``max_size`` square, the size is within it, padding
    cells are walls, agent and goal lie in the level area on free cells and are distinct,
    and the direction is in 0..3.
    """
    if level.wall_map.shape != (env.max_size, env.max_size):
        return jnp.asarray(False)  # a level of another env: shapes are static
    max_h, max_w = level.wall_map.shape
    size_ok = (level.width >= 1) & (level.width <= max_w)
    size_ok &= (level.height >= 1) & (level.height <= max_h)
    inside = inside_mask(level.width, level.height, level.wall_map.shape)
    padding_ok = jnp.all(level.wall_map | inside)
    agent_ok = _in_area(level.agent_pos, level)
    agent_ok &= ~jnp.any(level.wall_map & cell_mask(level.agent_pos, level.wall_map.shape))
    goal_ok = _in_area(level.goal_pos, level)
    goal_ok &= ~jnp.any(level.wall_map & cell_mask(level.goal_pos, level.wall_map.shape))
    distinct = jnp.any(level.agent_pos != level.goal_pos)
    dir_ok = (level.agent_dir >= 0) & (level.agent_dir < 4)
    return size_ok & padding_ok & agent_ok & goal_ok & distinct & dir_ok


def _spread(frontier: chex.Array) -> chex.Array:
    """Cells 4-adjacent to any True cell of ``frontier`` (H, W)."""
    p = jnp.pad(frontier, 1)
    return p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]


def distance_map(
    free: chex.Array, source: chex.Array, target: chex.Array | None = None
) -> chex.Array:
    """BFS step distances from ``source`` over 4-connected free cells.

    Args:
        free: (H, W) bool, cells that can be entered.
        source: (2,) int (x, y) start cell (a blocked or off-grid source reaches nothing).
        target: optional (2,) int (x, y); the search stops once it is reached, so only
            distances up to the target's are complete.

    Returns:
        (H, W) int32 distances, -1 where unreached.
    """
    start = cell_mask(source, free.shape) & free
    goal = jnp.zeros_like(free) if target is None else cell_mask(target, free.shape)

    def cond(carry):
        dist, frontier, _ = carry
        return jnp.any(frontier) & ~jnp.any(goal & (dist >= 0))

    def body(carry):
        dist, frontier, d = carry
        nxt = _spread(frontier) & free & (dist < 0)
        return jnp.where(nxt, d + 1, dist), nxt, d + 1

    dist0 = jnp.where(start, 0, -1).astype(jnp.int32)
    dist, _, _ = jax.lax.while_loop(cond, body, (dist0, start, jnp.int32(0)))
    return dist


# Host-side BFS (numpy, Python loop): the one search behind the studio's drawn path and the
# named mazes' goal placement; it agrees with ``distance_map`` on every distance.
_MOVES = ((1, 0), (-1, 0), (0, 1), (0, -1))  # right, left, down, up: fixes ties between paths


def host_bfs(free: np.ndarray, start: tuple[int, int]) -> dict[tuple[int, int], tuple | None]:
    """BFS over 4-connected True cells of ``free`` (H, W) from ``start = (x, y)``.

    Returns:
        Every reached cell ``(x, y)`` (``start`` first, then in BFS order, so in order of
        distance) mapped to the cell it was reached from (None for ``start``); empty when
        ``start`` is off the grid or not free.
    """
    free = np.asarray(free, bool)
    h, w = free.shape
    x, y = start
    if not (0 <= x < w and 0 <= y < h and free[y, x]):
        return {}
    parent: dict[tuple[int, int], tuple | None] = {start: None}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        for dx, dy in _MOVES:
            nx, ny = cell[0] + dx, cell[1] + dy
            if 0 <= nx < w and 0 <= ny < h and free[ny, nx] and (nx, ny) not in parent:
                parent[(nx, ny)] = cell
                queue.append((nx, ny))
    return parent


def host_distances(parent: dict[tuple[int, int], tuple | None]) -> dict[tuple[int, int], int]:
    """Step distances of the cells of a ``host_bfs`` result."""
    dist: dict[tuple[int, int], int] = {}
    for cell, prev in parent.items():  # BFS order: a parent comes before its children
        dist[cell] = 0 if prev is None else dist[prev] + 1
    return dist


def solution_path(env: Any, level: Level) -> list[list[int]]:
    """Cells ``[x, y]`` of a shortest agent-to-goal path of one level (agent first, goal
    last; ``shortest_path_length + 1`` cells), ``[]`` when the goal is unreachable."""
    free = ~np.asarray(jax.device_get(blocked_map(level)), bool)
    start = tuple(int(v) for v in np.asarray(level.agent_pos))
    goal = tuple(int(v) for v in np.asarray(level.goal_pos))
    parent = host_bfs(free, start)
    if goal not in parent:
        return []
    path, cell = [], goal
    while cell is not None:
        path.append(list(cell))
        cell = parent[cell]
    return path[::-1]


def edit_form(env: Any) -> dict[str, Any]:
    """How a person edits a maze level: on a grid of up to ``max_size`` cells a side."""
    return {"kind": "grid", "max_size": int(env.max_size)}


def shortest_path_length(level: Level) -> chex.Array:
    """Scalar int32: fewest moves from agent to goal (turns ignored); -1 if unreachable."""
    free = ~blocked_map(level)
    dist = distance_map(free, level.agent_pos, level.goal_pos)
    goal = cell_mask(level.goal_pos, free.shape) & free
    return jnp.max(jnp.where(goal, dist, -1)).astype(jnp.int32)


def level_metrics(env: Any, level: Level) -> dict[str, chex.Array]:
    """Scalar float32 analytics: ``shortest_path`` (-1 if unsolvable), ``num_walls``
    (inside the level area only) and ``solvable`` (1.0 / 0.0)."""
    path = shortest_path_length(level)
    inside = inside_mask(level.width, level.height, level.wall_map.shape)
    return {
        "shortest_path": path.astype(jnp.float32),
        "num_walls": jnp.sum(level.wall_map & inside).astype(jnp.float32),
        "solvable": (path >= 0).astype(jnp.float32),
    }


# --- text format ----------------------------------------------------------------------


def _text_rows(text: str, first_line: int = 1) -> list[tuple[int, int, str]]:
    """Non-blank rows of one level as (line number, column offset, row text)."""
    lines = text.splitlines()
    nonblank = [i for i, line in enumerate(lines) if line.strip()]
    if not nonblank:
        raise ValueError(f"line {first_line}: empty level text")
    rows = []
    for i in range(nonblank[0], nonblank[-1] + 1):
        line_no = first_line + i
        stripped = lines[i].strip()
        if not stripped:
            raise ValueError(
                f"line {line_no}, column 1: blank line inside a level "
                "(blank lines separate levels only in multi-level files)"
            )
        offset = len(lines[i]) - len(lines[i].lstrip())
        rows.append((line_no, offset, stripped))
    return rows


def _check_shape(rows: list[tuple[int, int, str]], max_size: int) -> None:
    first_line, _, first = rows[0]
    for line_no, offset, row in rows:
        if len(row) > max_size:
            raise ValueError(
                f"line {line_no}, column {offset + max_size + 1}: row has {len(row)} cells, "
                f"more than the env's max_size {max_size}"
            )
        if len(row) != len(first):
            col = offset + min(len(row), len(first)) + 1
            raise ValueError(
                f"line {line_no}, column {col}: ragged rows: this row has {len(row)} cells "
                f"but line {first_line} has {len(first)}"
            )
    if len(rows) > max_size:
        raise ValueError(
            f"line {rows[max_size][0]}, column {rows[max_size][1] + 1}: level has {len(rows)} "
            f"rows, more than the env's max_size {max_size}"
        )


# Cell codes of the text format's characters (ASCII); 255: not a cell character.
_FREE, _WALL, _GOAL, _AGENT = 0, 1, 2, 3  # _AGENT + direction for the agent
_CODES = np.full(256, 255, np.uint8)
_CODES[ord(FREE_CHAR)], _CODES[ord(WALL_CHAR)], _CODES[ord(GOAL_CHAR)] = _FREE, _WALL, _GOAL
for _d, _c in enumerate(AGENT_CHARS):
    _CODES[ord(_c)] = _AGENT + _d


def _parse_rows(rows: list[tuple[int, int, str]], max_size: int) -> Level:
    """The level of checked rows, in time linear in its cells (numpy, host arrays).

    Errors name the first problem in reading order, as a scan cell by cell would: an unknown
    character, or a second agent or goal (naming where the first is)."""
    _check_shape(rows, max_size)
    height, width = len(rows), len(rows[0][2])
    text = "".join(row for _, _, row in rows)
    if text.isascii():
        codes = _CODES[np.frombuffer(text.encode("ascii"), np.uint8)]
    else:  # no cell character is outside ASCII: such a character is unknown
        codes = np.array([_CODES[ord(c)] if c.isascii() else 255 for c in text], np.uint8)
    unknown = np.flatnonzero(codes == 255)
    agents = np.flatnonzero((codes >= _AGENT) & (codes != 255))
    goals = np.flatnonzero(codes == _GOAL)
    problems = []  # (cell index, None for an unknown character or (kind, first index))
    if unknown.size:
        problems.append((int(unknown[0]), None))
    for kind, found in (("agent", agents), ("goal", goals)):
        if found.size > 1:
            problems.append((int(found[1]), (kind, int(found[0]))))

    def where(i: int) -> tuple[int, int]:
        line_no, offset, _ = rows[i // width]
        return line_no, offset + i % width + 1

    if problems:
        i, repeated = min(problems, key=lambda p: p[0])
        line_no, col = where(i)
        char = text[i]
        if repeated is None:
            raise ValueError(
                f"line {line_no}, column {col}: unknown character {char!r}; expected "
                f"'#' wall, '.' free, 'G' goal or one of '>v<^' for the agent"
            )
        kind, first = repeated
        pline, pcol = where(first)
        raise ValueError(
            f"line {line_no}, column {col}: a second {kind} {char!r} "
            f"(the first is at line {pline}, column {pcol})"
        )
    for kind, found, chars in (("agent", agents, "'>', 'v', '<' or '^'"), ("goal", goals, "'G'")):
        if not found.size:
            raise ValueError(f"lines {rows[0][0]}-{rows[-1][0]}: the level has no {kind} ({chars})")
    walls = np.ones((max_size, max_size), dtype=bool)
    walls[:height, :width] = (codes == _WALL).reshape(height, width)
    agent, goal = int(agents[0]), int(goals[0])
    return Level(
        wall_map=walls,
        agent_pos=np.array([agent % width, agent // width], np.int32),
        agent_dir=np.array(int(codes[agent]) - _AGENT, np.int32),
        goal_pos=np.array([goal % width, goal // width], np.int32),
        width=np.array(width, np.int32),
        height=np.array(height, np.int32),
    )


def level_from_text(env: Any, text: str) -> Level:
    """Parses one level written in the text format, padded to ``env.max_size``.

    Leading/trailing blank lines and whitespace around each row are ignored, so JaxUED
    prefab strings (triple-quoted, ``.strip()``-ed by JaxUED) load unchanged.

    Raises:
        ValueError: naming the line and column of an unknown character, ragged rows, a
            missing or repeated agent or goal, or a level larger than ``env.max_size``.
    """
    level = _parse_rows(_text_rows(text), int(env.max_size))
    return jax.tree.map(jnp.asarray, level)


def levels_from_rows(env: Any, blocks) -> Level | None:
    """Many levels at once (the fast path of level files, ``Family.levels_from_rows``): the
    rows of each level, batched into one ``Level`` of numpy arrays, as ``level_from_text``
    would give them; None when any level is not plainly well formed (indented or padded
    rows, an unknown character, ragged rows, a missing or repeated agent or goal, too
    large), for ``level_from_text`` to name the problem."""
    n, count = int(env.max_size), len(blocks)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, rows in enumerate(blocks):
        groups.setdefault((len(rows), len(rows[0]) if rows else 0), []).append(i)
    walls = np.ones((count, n, n), bool)
    agent_pos, goal_pos = np.zeros((count, 2), np.int32), np.zeros((count, 2), np.int32)
    agent_dir = np.zeros(count, np.int32)
    width, height = np.zeros(count, np.int32), np.zeros(count, np.int32)
    for (h, w), index in groups.items():
        if not (1 <= h <= n and 1 <= w <= n):
            return None
        rows = [row for i in index for row in blocks[i]]
        if set(map(len, rows)) != {w}:
            return None
        text = "".join(rows)
        if not text.isascii():
            return None
        codes = _CODES[np.frombuffer(text.encode("ascii"), np.uint8)].reshape(len(index), h * w)
        agents = (codes >= _AGENT) & (codes != 255)
        goals = codes == _GOAL
        if (codes == 255).any() or (agents.sum(1) != 1).any() or (goals.sum(1) != 1).any():
            return None
        a, g = agents.argmax(1), goals.argmax(1)
        walls[index, :h, :w] = (codes == _WALL).reshape(len(index), h, w)
        agent_pos[index] = np.stack([a % w, a // w], 1)
        goal_pos[index] = np.stack([g % w, g // w], 1)
        agent_dir[index] = codes[np.arange(len(index)), a] - _AGENT
        width[index], height[index] = w, h
    return Level(wall_map=walls, agent_pos=agent_pos, agent_dir=agent_dir, goal_pos=goal_pos,
                 width=width, height=height)  # fmt: skip


def level_to_text(env: Any, level: Level) -> str:
    """Writes one (unbatched) level in the text format; inverse of ``level_from_text``."""
    walls = np.asarray(level.wall_map)
    if walls.shape != (env.max_size, env.max_size):
        raise ValueError(
            f"level_to_text takes one level of shape ({env.max_size}, {env.max_size}), "
            f"got wall_map of shape {walls.shape}"
        )
    width, height = int(level.width), int(level.height)
    grid = np.where(walls[:height, :width], WALL_CHAR, FREE_CHAR).astype("<U1")
    for name, pos, char in (
        ("goal", level.goal_pos, GOAL_CHAR),
        ("agent", level.agent_pos, AGENT_CHARS[int(level.agent_dir) % 4]),
    ):
        x, y = (int(v) for v in np.asarray(pos))
        if not (0 <= x < width and 0 <= y < height) or grid[y, x] != FREE_CHAR:
            raise ValueError(
                f"cannot write the level as text: the {name} at {(x, y)} is "
                "outside the level, on a wall or on the other object"
            )
        grid[y, x] = char
    return "\n".join("".join(row) for row in grid)
