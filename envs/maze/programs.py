"""The maze's program space: a compositional generator whose parameters mix structures.

A program (see ``envs.programs``) sets, for one level:

- ``size``: odd side length, placed top-left in the ``max_size`` grid (the rest is padding);
- ``maze_fraction``: the left ``maze_fraction`` of the columns is a perfect maze (a random
  spanning tree, ``envs.maze.generators``), the rest an open area;
- ``loops``: the chance each maze wall between two maze rooms opens (cycles, corridors);
- ``rooms``: the open area is partitioned into ``rooms`` x ``rooms`` rooms by wall lines
  with one door per room side, so all rooms connect;
- ``wall_density``: the chance each open-area cell becomes a wall (clutter);
- ``agent_place``: 0 anywhere, 1 the top-left corner third, 2 the central third;
- ``goal_distance``: the goal is placed among the cells the agent can reach, at about this
  fraction of the farthest reachable distance (a band of +-20%).

Levels are valid by construction (agent and goal on distinct free cells of the level area);
they are solvable unless the agent is walled in (then the goal is put anywhere). The
descriptors are ``shortest_path``, ``wall_fraction``, ``dead_ends`` (fraction of free cells
with one free neighbour) and ``branching`` (fraction with three or more).

The widening schedule unlocks larger sizes, more rooms, more maze and more clutter in three
stages.

``generate`` reads the program by dim name (``envs.programs.unpack``), so the order of
``DIMS`` is free. The maze's second space, ``latent`` (a generative model's latent box,
``envs.maze.latent``), is registered here by name and imported only when a run asks for it.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from envs.maze.env import Maze
from envs.maze.generators import carve_spanning_tree
from envs.maze.level import (
    Level,
    blocked_map,
    cell_mask,
    distance_map,
    inside_mask,
    pick_cell,
    shortest_path_length,
)
from envs.programs import Dim, ProgramSpace, register_space, unpack

MAX_ROOMS = 4  # rooms per side at most (static: sets the number of wall lines)
GOAL_BAND = 0.2  # half-width of the goal distance band, as a fraction of the farthest cell


def dims(env: Maze) -> tuple[Dim, ...]:
    """The program's parameters (their order is the vector's, and free: read by name)."""
    n = env.max_size
    largest = n if n % 2 else n - 1
    smallest = min(5, largest)
    return (
        Dim("size", "discrete", smallest, largest, step=2),
        Dim("wall_density", "continuous", 0.0, 0.4),
        Dim("rooms", "discrete", 1, MAX_ROOMS),
        Dim("maze_fraction", "continuous", 0.0, 1.0),
        Dim("loops", "continuous", 0.0, 0.5),
        Dim("goal_distance", "continuous", 0.0, 1.0),
        Dim("agent_place", "discrete", 0, 2),
    )


def _room_walls(key: chex.PRNGKey, size: chex.Array, rooms: chex.Array, shape) -> chex.Array:
    """(H, W) bool: wall lines cutting the ``size`` square into ``rooms`` x ``rooms`` rooms,
    with one door in every line segment between two rooms."""
    ys, xs = jnp.indices(shape)
    r = jnp.clip(rooms, 1, jnp.maximum(size // 2, 1))
    i = jnp.arange(MAX_ROOMS + 1)
    # Line positions pos[1..r-1]; pos[0] = -1 and pos[r] = size bound the bands.
    pos = jnp.where(i == 0, -1, jnp.where(i >= r, size, (i * size) // r))
    line = (i >= 1) & (i < r)  # (R + 1,)
    band_lo, band_hi = pos[:-1] + 1, pos[1:] - 1  # (R,) cells of each band between lines
    band = jnp.arange(MAX_ROOMS) < r
    u = jax.random.uniform(key, (2, MAX_ROOMS + 1, MAX_ROOMS))
    door = band_lo[None, None] + jnp.floor(u * (band_hi - band_lo + 1)[None, None]).astype(
        jnp.int32
    )
    on_v = line[:, None, None] & (xs[None] == pos[:, None, None])  # (R + 1, H, W)
    on_h = line[:, None, None] & (ys[None] == pos[:, None, None])
    walls = on_v.any(0) | on_h.any(0)
    ok = line[:, None] & band[None, :]  # (R + 1, R) line i, band j
    door_v = (
        ok[..., None, None] & (xs == pos[:, None, None, None]) & (ys == door[0][..., None, None])
    )
    door_h = (
        ok[..., None, None] & (ys == pos[:, None, None, None]) & (xs == door[1][..., None, None])
    )
    return walls & ~(door_v | door_h).any((0, 1))


def _agent_region(place: chex.Array, size: chex.Array, shape) -> chex.Array:
    ys, xs = jnp.indices(shape)
    third = jnp.maximum(size // 3, 1)
    corner = (xs < third) & (ys < third)
    centre = (jnp.abs(2 * xs - (size - 1)) <= third) & (jnp.abs(2 * ys - (size - 1)) <= third)
    anywhere = jnp.ones(shape, bool)
    return jnp.select([place == 1, place == 2], [corner, centre], anywhere)


def _pick(key: chex.PRNGKey, *masks: chex.Array) -> chex.Array:
    """A random cell of the first mask with a True cell (the last one is the fallback)."""
    choice = masks[-1]
    for mask in reversed(masks[:-1]):
        choice = jnp.where(mask.any(), mask, choice)
    return pick_cell(key, choice)


def make_generate(env: Maze, names: tuple[str, ...] | None = None):
    """``(key, program) -> Level``, the compositional generator (see the module docstring);
    ``names`` is the program's dim order (default: ``dims(env)``'s)."""
    n = env.max_size
    largest = n if n % 2 else n - 1
    shape = (n, n)
    names = names or tuple(d.name for d in dims(env))

    def generate(key: chex.PRNGKey, program: chex.Array) -> Level:
        keys = jax.random.split(key, 7)
        p = unpack(names, program)
        size = p["size"].astype(jnp.int32)
        ys, xs = jnp.indices(shape)
        inside = inside_mask(size, size, shape)
        small = carve_spanning_tree(keys[0], largest, (size + 1) // 2)
        maze_free = jnp.zeros(shape, bool).at[:largest, :largest].set(small)
        between = (xs % 2) != (ys % 2)  # maze walls that separate two maze rooms
        loops = between & (jax.random.uniform(keys[1], shape) < p["loops"])
        maze_walls = ~(maze_free | loops)
        in_maze = xs < jnp.round(p["maze_fraction"] * size)
        clutter = jax.random.uniform(keys[2], shape) < p["wall_density"]
        rooms = _room_walls(keys[3], size, p["rooms"].astype(jnp.int32), shape)
        walls = jnp.where(in_maze, maze_walls, rooms | clutter) | ~inside
        region = _agent_region(p["agent_place"].astype(jnp.int32), size, shape) & inside
        agent = _pick(keys[4], region & ~walls, inside & ~walls, inside)
        walls = walls & ~cell_mask(agent, shape)
        dist = distance_map(~walls, agent)
        far = jnp.max(dist)
        target = p["goal_distance"] * far
        band = jnp.abs(dist - target) <= jnp.maximum(GOAL_BAND * far, 1.0)
        reach = dist > 0
        goal = _pick(keys[5], reach & band, reach, inside & ~cell_mask(agent, shape))
        walls = walls & ~cell_mask(goal, shape)
        return Level(
            wall_map=walls,
            agent_pos=agent,
            agent_dir=jax.random.randint(keys[6], (), 0, 4, dtype=jnp.int32),
            goal_pos=goal,
            width=size,
            height=size,
        )

    return generate


def describe(level: Level) -> chex.Array:
    """(4,) float32: shortest path (-1 unsolvable), wall fraction, dead-end and branching
    fractions of the free cells."""
    blocked = blocked_map(level)
    inside = inside_mask(level.width, level.height, blocked.shape)
    free = ~blocked
    p = jnp.pad(free, 1)
    nbrs = p[:-2, 1:-1].astype(jnp.int32) + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]
    count = jnp.maximum(free.sum(), 1)
    return jnp.stack(
        [
            shortest_path_length(level).astype(jnp.float32),
            (level.wall_map & inside).sum() / jnp.maximum(inside.sum(), 1),
            (free & (nbrs == 1)).sum() / count,
            (free & (nbrs >= 3)).sum() / count,
        ]
    ).astype(jnp.float32)


def make_programs(env: Maze) -> ProgramSpace:
    """The maze program space of ``env`` (its ``max_size`` bounds the size)."""
    n = env.max_size
    largest = n if n % 2 else n - 1
    smallest = min(5, largest)
    space_dims = dims(env)
    stages = (
        {"size": (smallest, min(7, largest)), "rooms": (1, 2), "maze_fraction": (0.0, 0.5),
         "wall_density": (0.0, 0.2)},
        {"size": (smallest, min(9, largest)), "rooms": (1, 3), "maze_fraction": (0.0, 0.75),
         "wall_density": (0.0, 0.3)},
        {},
    )  # fmt: skip
    return ProgramSpace(
        dims=space_dims,
        generate=make_generate(env, tuple(d.name for d in space_dims)),
        describe=describe,
        descriptor_names=("shortest_path", "wall_fraction", "dead_ends", "branching"),
        descriptor_low=(0.0, 0.0, 0.0, 0.0),
        descriptor_high=(float(3 * n), 0.6, 0.3, 0.8),
        stages=stages,
    )


def make_latent_programs(env: Maze, **options) -> ProgramSpace:
    """The ``latent`` space (``envs.maze.latent``), imported when first asked for: it loads a
    trained level model (flax) that the hand-written space does not need."""
    from envs.maze.latent import make_latent_programs as make

    return make(env, **options)


def latent_codec(env: Maze, **options):
    """The grid encoding the ``latent`` space's model is trained on (imported when asked)."""
    from envs.maze.latent import codec

    return codec(env, **options)


register_space("maze", "latent", make_latent_programs, codec=latent_codec)
