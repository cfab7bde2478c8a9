"""Domain randomisation: every step trains on fresh levels from the generator.

By default (``resample: episode``) an env whose episode ends inside the rollout is reset to
a new level from the generator, as minimax and JaxUED run DR (JaxUED examples/maze_dr.py
resets with its level generator inside the rollout); ``resample: rollout`` keeps one level
per env for the whole rollout, replaying it, as dcd's 25-block DR config does (it runs PLR
with replay probability 0, whose episodes replay their level). The ``levels/*`` metrics describe the
levels each rollout started on.

Levels sent to a run (``add_levels``, see ``ued.human.inbox``) go into a small grounding set of
``grounding_capacity`` levels (the oldest is overwritten when full). While it holds any, each
env starts a rollout on one of them, drawn uniformly, with probability ``grounding_prob``;
the others are the generator's as before (their keys are the same, so an empty set leaves DR
exactly as it was). ``grounding_capacity: 0`` keeps no set (and no state) and refuses sent
levels.

``carry_episodes: true`` continues each env's episode, and the student's recurrent state,
from one update's rollout into the next, as JaxUED's DR does (examples/maze_dr.py keeps
``train_state.last_env_state`` and ``last_hstate``): only the first rollout starts on the
proposed levels, and an episode that begins late in a rollout is finished in the next one
instead of being cut off. Needs ``resample: episode`` (new levels come from episode ends).
The episodes are part of the curriculum's state, so checkpoints resume them exactly.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from ued.config.options import ConfigError, option
from ued.core import level_sets
from ued.core.ppo import carry_start
from ued.curricula import register
from ued.curricula.base import (
    CarriesEpisodes,
    Deps,
    LevelView,
    ResetsEpisodes,
    ShowsLevels,
    TakesLevels,
    full_plan,
    generate,
    generator_support,
)


@dataclasses.dataclass(frozen=True)
class DROptions:
    # A new level at every episode end (the papers), or one per env per rollout.
    resample: str = option("episode", choices=("episode", "rollout"))
    # Levels sent to the run kept for replay, and the probability that an env starts its
    # rollout on one of them. The capacity is a shape, but a change only warns: the
    # checkpoint's leaf shapes still refuse a real mismatch, and 0 resumes DR checkpoints
    # written before the grounding set existed (their state has none).
    grounding_capacity: int = option(16, ge=0, resume="warn")
    grounding_prob: float = option(0.25, ge=0.0, le=1.0)
    # Episodes and the student's recurrent state continue across updates (JaxUED's DR);
    # off: every rollout starts fresh episodes on new levels.
    carry_episodes: bool = option(False, resume="refuse")


@struct.dataclass
class CarriedDRState:
    """DR's state with ``carry_episodes``: the grounding set's (or ``()``) and where the
    episodes stand (``ued.core.ppo.EpisodeCarry``)."""

    grounding: Any
    episodes: Any


@dataclasses.dataclass(frozen=True)
class DomainRandomization:
    deps: Deps
    options: DROptions

    @property
    def groups(self) -> tuple[str, ...]:
        return ("new", "grounding") if self.options.grounding_capacity else ("new",)

    def init(self, key):
        if not self.options.carry_episodes:
            return self._init_grounding()
        deps = self.deps
        level = deps.family.example_level(deps.env)
        start = carry_start(deps.env, deps.env_params, deps.network, level, deps.num_envs)
        return CarriedDRState(grounding=self._init_grounding(), episodes=start)

    def _grounding(self, cstate):
        return cstate.grounding if self.options.carry_episodes else cstate

    def _with_grounding(self, cstate, grounding):
        return cstate.replace(grounding=grounding) if self.options.carry_episodes else grounding

    def _init_grounding(self):
        k = self.options.grounding_capacity
        if not k:
            return ()
        return level_sets.ring(self.deps.family.example_level(self.deps.env), k)

    def propose(self, key, cstate, student):
        n = self.deps.num_envs
        levels, plan = generate(self.deps.generator, key, n), full_plan(n)
        if not self.options.grounding_capacity:
            return cstate, levels, plan
        grounding = self._grounding(cstate)
        # A separate stream: the generator's keys are those of DR without a grounding set.
        mix_key, pick_key = jax.random.split(jax.random.fold_in(key, 1))
        use = jax.random.bernoulli(mix_key, self.options.grounding_prob, (n,))
        use &= grounding.filled.any()
        sent = level_sets.sample(grounding, pick_key, n)
        levels = level_sets.mix(levels, sent, use)
        return cstate, levels, plan.replace(group=use.astype(jnp.int32))

    def update(self, key, cstate, plan, levels, rollout, student):
        return cstate, {}


class _NewLevelAtEpisodeEnd(ResetsEpisodes):
    """``resample: episode``: a finished episode restarts on a level from the generator."""

    def next_levels(self, cstate, levels, plan):
        n = plan.group.shape[0]
        return lambda key: jax.vmap(self.deps.generator)(jax.random.split(key, n))


class _CarriedEpisodes(CarriesEpisodes):
    """``carry_episodes``: where the episodes stand is kept in ``CarriedDRState``."""

    def episodes(self, cstate):
        return cstate.episodes

    def with_episodes(self, cstate, episodes):
        return cstate.replace(episodes=episodes)


class _GroundingSet(TakesLevels, ShowsLevels):
    """``grounding_capacity > 0``: sent levels are kept, shown and replayed."""

    def add_levels(self, cstate, levels, key):
        """Adds sent levels (a stacked batch) to the grounding set, overwriting the oldest
        when it is full. ``key`` is unused."""
        del key
        grounding = level_sets.add(self._grounding(cstate), levels)
        return self._with_grounding(cstate, grounding)

    def level_view(self, cstate):
        grounding = jax.device_get(self._grounding(cstate))
        return LevelView("grounding", grounding.levels, grounding.filled)

    def taken_levels(self, cstate):
        return self.level_view(cstate)


@functools.cache
def _variant(parts: tuple[type, ...]) -> type:
    """DR with the capabilities its options give it (each part is one)."""
    return type("DomainRandomization", (*parts, DomainRandomization), {})


@register("dr", DROptions, support=generator_support)
def make_dr(options: DROptions, deps: Deps) -> DomainRandomization:
    if options.carry_episodes and options.resample != "episode":
        raise ConfigError(
            "curriculum.options.carry_episodes needs resample: episode (carried episodes get "
            "new levels only at their ends)"
        )
    parts = (
        (_NewLevelAtEpisodeEnd,) * (options.resample == "episode")
        + (_CarriedEpisodes,) * options.carry_episodes
        + (_GroundingSet,) * (options.grounding_capacity > 0)
    )
    return _variant(parts)(deps, options)
