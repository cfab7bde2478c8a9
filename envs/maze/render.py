"""Pictures of maze levels and states (host-side NumPy + PIL, not jitted)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from envs.core import ReplayState
from envs.maze.env import MazeState, state_to_level
from envs.maze.level import Level

FREE_COLOR = (24, 24, 24)
WALL_COLOR = (110, 110, 110)
GOAL_COLOR = (40, 180, 70)
AGENT_COLOR = (220, 40, 40)
GRID_COLOR = (48, 48, 48)
BACKGROUND = (255, 255, 255)
CAPTION_COLOR = (0, 0, 0)
CAPTION_HEIGHT = 14


def _as_level(obj: Any) -> Level:
    if isinstance(obj, ReplayState):
        obj = obj.env_state
    if isinstance(obj, MazeState):
        obj = state_to_level(obj)
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


def render_grid(
    images: Sequence[np.ndarray],
    ncols: int,
    captions: Sequence[str] | None = None,
    pad: int = 4,
) -> np.ndarray:
    """Tiles images (uint8 (H, W, 3), sizes may differ) into one gallery image.

    Args:
        images: the pictures, laid out row by row.
        ncols: pictures per row (>= 1).
        captions: optional text under each picture (same length as ``images``).
        pad: pixels of white space around each picture.

    Returns:
        uint8 (rows * cell_h, ncols * cell_w, 3).
    """
    if not images:
        raise ValueError("render_grid needs at least one image")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"got {len(captions)} captions for {len(images)} images")
    images = [np.asarray(im, dtype=np.uint8) for im in images]
    cell_h = max(im.shape[0] for im in images) + 2 * pad
    cell_h += CAPTION_HEIGHT if captions is not None else 0
    cell_w = max(im.shape[1] for im in images) + 2 * pad
    nrows = -(-len(images) // ncols)
    canvas = np.full((nrows * cell_h, ncols * cell_w, 3), BACKGROUND, dtype=np.uint8)
    for i, im in enumerate(images):
        top, left = (i // ncols) * cell_h + pad, (i % ncols) * cell_w + pad
        canvas[top : top + im.shape[0], left : left + im.shape[1]] = im[..., :3]
    if captions is None:
        return canvas
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    for i, caption in enumerate(captions):
        top = (i // ncols) * cell_h + cell_h - CAPTION_HEIGHT - pad // 2
        draw.text(((i % ncols) * cell_w + pad, top), str(caption), fill=CAPTION_COLOR)
    return np.asarray(picture)


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Writes a uint8 (H, W, 3) image as PNG, creating parent folders; returns the path."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"save_png takes uint8 (H, W, 3), got {image.dtype} {image.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, format="PNG")
    return path
