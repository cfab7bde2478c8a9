"""The maze environment: a minigrid-style navigation task on a ``Level``."""

from __future__ import annotations

import chex
import jax.numpy as jnp
from flax import struct
from gymnax.environments import spaces

from envs.core import Environment, StepOut, check_int
from envs.maze import level as lvl
from envs.maze.level import Level

TURN_LEFT, TURN_RIGHT, FORWARD = 0, 1, 2
NUM_ACTIONS = 3
# MiniGrid's full action set (left, right, forward, pickup, drop, toggle, done), as dcd,
# minimax and JaxUED's Maze use it: the last four take a step and change nothing here.
MINIGRID_ACTIONS = 7


MAX_SIZE = 128  # the largest max_size: refused above, before anything is allocated


@struct.dataclass
class MazeParams:
    """Numeric env parameters (pytree leaves, so they can be vmapped in sweeps)."""

    time_penalty: float = 0.9  # () float32, success reward = 1 - time_penalty * t / max_steps


@struct.dataclass
class MazeState:
    """The state of one maze episode: the level played and the agent's current pose."""

    level: Level  # the level as reset (its agent_pos/agent_dir are the start pose)
    agent_pos: chex.Array  # (2,) int32, agent (x, y) now
    agent_dir: chex.Array  # () int32, facing now: 0 right, 1 down, 2 left, 3 up
    time: chex.Array  # () int32, steps taken in this episode

    def current_level(self) -> Level:
        """The level as it looks now: the agent at its current pose."""
        return self.level.replace(agent_pos=self.agent_pos, agent_dir=self.agent_dir)


