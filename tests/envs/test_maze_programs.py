"""The maze's program space builds what its parameters say: perfect mazes are spanning trees
of the chosen size, rooms with doors connect, and the goal-distance band moves the goal."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.core import get_family
from envs.maze.level import blocked_map, distance_map
from envs.maze.programs import AGENT, GOAL, LOOPS, MAZE, ROOMS, SIZE, WALLS

SIZES = (5, 7, 9, 11, 13)
REPEATS = 4


def program(size, maze=0.0, loops=0.0, rooms=1, walls=0.0, goal=0.5, agent=0):
    p = np.zeros(7, np.float32)
    p[[SIZE, MAZE, LOOPS, ROOMS, WALLS, GOAL, AGENT]] = size, maze, loops, rooms, walls, goal, agent
    return p


@pytest.fixture(scope="module")
def built():
    family = get_family("maze")
    env = family.make_env()  # max_size 13
    space = family.programs(env)
    perfect = [program(s, maze=1.0) for s in SIZES]
    rooms = [program(13, rooms=3), program(13, rooms=4)]
    near = [program(13, goal=0.0)] * REPEATS
    far = [program(13, goal=1.0)] * REPEATS
    programs = jnp.asarray(np.stack(perfect + rooms + near + far))
    keys = jax.random.split(jax.random.key(0), len(programs))

    def run(keys, programs):
        levels = jax.vmap(space.generate)(keys, programs)
        free = jax.vmap(lambda lv: ~blocked_map(lv))(levels)
        dist = jax.vmap(distance_map)(free, levels.agent_pos)
        return levels, free, dist, jax.vmap(space.describe)(levels)

    return jax.device_get(jax.jit(run)(keys, programs))


def test_perfect_mazes_are_spanning_trees_of_their_size(built):
    levels, free, dist, _ = built
    for i, size in enumerate(SIZES):
        assert int(levels.width[i]) == int(levels.height[i]) == size
        f = free[i]
        assert not f[size:, :].any() and not f[:, size:].any()  # padding is wall
        edges = (f[1:, :] & f[:-1, :]).sum() + (f[:, 1:] & f[:, :-1]).sum()
        assert edges == f.sum() - 1  # a tree: one edge fewer than cells
        assert np.all((dist[i] >= 0) == f)  # connected: every free cell reachable


def test_rooms_with_doors_connect_every_free_cell(built):
    _, free, dist, descriptors = built
    for i in (len(SIZES), len(SIZES) + 1):
        assert np.all((dist[i] >= 0) == free[i])
        assert (~free[i][:13, :13]).sum() > 0  # the wall lines are there
        assert descriptors[i, 0] > 0  # solvable: a shortest path exists


def test_goal_distance_band_moves_the_goal(built):
    _, _, _, descriptors = built
    start = len(SIZES) + 2
    near = descriptors[start : start + REPEATS, 0]
    far = descriptors[start + REPEATS :, 0]
    assert np.all(near >= 1) and far.min() > near.max()
