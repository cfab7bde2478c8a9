"""Image helpers for ued's galleries and ``scripts/render.py`` (families' renderers only
return arrays): tiling pictures into a captioned grid, and writing PNG and GIF files
(Pillow only, no plotting stack)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

BACKGROUND = (255, 255, 255)
CAPTION_COLOR = (0, 0, 0)
CAPTION_HEIGHT = 14


def tile(
    images: Sequence[np.ndarray],
    ncols: int,
    captions: Sequence[str] | None = None,
    pad: int = 4,
) -> np.ndarray:
    """Tiles uint8 (H, W, 3) images (sizes may differ) row by row into one image.

    Each cell is ``max H + 2 pad (+ CAPTION_HEIGHT with captions)`` by ``max W + 2 pad``;
    the result is uint8 (rows * cell_h, min(ncols, n) * cell_w, 3).
    """
    if not images:
        raise ValueError("tile needs at least one image")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"got {len(captions)} captions for {len(images)} images")
    images = [np.asarray(im, dtype=np.uint8) for im in images]
    ncols = min(ncols, len(images))
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


def save_gif(path: str | Path, frames: Sequence[np.ndarray], fps: float = 8.0) -> Path:
    """Writes uint8 (H, W, 3) frames as a looping GIF; returns the path."""
    if not frames:
        raise ValueError("save_gif needs at least one frame")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pictures = [Image.fromarray(np.asarray(f, np.uint8)[..., :3]) for f in frames]
    duration = max(20, int(round(1000 / fps)))
    pictures[0].save(
        path, format="GIF", save_all=True, append_images=pictures[1:], duration=duration, loop=0
    )
    return path
