"""The environment protocol every level-based family implements, and the family registry.

A *level* is a fully specified environment instance with fixed shapes (a ``flax.struct``
dataclass), so a batch of levels is one stacked pytree. An environment is reset *to a level*
and, on ``done``, replays the same level by restoring the cached initial state (no reset is
recomputed inside the step).
"""

from __future__ import annotations

import dataclasses
import importlib
import numbers
import pkgutil
from collections.abc import Callable, Mapping
from typing import Any, Generic, NamedTuple, TypeVar

import chex
import jax
import jax.numpy as jnp
from flax import struct

Level = Any  # a flax.struct dataclass with fixed shapes
EnvState = Any
EnvParams = Any
Obs = Any
Generator = Callable[[chex.PRNGKey], Level]
Editor = Callable[[chex.PRNGKey, Level], Level]

TState = TypeVar("TState")


class StepOut(NamedTuple):
    """What ``step`` returns; unpacks like the classic 5-tuple.

    ``info`` always has the same keys for a given env (so it can be scanned); every env
    provides at least ``success`` (bool: the episode ended by achieving the task).
    """

    obs: Obs
    state: Any
    reward: chex.Array
    done: chex.Array
    info: dict[str, chex.Array]


@struct.dataclass
class ReplayState(Generic[TState]):
    """Env state plus the cached initial observation and state of the current level."""

    env_state: TState
    init_obs: Obs
    init_state: TState


class Environment:
    """Base class of level-based environments.

    Subclasses implement ``default_params``, ``reset_env_to_level``, ``step_env``,
    ``observation_space``, ``action_space``, ``is_valid``, ``level_metrics`` and
    ``example_level``. The public ``reset_to_level``/``step`` pair adds auto-replay.
    """

    # --- implemented by each env ---------------------------------------------------------
    def default_params(self) -> EnvParams:
        raise NotImplementedError

    def reset_env_to_level(self, key: chex.PRNGKey, level: Level, params: EnvParams):
        """Returns ``(obs, state)`` for the start of an episode on ``level``."""
        raise NotImplementedError

    def step_env(self, key: chex.PRNGKey, state, action, params: EnvParams) -> StepOut:
        """One step without auto-replay; ``done`` marks the episode end."""
        raise NotImplementedError

    def observation_space(self, params: EnvParams):
        raise NotImplementedError

    def action_space(self, params: EnvParams):
        raise NotImplementedError

    def is_valid(self, level: Level) -> chex.Array:
        """Scalar bool: the level is playable (jittable)."""
        raise NotImplementedError

    def level_metrics(self, level: Level) -> dict[str, chex.Array]:
        """Scalar float32 metrics of one level for analytics (jittable)."""
        raise NotImplementedError

    def example_level(self) -> Level:
        """A valid level with the env's shapes (used to size buffers)."""
        raise NotImplementedError

    def max_episode_steps(self, params: EnvParams) -> int:
        """Static episode horizon, used for logging and evaluation."""
        raise NotImplementedError

    # --- provided ---------------------------------------------------------------------
    def reset_to_level(self, key: chex.PRNGKey, level: Level, params: EnvParams):
        obs, state = self.reset_env_to_level(key, level, params)
        return obs, ReplayState(env_state=state, init_obs=obs, init_state=state)

    def step(self, key: chex.PRNGKey, state: ReplayState, action, params: EnvParams) -> StepOut:
        obs, env_state, reward, done, info = self.step_env(key, state.env_state, action, params)
        # Replay the same level: restore the cached start rather than recompute a reset.
        obs = jax.tree.map(lambda init, cur: jnp.where(done, init, cur), state.init_obs, obs)
        env_state = jax.tree.map(
            lambda init, cur: jnp.where(done, init, cur), state.init_state, env_state
        )
        return StepOut(obs, state.replace(env_state=env_state), reward, done, info)


class EditSpec(NamedTuple):
    """An editor and the predicate telling whether it can change a level right now."""

    edit: Editor
    feasible: Callable[[Level], chex.Array]


@dataclasses.dataclass(frozen=True)
class Family:
    """Everything the framework needs from one environment family, looked up by name.

    Attributes:
        name: registry name used in configs (``env.family``).
        make_env: ``(**options) -> Environment``; options come from ``env.options``.
        generators: name -> ``make(env, **options) -> Generator`` (vmappable, valid levels).
        editors: name -> ``make(env) -> EditSpec``.
        named_levels: ``env -> {name: Level}``, the held-out evaluation set.
        render: ``(env, level_or_state) -> uint8 (H, W, 3)``.
        level_to_text: ``(env, level) -> str``.
        level_from_text: ``(env, text) -> Level``; raises ``ValueError`` naming the problem.
        make_builder: optional ``(env, **options) -> builder`` for PAIRED's adversary
            (the protocol: ``ued.curricula.paired.LevelBuilder``).
        level_sets: further evaluation sets by name, each ``env -> {name: Level}`` (e.g.
            the maze's ``standard`` mazes of the literature); selected by ``eval.levels``.
    """

    name: str
    make_env: Callable[..., Environment]
    generators: Mapping[str, Callable[..., Generator]]
    editors: Mapping[str, Callable[[Environment], EditSpec]]
    named_levels: Callable[[Environment], Mapping[str, Level]]
    render: Callable[[Environment, Any], Any]
    level_to_text: Callable[[Environment, Level], str]
    level_from_text: Callable[[Environment, str], Level]
    make_builder: Callable[[Environment], Any] | None = None
    level_sets: Mapping[str, Callable[[Environment], Mapping[str, Level]]] = dataclasses.field(
        default_factory=dict
    )


_REGISTRY: dict[str, Family] = {}
_DISCOVERED = False


def check_int(what: str, value: object, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]`` (no upper bound for None), for env, generator
    and builder options; a ValueError naming ``what`` (e.g. "generator option num_walls")."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{what} must be an int, got {value!r}")
    if value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{what} must be {allowed}, got {value}")
    return int(value)


def register(family: Family) -> Family:
    """Adds a family to the registry; a family module calls this at import time."""
    if family.name in _REGISTRY and _REGISTRY[family.name] is not family:
        raise ValueError(f"environment family {family.name!r} is already registered")
    _REGISTRY[family.name] = family
    return family


def _discover() -> None:
    # Import every subpackage of envs/ once, so a new family folder registers itself
    # without editing any central file.
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    package = importlib.import_module("envs")
    for info in pkgutil.iter_modules(package.__path__):
        if info.ispkg:
            importlib.import_module(f"envs.{info.name}")


def get_family(name: str) -> Family:
    """Returns the registered family ``name``; unknown names list the known ones."""
    _discover()
    if name not in _REGISTRY:
        raise KeyError(f"unknown environment family {name!r}; known families: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def families() -> dict[str, Family]:
    _discover()
    return dict(_REGISTRY)
