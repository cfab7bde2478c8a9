"""Maze level generators: ``make_<name>(env, **options) -> (key -> Level)``.

Every generator is pure, jittable and vmappable over keys, and returns valid levels (agent
and goal on distinct free cells inside the level area). Options are static Python values,
validated when the generator is made.
"""

from __future__ import annotations

from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp

from envs.core import check_int
from envs.maze.env import Maze
from envs.maze.level import DIR_TO_VEC, Level, cell_mask, pick_cell

Generator = Callable[[chex.PRNGKey], Level]


def place_agent_and_goal(
    key: chex.PRNGKey, free: chex.Array, wall_map: chex.Array, width: int, height: int
) -> Level:
    """Builds a level with goal and agent on distinct random cells of ``free`` (H, W).

    ``free`` must have at least two True cells; the agent's direction is uniform in 0..3.
    """
    goal_key, agent_key, dir_key = jax.random.split(key, 3)
    goal = pick_cell(goal_key, free)
    agent = pick_cell(agent_key, free & ~cell_mask(goal, free.shape))
    return Level(
        wall_map=wall_map.astype(jnp.bool_),
        agent_pos=agent,
        agent_dir=jax.random.randint(dir_key, (), 0, 4, dtype=jnp.int32),
        goal_pos=goal,
        width=jnp.asarray(width, jnp.int32),
        height=jnp.asarray(height, jnp.int32),
    )


def make_random_walls(
    env: Maze, num_walls: int = 25, min_walls: int | None = None, with_replacement: bool = False
) -> Generator:
    """Domain randomisation: random walls on a full ``max_size`` grid, then agent and goal.

    Args:
        env: the maze env (sets the grid size).
        num_walls: number of walls, or the maximum when ``min_walls`` is given.
        min_walls: if given, each level draws its wall count uniformly in
            ``[min_walls, num_walls]``.
        with_replacement: draw the wall cells with replacement, so repeats make fewer
            distinct walls (about 23.3 for 25 draws on 13x13), as JaxUED's
            ``make_level_generator`` (src/jaxued/environments/maze/util.py) and minimax do;
            by default exactly ``num_walls`` distinct cells become walls.

    Returns:
        ``key -> Level``. Levels are valid but not necessarily solvable.
    """
    n = env.max_size
    cells = n * n
    num_walls = check_int("generator option num_walls", num_walls, 0, cells - 2)
    if min_walls is not None:
        min_walls = check_int("generator option min_walls", min_walls, 0, num_walls)
    if not isinstance(with_replacement, bool):
        raise ValueError(f"with_replacement={with_replacement!r}; must be true or false")

    def generate(key: chex.PRNGKey) -> Level:
        perm_key, count_key, place_key = jax.random.split(key, 3)
        if min_walls is None:
            count = jnp.int32(num_walls)
        else:
            count = jax.random.randint(count_key, (), min_walls, num_walls + 1, dtype=jnp.int32)
        if with_replacement:
            # Draws past `count` land out of bounds and are dropped.
            draws = jax.random.randint(perm_key, (num_walls,), 0, cells)
            draws = jnp.where(jnp.arange(num_walls) < count, draws, cells)
            walls = jnp.zeros(cells, bool).at[draws].set(True, mode="drop").reshape(n, n)
            return place_agent_and_goal(place_key, ~walls, walls, n, n)
        # Rank the cells in a random order: ranks 0 and 1 stay free for agent and goal,
        # the next `count` become walls.
        order = jax.random.permutation(perm_key, cells)
        rank = jnp.zeros(cells, jnp.int32).at[order].set(jnp.arange(cells, dtype=jnp.int32))
        rank = rank.reshape(n, n)
        walls = (rank >= 2) & (rank < 2 + count)
        return place_agent_and_goal(place_key, rank < 2, walls, n, n)

    return generate


def make_empty_room(env: Maze) -> Generator:
    """A wall-free ``max_size`` room with random agent pose and goal."""
    n = env.max_size

    def generate(key: chex.PRNGKey) -> Level:
        free = jnp.ones((n, n), jnp.bool_)
        return place_agent_and_goal(key, free, ~free, n, n)

    return generate


