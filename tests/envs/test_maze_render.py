"""Maze pictures: render, galleries and PNG files."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from envs import images as images_lib
from envs.maze import Maze, family
from envs.maze.render import AGENT_COLOR, GOAL_COLOR, WALL_COLOR

TILE = 16


@pytest.fixture(scope="module")
def env():
    return Maze()


def _tile(image, x, y):
    return image[y * TILE : (y + 1) * TILE, x * TILE : (x + 1) * TILE]


def test_render_cells_and_agent(env):
    level = family.level_from_text(env, ">..#\n##.#\n...G")
    image = family.render(env, level, tile=TILE)
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
        turned = family.render(env, level.replace(agent_dir=jnp.int32(direction)), tile=TILE)
        np.testing.assert_array_equal(np.all(_tile(turned, 0, 0) == AGENT_COLOR, -1), expected)


def test_render_accepts_states(env):
    level = family.example_level(env)
    params = env.default_params()
    _, state = env.reset_to_level(jax.random.key(0), level, params)
    expected = family.render(env, level)
    np.testing.assert_array_equal(family.render(env, state), expected)
    np.testing.assert_array_equal(family.render(env, state.env_state), expected)
    moved = env.step(jax.random.key(1), state, 2, params).state
    assert not np.array_equal(family.render(env, moved), expected)
    with pytest.raises(TypeError):
        family.render(env, "not a level")
    with pytest.raises(ValueError, match="tile"):
        family.render(env, level, tile=0)


def test_render_grid_and_png(env, tmp_path):
    images = [family.render(env, family.example_level(env), tile=4)] * 3
    size = 13 * 4
    plain = images_lib.tile(images, ncols=2, pad=2)
    assert plain.shape == (2 * (size + 4), 2 * (size + 4), 3) and plain.dtype == np.uint8
    np.testing.assert_array_equal(plain[2 : 2 + size, 2 : 2 + size], images[0])
    np.testing.assert_array_equal(plain[size + 4 :, size + 4 :], 255)  # empty fourth cell
    captioned = images_lib.tile(images, ncols=3, captions=["a", "b", "c"], pad=2)
    assert captioned.shape == (size + 4 + 14, 3 * (size + 4), 3)
    assert (captioned[size + 4 :] < 255).any()  # caption text was drawn
    with pytest.raises(ValueError, match="captions"):
        images_lib.tile(images, ncols=2, captions=["a"])
    path = images_lib.save_png(tmp_path / "sub" / "maze.png", captioned)
    np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), captioned)
    with pytest.raises(ValueError, match="uint8"):
        images_lib.save_png(tmp_path / "bad.png", captioned.astype(np.float32))
