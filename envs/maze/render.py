"""Pictures of maze levels and states (host-side NumPy + PIL, not jitted)."""

from __future__ import annotations

from typing import Any

import numpy as np

from envs.core import ReplayState
from envs.maze.env import MazeState
from envs.maze.level import Level

FREE_COLOR = (24, 24, 24)
WALL_COLOR = (110, 110, 110)
GOAL_COLOR = (40, 180, 70)
AGENT_COLOR = (220, 40, 40)
GRID_COLOR = (48, 48, 48)


def _as_level(obj: Any) -> Level:
    if isinstance(obj, ReplayState):
        obj = obj.env_state
    if isinstance(obj, MazeState):
        obj = obj.current_level()
    if not isinstance(obj, Level):
        raise TypeError(f"render takes a maze Level, MazeState or ReplayState, got {type(obj)}")
    if np.ndim(obj.wall_map) != 2:
        raise ValueError(
            f"render takes one level, got a batch (wall_map shape {np.shape(obj.wall_map)}); "
            "index it first"
        )
    return obj


def _triangle(tile: int, direction: int) -> np.ndarray:
    """(tile, tile) bool mask of a triangle pointing in ``direction`` (0 right .. 3 up)."""
    centers = (np.arange(tile) + 0.5) / tile
    v, u = np.meshgrid(centers, centers, indexing="ij")  # v: row, u: column, in [0, 1]
    tip, back, half = 0.85, 0.2, 0.32
    mask = (u >= back) & (np.abs(v - 0.5) <= (tip - u) / (tip - back) * half)
    # np.rot90 turns counter-clockwise as displayed: right -> up is k=1, right -> down k=-1.
    return np.rot90(mask, k={0: 0, 1: -1, 2: 2, 3: 1}[direction % 4])


def render(env: Any, level_or_state: Any, tile: int = 16) -> np.ndarray:
    """Draws one level or state as uint8 (max_size * tile, max_size * tile, 3).

    Walls and padding are grey, free cells dark, the goal green and the agent a red
    triangle pointing where it faces. Accepts a ``Level``, a ``MazeState`` or an
    ``envs.core.ReplayState`` (its current state is drawn).
    """
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 1:
        raise ValueError(f"tile must be a positive int, got {tile!r}")
    level = _as_level(level_or_state)
    walls = np.asarray(level.wall_map, dtype=bool).copy()
    h, w = walls.shape
    walls[int(level.height) :, :] = True
    walls[:, int(level.width) :] = True
    cells = np.where(walls[..., None], WALL_COLOR, FREE_COLOR).astype(np.uint8)
    gx, gy = (int(v) for v in np.asarray(level.goal_pos))
    if 0 <= gx < w and 0 <= gy < h:
        cells[gy, gx] = GOAL_COLOR
    image = np.repeat(np.repeat(cells, tile, axis=0), tile, axis=1)
    if tile >= 8:
        image[::tile, :] = GRID_COLOR
        image[:, ::tile] = GRID_COLOR
    ax, ay = (int(v) for v in np.asarray(level.agent_pos))
    if 0 <= ax < w and 0 <= ay < h:
        patch = image[ay * tile : (ay + 1) * tile, ax * tile : (ax + 1) * tile]
        patch[_triangle(tile, int(level.agent_dir))] = AGENT_COLOR
    return image
