"""The maze's program space builds what its parameters say: perfect mazes are spanning trees
of the chosen size, rooms with doors connect, and the goal-distance band moves the goal; the
generator reads its program by dim name, so the dims' order is free."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.core import get_family
from envs.maze.level import blocked_map, distance_map
from envs.maze.programs import dims, make_generate

SIZES = (5, 7, 9, 11, 13)
REPEATS = 4
SPACE = get_family("maze").programs(get_family("maze").make_env())


def program(size, maze=0.0, loops=0.0, rooms=1, walls=0.0, goal=0.5, agent=0):
    return SPACE.pack(
        {"size": size, "maze_fraction": maze, "loops": loops, "rooms": rooms,
         "wall_density": walls, "goal_distance": goal, "agent_place": agent}
    )  # fmt: skip


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


def test_generate_reads_the_program_by_name_not_by_position():
    # The same named program in the dims' order and reversed gives the same level.
    env = get_family("maze").make_env()
    names = tuple(d.name for d in dims(env))
    forward = make_generate(env, names)
    backward = make_generate(env, names[::-1])
    p = program(11, maze=0.5, loops=0.2, rooms=2, walls=0.1, goal=0.8, agent=1)
    assert SPACE.names == names and SPACE.unpack(jnp.asarray(p))["size"] == 11
    a = forward(jax.random.key(3), jnp.asarray(p))
    b = backward(jax.random.key(3), jnp.asarray(p[::-1].copy()))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    with pytest.raises(KeyError, match="no program dim 'sise'"):
        SPACE.pack({"sise": 7})
