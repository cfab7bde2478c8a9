"""``ControlEnv``: a gymnax classic-control env whose physics come from the level.

Only each gymnax env's ``reset_env``/``step_env``, default params and spaces are used: the
time limit, auto-replay and ``success`` are ours. ``gymnax_transition`` is the one place that
knows gymnax's step signature.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import struct

from envs.control.spec import Level, Outcome, Task
from envs.core import Environment, StepOut

# gymnax params get this time limit so that no gymnax version ends an episode on time by
# itself (0.x folded the limit into step_env's done; 1.x does not): we truncate instead.
NO_TIME_LIMIT = 2**30


@struct.dataclass
class ControlParams:
    """Env parameters: none; the numeric physics are the level's."""


@struct.dataclass
class ControlState:
    """One episode: gymnax's physics state plus the level that sets its physics."""

    physics: Any  # the gymnax env's EnvState (float32 fields, ``time`` () int32)
    level: Any  # the task's level, () float32 per parameter
    hold_steps: chex.Array  # () int32, consecutive steps the task's ``hold`` held (0 if none)


def gymnax_transition(gym_env, key: chex.PRNGKey, physics, action, gym_params, max_steps: int):
    """One gymnax transition as ``(obs, physics, reward, terminated, truncated)``.

    gymnax 1.x: ``step_env`` returns ``(obs, state, reward, terminated, info)`` where
    ``terminated`` is the natural end only (``Environment.step`` adds truncation and an
    auto-reset and returns six values; we use neither). The key is split as gymnax's own
    ``step`` splits it, so stochastic dynamics see the same key. ``gym_params`` must carry
    ``max_steps_in_episode=NO_TIME_LIMIT``; the time limit is applied here.
    """
    step_key, _ = jax.random.split(key)
    obs, physics, reward, terminated, _ = gym_env.step_env(step_key, physics, action, gym_params)
    physics = _normalise(physics)
    truncated = physics.time >= max_steps
    return (
        jnp.asarray(obs, jnp.float32),
        physics,
        jnp.asarray(reward, jnp.float32).reshape(()),
        jnp.asarray(terminated, jnp.bool_).reshape(()),
        truncated,
    )


def _normalise(physics):
    """Fixed dtypes for scanning: ``time`` int32 (gymnax starts it as a Python int)."""
    return physics.replace(time=jnp.asarray(physics.time, jnp.int32))


def _check_max_steps(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"option max_steps must be an int >= 1, got {value!r}")
    return int(value)


def _check_ranges(task: Task, ranges: Mapping[str, Sequence[float]] | None):
    """name -> (low, high) for every parameter: the task's ``train`` ranges, overridden."""
    out = {p.name: p.train for p in task.params}
    for name, pair in (ranges or {}).items():
        if name not in out:
            raise ValueError(
                f"option ranges: unknown parameter {name!r} of {task.name}; "
                f"allowed: {list(task.names)}"
            )
        lo, hi = task.param(name).bounds
        try:
            low, high = (float(v) for v in pair)
        except (TypeError, ValueError):
            raise ValueError(f"option ranges.{name} must be [low, high], got {pair!r}") from None
        if not lo <= low <= high <= hi:
            raise ValueError(
                f"option ranges.{name}={[low, high]} must satisfy {lo} <= low <= high <= {hi}"
            )
        out[name] = (low, high)
    return out


class ControlEnv(Environment):
    """A gymnax classic-control task on a level of physical parameters.

    Observation: float32 ``(D,)``, gymnax's flat observation (CartPole D=4, Pendulum 3,
        Acrobot 6, MountainCar 2).
    Action: gymnax's action space (Discrete for CartPole, Acrobot, MountainCar; a
        ``Box (1,)`` for Pendulum and MountainCarContinuous).
    Reward: gymnax's, unchanged.
    Termination: gymnax's natural termination, or ``max_steps`` steps (truncation). On
        ``done`` the env replays the same level from the same initial state. ``info`` is
        ``{"success": bool}`` with the task's definition (``task.success``; see ``tasks.py``).
    Level: the task's dataclass, one () float32 per physical parameter (``task.params``).
        ``reset_to_level`` builds gymnax's ``EnvParams`` from it; the initial state is
        drawn by gymnax from the reset key.

    Example:
        >>> import jax
        >>> from envs.control import CARTPOLE, FAMILIES
        >>> env = ControlEnv(CARTPOLE)
        >>> params = env.default_params()
        >>> level = FAMILIES["cartpole"].example_level(env)
        >>> obs, state = env.reset_to_level(jax.random.key(0), level, params)
        >>> obs, state, reward, done, info = env.step(jax.random.key(1), state, 1, params)
        >>> obs.shape, float(reward)
        ((4,), 1.0)
    """

    def __init__(
        self,
        task: Task,
        max_steps: int | None = None,
        ranges: Mapping[str, Sequence[float]] | None = None,
    ):
        """Builds the env.

        Args:
            task: the task (e.g. ``envs.control.CARTPOLE``).
            max_steps: episode horizon; default gymnax's ``max_steps_in_episode``.
            ranges: name -> ``[low, high]`` overriding parameters' training ranges (used by
                the ``uniform`` generator and the editors).

        Raises:
            ValueError: naming the bad option.
        """
        self.task = task
        self.gym = task.make_gymnax()
        self._gym_defaults = self.gym.default_params.replace(max_steps_in_episode=NO_TIME_LIMIT)
        default_steps = int(self.gym.default_params.max_steps_in_episode)
        self.max_steps = default_steps if max_steps is None else _check_max_steps(max_steps)
        self.ranges = _check_ranges(task, ranges)

    def __repr__(self) -> str:
        return f"ControlEnv({self.task.name}, max_steps={self.max_steps})"

    def gymnax_params(self, level: Level):
        """gymnax ``EnvParams`` with the level's physics (and no gymnax time limit)."""
        return self.task.to_gymnax(self._gym_defaults, level)

    # --- protocol ---------------------------------------------------------------------
    def default_params(self) -> ControlParams:
        return ControlParams()

    def reset_env_to_level(self, key: chex.PRNGKey, level: Level, params: ControlParams):
        level = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), level)
        obs, physics = self.gym.reset_env(key, self.gymnax_params(level))
        state = ControlState(_normalise(physics), level, jnp.zeros((), jnp.int32))
        return jnp.asarray(obs, jnp.float32), state

    def step_env(
        self, key: chex.PRNGKey, state: ControlState, action: chex.Array, params: ControlParams
    ) -> StepOut:
        obs, physics, reward, terminated, truncated = gymnax_transition(
            self.gym, key, state.physics, action, self.gymnax_params(state.level), self.max_steps
        )
        hold_steps = jnp.zeros((), jnp.int32)
        if self.task.hold is not None:
            hold_steps = jnp.where(self.task.hold(physics), state.hold_steps + 1, 0)
        outcome = Outcome(terminated, truncated, hold_steps, self.max_steps)
        success = jnp.asarray(self.task.success(outcome), jnp.bool_)
        state = state.replace(physics=physics, hold_steps=hold_steps.astype(jnp.int32))
        return StepOut(obs, state, reward, terminated | truncated, {"success": success})

    def observation_space(self, params: ControlParams):
        return self.gym.observation_space(self.gym.default_params)

    def action_space(self, params: ControlParams):
        return self.gym.action_space(self.gym.default_params)

    def max_episode_steps(self, params: ControlParams) -> int:
        return self.max_steps
