"""Maze pictures: render, galleries and PNG files."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from envs.maze import Maze, level_from_text, render, render_grid, save_png
from envs.maze.render import AGENT_COLOR, GOAL_COLOR, WALL_COLOR

TILE = 16


@pytest.fixture(scope="module")
def env():
    return Maze()


def _tile(image, x, y):
    return image[y * TILE : (y + 1) * TILE, x * TILE : (x + 1) * TILE]


def test_render_cells_and_agent(env):
    level = level_from_text(env, ">..#\n##.#\n...G")
    image = render(env, level, tile=TILE)
    assert image.shape == (13 * TILE, 13 * TILE, 3) and image.dtype == np.uint8
    centre = TILE // 2
    assert tuple(_tile(image, 3, 0)[centre, centre]) == WALL_COLOR  # wall
    assert tuple(_tile(image, 12, 12)[centre, centre]) == WALL_COLOR  # padding
    assert tuple(_tile(image, 3, 2)[centre, centre]) == GOAL_COLOR
    agent = _tile(image, 0, 0)
    red = np.all(agent == AGENT_COLOR, axis=-1)
    assert red.any()
    # Facing right the triangle's tip is on the right; facing left it is mirrored.
    assert red[centre, TILE - 4] and not red[centre, 1]
    for direction, expected in ((2, red[:, ::-1]), (3, np.rot90(red)), (1, np.rot90(red, -1))):
        turned = render(env, level.replace(agent_dir=jnp.int32(direction)), tile=TILE)
        np.testing.assert_array_equal(np.all(_tile(turned, 0, 0) == AGENT_COLOR, -1), expected)


def test_render_accepts_states(env):
    level = env.example_level()
    params = env.default_params()
    _, state = env.reset_to_level(jax.random.key(0), level, params)
    expected = render(env, level)
    np.testing.assert_array_equal(render(env, state), expected)
    np.testing.assert_array_equal(render(env, state.env_state), expected)
    moved = env.step(jax.random.key(1), state, 2, params).state
    assert not np.array_equal(render(env, moved), expected)
    with pytest.raises(TypeError):
        render(env, "not a level")
    with pytest.raises(ValueError, match="tile"):
        render(env, level, tile=0)


def test_render_grid_and_png(env, tmp_path):
    images = [render(env, env.example_level(), tile=4)] * 3
    size = 13 * 4
    plain = render_grid(images, ncols=2, pad=2)
    assert plain.shape == (2 * (size + 4), 2 * (size + 4), 3) and plain.dtype == np.uint8
    np.testing.assert_array_equal(plain[2 : 2 + size, 2 : 2 + size], images[0])
    np.testing.assert_array_equal(plain[size + 4 :, size + 4 :], 255)  # empty fourth cell
    captioned = render_grid(images, ncols=3, captions=["a", "b", "c"], pad=2)
    assert captioned.shape == (size + 4 + 14, 3 * (size + 4), 3)
    assert (captioned[size + 4 :] < 255).any()  # caption text was drawn
    with pytest.raises(ValueError, match="captions"):
        render_grid(images, ncols=2, captions=["a"])
    path = save_png(tmp_path / "sub" / "maze.png", captioned)
    np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), captioned)
    with pytest.raises(ValueError, match="uint8"):
        save_png(tmp_path / "bad.png", captioned.astype(np.float32))