class Maze(Environment):
    """Navigate a grid maze to the goal (the UED maze of PAIRED / minimax / JaxUED).

    Observation (dict):
        ``image``: uint8 (V, V, 3) with V = ``view_size``, an egocentric view in minigrid
            convention: the agent sits at ``image[V - 1, V // 2]`` facing up (towards row 0),
            columns left to right are the agent's left to right. Walls are seen through.
            Channels are 0/1: [wall (off-grid and padding count as wall), goal, 0].
            With ``fully_observed=True``: uint8 (max_size, max_size, 3) indexed ``[y, x]``,
            channels [wall, goal, agent].
        ``direction``: int32 (), the agent's facing (0 right, 1 down, 2 left, 3 up).
    Action: ``Discrete(3)``: 0 turn left, 1 turn right, 2 move forward (blocked by walls,
        padding and the grid edge).
    Reward: ``1 - time_penalty * t / max_steps`` on the step that reaches the goal (t counts
        steps including that one; ``time_penalty`` = 0.9 by default), else 0.
    Termination: reaching the goal, or ``t == max_steps`` (reward 0). ``info`` is
        ``{"success": bool}`` on every step. On ``done`` the env replays the same level.
    Level: ``wall_map`` bool (max_size, max_size), ``agent_pos`` int32 (2,) (x, y),
        ``agent_dir`` int32 (), ``goal_pos`` int32 (2,), ``width``/``height`` int32 ().

    Example:
        >>> import jax
        >>> from envs.maze import family
        >>> env = Maze(max_size=13)
        >>> params = env.default_params()
        >>> level = family.example_level(env)
        >>> obs, state = env.reset_to_level(jax.random.key(0), level, params)
        >>> obs, state, reward, done, info = env.step(jax.random.key(1), state, 2, params)
        >>> obs["image"].shape
        (5, 5, 3)
    """

    def __init__(
        self,
        max_size: int = 13,
        view_size: int = 5,
        max_steps: int = 250,
        fully_observed: bool = False,
        num_actions: int = NUM_ACTIONS,
    ):
        """Builds the env.

        Args:
            max_size: side of the square grid every level is padded to, in [2, 128] (memory
                and time grow with its square; 128 fits the largest literature mazes, 99).
            view_size: side of the egocentric view, odd, in [1, 2 * max_size + 1] (a view
                of 2 * max_size - 1 already sees the whole grid from any cell).
            max_steps: episode horizon T (>= 1).
            fully_observed: observe the whole grid instead of the egocentric view.
            num_actions: 3 (turn left, turn right, forward) or 7 (MiniGrid's set, as dcd,
                minimax and JaxUED: pickup, drop, toggle and done use a step and do nothing).

        Raises:
            ValueError: naming the bad option.
        """
        self.max_size = check_int("Maze option max_size", max_size, 2, MAX_SIZE)
        self.view_size = check_int("Maze option view_size", view_size, 1, 2 * self.max_size + 1)
        if self.view_size % 2 == 0:
            raise ValueError(f"Maze option view_size must be odd, got {view_size}")
        self.max_steps = check_int("Maze option max_steps", max_steps, 1)
        if not isinstance(fully_observed, bool):
            raise ValueError(f"Maze option fully_observed must be a bool, got {fully_observed!r}")
        self.fully_observed = fully_observed
        if num_actions not in (NUM_ACTIONS, MINIGRID_ACTIONS) or isinstance(num_actions, bool):
            raise ValueError(f"Maze option num_actions must be 3 or 7, got {num_actions!r}")
        self.num_actions = num_actions

    def __repr__(self) -> str:
        return (
            f"Maze(max_size={self.max_size}, view_size={self.view_size}, "
            f"max_steps={self.max_steps}, fully_observed={self.fully_observed}, "
            f"num_actions={self.num_actions})"
        )

    # --- protocol ---------------------------------------------------------------------
    def default_params(self) -> MazeParams:
        return MazeParams()

    def reset_env_to_level(self, key: chex.PRNGKey, level: Level, params: MazeParams):
        """Returns ``(obs, state)`` with the agent at the level's start pose."""
        level = Level(
            wall_map=jnp.asarray(level.wall_map, jnp.bool_),
            agent_pos=jnp.asarray(level.agent_pos, jnp.int32),
            agent_dir=jnp.asarray(level.agent_dir, jnp.int32),
            goal_pos=jnp.asarray(level.goal_pos, jnp.int32),
            width=jnp.asarray(level.width, jnp.int32),
            height=jnp.asarray(level.height, jnp.int32),
        )
        state = MazeState(
            level=level,
            agent_pos=level.agent_pos,
            agent_dir=level.agent_dir,
            time=jnp.zeros((), jnp.int32),
        )
        return self.get_obs(state), state

    def step_env(
        self, key: chex.PRNGKey, state: MazeState, action: chex.Array, params: MazeParams
    ) -> StepOut:
        """Turns or moves the agent; ``done`` on reaching the goal or the time limit."""
        action = jnp.asarray(action, jnp.int32)
        turn = (action == TURN_RIGHT).astype(jnp.int32) - (action == TURN_LEFT)
        target = state.agent_pos + jnp.asarray(lvl.DIR_TO_VEC)[state.agent_dir]
        can_move = (action == FORWARD) & self._is_free(state, target)
        agent_pos = jnp.where(can_move, target, state.agent_pos)
        time = state.time + 1
        success = jnp.all(agent_pos == state.level.goal_pos)
        penalty = jnp.asarray(params.time_penalty, jnp.float32)
        reward = jnp.where(success, 1.0 - penalty * time / self.max_steps, 0.0)
        done = success | (time >= self.max_steps)
        agent_dir = (state.agent_dir + turn) % 4
        state = state.replace(agent_pos=agent_pos, agent_dir=agent_dir, time=time)
        info = {"success": success}
        return StepOut(self.get_obs(state), state, reward.astype(jnp.float32), done, info)

    def observation_space(self, params: MazeParams) -> spaces.Dict:
        side = self.max_size if self.fully_observed else self.view_size
        return spaces.Dict(
            {
                "image": spaces.Box(0, 1, (side, side, 3), jnp.uint8),
                "direction": spaces.Discrete(4),
            }
        )

    def action_space(self, params: MazeParams) -> spaces.Discrete:
        return spaces.Discrete(self.num_actions)

    def max_episode_steps(self, params: MazeParams) -> int:
        return self.max_steps

    # --- observations -----------------------------------------------------------------
    def get_obs(self, state: MazeState) -> dict[str, chex.Array]:
        """The observation dict for ``state`` (see the class docstring)."""
        image = self._full_image(state) if self.fully_observed else self._view_image(state)
        return {"image": image, "direction": jnp.asarray(state.agent_dir, jnp.int32)}

    def _is_free(self, state: MazeState, pos: chex.Array) -> chex.Array:
        """Bool, broadcast over ``pos[0]``/``pos[1]``: in the level area and not a wall."""
        x, y, level = pos[0], pos[1], state.level
        inside = (x >= 0) & (x < level.width) & (y >= 0) & (y < level.height)
        n = self.max_size
        wall = level.wall_map[jnp.clip(y, 0, n - 1), jnp.clip(x, 0, n - 1)]
        return inside & ~wall

    def _view_image(self, state: MazeState) -> chex.Array:
        v = self.view_size
        rows, cols = jnp.indices((v, v))
        forward = v - 1 - rows  # distance ahead of the agent
        lateral = cols - v // 2  # offset to the agent's right
        dirs = jnp.asarray(lvl.DIR_TO_VEC)
        fwd_vec, right_vec = dirs[state.agent_dir], dirs[(state.agent_dir + 1) % 4]
        xs = state.agent_pos[0] + forward * fwd_vec[0] + lateral * right_vec[0]
        ys = state.agent_pos[1] + forward * fwd_vec[1] + lateral * right_vec[1]
        wall = ~self._is_free(state, (xs, ys))
        goal = (xs == state.level.goal_pos[0]) & (ys == state.level.goal_pos[1])
        return jnp.stack([wall, goal, jnp.zeros_like(wall)], axis=-1).astype(jnp.uint8)

    def _full_image(self, state: MazeState) -> chex.Array:
        level = state.level
        shape = level.wall_map.shape
        wall = lvl.blocked_map(level)
        goal = lvl.cell_mask(level.goal_pos, shape)
        agent = lvl.cell_mask(state.agent_pos, shape)
        return jnp.stack([wall, goal, agent], axis=-1).astype(jnp.uint8)
