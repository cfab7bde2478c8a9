"""The maze level builder: PAIRED's adversary builds a maze one action at a time.

A *builder* is an environment whose actions construct a level (see
``ued.curricula.paired.LevelBuilder`` for the protocol every family's builder follows). The
maze builder runs a fixed ``num_steps = num_walls + 2`` steps on the full
``max_size x max_size`` grid; every action names one cell ``index = y * max_size + x``:

1. steps ``0 .. num_walls - 1`` place a wall on the cell. A cell that already holds a wall
   stays as it is (a no-op), so a level has *at most* ``num_walls`` walls;
2. step ``num_walls`` places the goal. If the cell holds a wall, the wall is removed;
3. step ``num_walls + 1`` places the agent. If the cell holds a wall, the wall is removed;
   if it is the goal's cell, the agent goes to the nearest free cell instead (Manhattan
   distance from the goal, ties to the lowest cell index; when no other cell is free, the
   nearest other cell, whose wall is then removed), so the agent never lands on the goal.

Steps after the last one leave the state unchanged. Whatever the action sequence, the
finished level is valid (the family's ``is_valid``); it need not be solvable. The agent's
facing is drawn uniformly at ``reset`` (as in PAIRED's original maze adversary).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import spaces

from envs.core import check_int
from envs.maze.env import Maze
from envs.maze.level import Level, cell_mask

WALL, GOAL, AGENT = 0, 1, 2  # image channels


@struct.dataclass
class BuilderState:
    """A maze under construction."""

    wall_map: chex.Array  # (max_size, max_size) bool, True = wall
    goal_pos: chex.Array  # (2,) int32 (x, y); (-1, -1) until placed
    agent_pos: chex.Array  # (2,) int32 (x, y); (-1, -1) until placed
    agent_dir: chex.Array  # () int32, drawn at reset
    time: chex.Array  # () int32, build steps taken (saturates at num_steps)


class MazeBuilder:
    """PAIRED's level-building environment for the maze family.

    Observation (dict):
        ``image``: uint8 (max_size, max_size, 3) indexed ``[y, x]``, channels
            [wall, goal, agent] (0/1; goal and agent channels are zero until placed).
        ``time``: int32 (), build steps taken so far, in ``[0, num_steps]``.
        ``noise``: float32 (noise_dim,), uniform in [0, 1), fresh at every step (lets a
            deterministic adversary still propose diverse levels).
    Action: ``Discrete(max_size ** 2)``: the cell ``y * max_size + x`` (out-of-range
        integers are clipped into range).
    Steps: ``num_steps = num_walls + 2`` (walls, then goal, then agent; see the module
        docstring for how conflicts resolve).
    Level: ``to_level(state)`` of a finished state (``time == num_steps``) is a valid
        ``envs.maze.Level`` of size ``max_size x max_size``.

    Example:
        >>> import jax
        >>> from envs.maze import family
        >>> builder = MazeBuilder(Maze(max_size=5), num_walls=3, noise_dim=4)
        >>> obs, state = builder.reset(jax.random.key(0))
        >>> for t in range(builder.num_steps):
        ...     obs, state = builder.step(jax.random.key(t), state, 7)
        >>> bool(family.is_valid(builder.env, builder.to_level(state)))
        True
    """

    def __init__(self, env: Maze, num_walls: int = 60, noise_dim: int = 50):
        """Builds the builder.

        Args:
            env: the maze env whose levels are built (sets ``max_size``).
            num_walls: wall budget, in ``[0, max_size ** 2 - 2]`` (60 on 13x13 in the
                literature).
            noise_dim: length of the noise vector in the observation (>= 0; 50 in PAIRED).

        Raises:
            ValueError: naming the bad option.
        """
        self.env = env
        n = int(env.max_size)
        self.max_size = n
        self.num_walls = check_int("builder option num_walls", num_walls, 0, n * n - 2)
        self.noise_dim = check_int("builder option noise_dim", noise_dim, 0, 1 << 16)
        self.num_steps = self.num_walls + 2

    def __repr__(self) -> str:
        return f"MazeBuilder({self.env!r}, num_walls={self.num_walls}, noise_dim={self.noise_dim})"

    # --- protocol ---------------------------------------------------------------------
    def reset(self, key: chex.PRNGKey):
        """An empty grid; returns ``(obs, state)``."""
        dir_key, obs_key = jax.random.split(key)
        n = self.max_size
        none = jnp.full((2,), -1, jnp.int32)
        state = BuilderState(
            wall_map=jnp.zeros((n, n), jnp.bool_),
            goal_pos=none,
            agent_pos=none,
            agent_dir=jax.random.randint(dir_key, (), 0, 4, dtype=jnp.int32),
            time=jnp.zeros((), jnp.int32),
        )
        return self.get_obs(obs_key, state), state

    def step(self, key: chex.PRNGKey, state: BuilderState, action: chex.Array):
        """Applies one build action; returns ``(obs, state)``."""
        n = self.max_size
        shape = (n, n)
        index = jnp.clip(jnp.asarray(action, jnp.int32), 0, n * n - 1)
        cell = jnp.stack([index % n, index // n]).astype(jnp.int32)
        here = cell_mask(cell, shape)
        t = state.time
        walls = state.wall_map
        # 1. walls: placing on a wall is a no-op.
        walls = jnp.where(t < self.num_walls, walls | here, walls)
        # 2. goal: clears the wall under it.
        is_goal = t == self.num_walls
        walls = jnp.where(is_goal, walls & ~here, walls)
        goal = jnp.where(is_goal, cell, state.goal_pos)
        # 3. agent: clears the wall under it; never on the goal.
        is_agent = t == self.num_walls + 1
        on_goal = jnp.all(cell == goal)
        agent_cell = jnp.where(on_goal, _nearest_other(goal, walls), cell)
        walls = jnp.where(is_agent, walls & ~cell_mask(agent_cell, shape), walls)
        agent = jnp.where(is_agent, agent_cell, state.agent_pos)
        state = state.replace(
            wall_map=walls,
            goal_pos=goal.astype(jnp.int32),
            agent_pos=agent.astype(jnp.int32),
            time=jnp.minimum(t + 1, self.num_steps),
        )
        return self.get_obs(key, state), state

    def to_level(self, state: BuilderState) -> Level:
        """The level built so far (valid once ``state.time == num_steps``)."""
        n = self.max_size
        return Level(
            wall_map=state.wall_map,
            agent_pos=state.agent_pos,
            agent_dir=state.agent_dir,
            goal_pos=state.goal_pos,
            width=jnp.asarray(n, jnp.int32),
            height=jnp.asarray(n, jnp.int32),
        )

    def observation_space(self) -> spaces.Dict:
        n = self.max_size
        return spaces.Dict(
            {
                "image": spaces.Box(0, 1, (n, n, 3), jnp.uint8),
                "time": spaces.Discrete(self.num_steps + 1),
                "noise": spaces.Box(0.0, 1.0, (self.noise_dim,), jnp.float32),
            }
        )

    def action_space(self) -> spaces.Discrete:
        return spaces.Discrete(self.max_size * self.max_size)

    # --- observations -----------------------------------------------------------------
    def get_obs(self, key: chex.PRNGKey, state: BuilderState) -> dict[str, chex.Array]:
        shape = state.wall_map.shape
        image = jnp.stack(
            [state.wall_map, cell_mask(state.goal_pos, shape), cell_mask(state.agent_pos, shape)],
            axis=-1,
        ).astype(jnp.uint8)
        noise = jax.random.uniform(key, (self.noise_dim,), jnp.float32)
        return {"image": image, "time": state.time, "noise": noise}


def _nearest_other(goal: chex.Array, walls: chex.Array) -> chex.Array:
    """(2,) int32: the free cell nearest to ``goal`` other than it (Manhattan, ties to the
    lowest index); the nearest other cell of any kind when no other cell is free."""
    h, w = walls.shape
    ys, xs = jnp.indices((h, w))
    other = ~cell_mask(goal, (h, w))
    free = other & ~walls
    candidates = jnp.where(jnp.any(free), free, other).reshape(-1)
    dist = (jnp.abs(xs - goal[0]) + jnp.abs(ys - goal[1])).reshape(-1)
    index = jnp.argmin(jnp.where(candidates, dist, h + w + 1)).astype(jnp.int32)
    return jnp.stack([index % w, index // w])