def carve_spanning_tree(
    key: chex.PRNGKey, size: int, active: chex.Array | None = None
) -> chex.Array:
    """Random depth-first (recursive backtracker) maze; returns (size, size) bool free.

    Rooms are the cells with even (x, y); a passage opens the odd cell between two rooms.
    The loop runs a fixed ``2 * k * k`` iterations (k rooms per side): each one either
    pushes an unvisited neighbour of the stack top or pops, which is enough to visit all.
    ``active`` (a traced int <= k, default k) limits the maze to the top-left ``active`` x
    ``active`` rooms (a maze of side ``2 * active - 1``; cells beyond it are not free).
    """
    k = (size + 1) // 2
    limit = k if active is None else jnp.clip(active, 1, k)
    dirs = jnp.asarray(DIR_TO_VEC)
    start_key, loop_key = jax.random.split(key)
    first = jax.random.randint(start_key, (), 0, limit * limit, dtype=jnp.int32)
    start = (first // limit) * k + first % limit
    ys, xs = jnp.indices((size, size))
    free = (xs % 2 == 0) & (ys % 2 == 0) & (xs < 2 * limit - 1) & (ys < 2 * limit - 1)
    visited = jnp.zeros(k * k, jnp.bool_).at[start].set(True)
    stack = jnp.zeros(k * k, jnp.int32).at[0].set(start)

    def body(i, carry):
        free, visited, stack, sp = carry
        top = stack[jnp.maximum(sp - 1, 0)]
        pos = jnp.stack([top % k, top // k])
        nbrs = pos[None, :] + dirs  # (4, 2)
        inside = jnp.all((nbrs >= 0) & (nbrs < limit), axis=1)
        nbr_idx = jnp.clip(nbrs[:, 1], 0, k - 1) * k + jnp.clip(nbrs[:, 0], 0, k - 1)
        options = inside & ~visited[nbr_idx]
        noise = jax.random.uniform(jax.random.fold_in(loop_key, i), (4,))
        d = jnp.argmax(jnp.where(options, noise, -1.0))
        push = jnp.any(options) & (sp > 0)
        nxt = nbr_idx[d]
        passage = 2 * pos + dirs[d]
        free = free | (push & (xs == passage[0]) & (ys == passage[1]))
        visited = visited.at[nxt].set(visited[nxt] | push)
        slot = jnp.minimum(sp, k * k - 1)
        stack = stack.at[slot].set(jnp.where(push, nxt, stack[slot]))
        sp = jnp.where(push, sp + 1, jnp.maximum(sp - 1, 0))
        return free, visited, stack, sp

    carry = (free, visited, stack, jnp.int32(1))
    free, _, _, _ = jax.lax.fori_loop(0, 2 * k * k, body, carry)
    return free


def make_perfect_maze(env: Maze, size: int | None = None) -> Generator:
    """A random perfect maze (spanning tree, no cycles) of side ``size``, padded.

    Args:
        env: the maze env.
        size: odd side length in ``[3, max_size]``; default the largest odd size that fits.

    Returns:
        ``key -> Level`` with agent and goal on distinct random free cells (always solvable).
    """
    largest = env.max_size if env.max_size % 2 else env.max_size - 1
    if size is None:
        size = largest
    size = check_int("generator option size", size, 3, env.max_size)
    if size % 2 == 0:
        raise ValueError(f"generator option size must be odd, got {size}")
    n = env.max_size

    def generate(key: chex.PRNGKey) -> Level:
        maze_key, place_key = jax.random.split(key)
        free_small = carve_spanning_tree(maze_key, size)
        free = jnp.zeros((n, n), jnp.bool_).at[:size, :size].set(free_small)
        return place_agent_and_goal(place_key, free, ~free, size, size)

    return generate


generators: dict[str, Callable[..., Generator]] = {
    "random_walls": make_random_walls,
    "empty_room": make_empty_room,
    "perfect_maze": make_perfect_maze,
}
