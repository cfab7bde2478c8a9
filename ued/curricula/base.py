"""The curriculum contract: the parts each curriculum plugs into the one train step.

A curriculum is registered under a name with its typed options dataclass (see
``ued.curricula.register``) and built top-down as ``make(options, deps)``: ``deps`` holds
everything it may use from the run, and nothing in it points back up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import chex
import jax
import jax.numpy as jnp
from flax import struct

from envs.core import Environment, Family, Generator, Level


@struct.dataclass
class Plan:
    """What the curriculum decided for this step, per env."""

    train_mask: chex.Array  # (N,) bool, envs whose experience the student trains on
    group: chex.Array  # (N,) int32, index into the curriculum's ``groups`` names
    buffer_idx: chex.Array  # (N,) int32, buffer slot each level came from, -1 for none


@dataclasses.dataclass(frozen=True)
class Deps:
    """What a curriculum may use from the run: built once, outside jit, before it."""

    env: Environment
    env_params: Any
    family: Family  # the env's family: its generators, editors and level builder by name
    generator: Generator  # key -> level, the run's configured generator
    network: Any  # the student's ActorCritic module (PAIRED's antagonist shares it)
    ppo: Any  # ued.config.PPOConfig, the student's PPO settings
    # (key, params, levels, num_steps=None) -> Rollout with GAE: any params of ``network``
    # on a batch of levels, sharded like the main rollout. num_steps defaults to ppo's.
    rollout: Callable[..., Any]
    num_envs: int
    total_updates: int


class Curriculum(Protocol):
    """What each curriculum supplies: names for its env groups and three pure functions.

    ``groups`` names the kinds of env a plan may contain (e.g. ``("new", "replay",
    "edit")``); the step logs the fraction of envs in each as ``curriculum/<name>``.
    Optionally, ``next_level`` (a generator, ``key -> level``) resets an env whose episode
    ends inside the student's rollout to a fresh level instead of replaying its level (DR);
    or ``next_levels(cstate, levels, plan)``, given this step's proposal, returns ``key ->
    levels`` (leaves (N, ...), env i restarts on entry i) or None (replay), for a curriculum
    whose new level depends on the env (a program curriculum: the env's program). See
    ``restarts``.
    ``update`` must return the same metric keys on every step (NaN where a metric does not
    apply to this step) so the step can be scanned.

    Optionally, ``propose`` and ``update`` take a keyword argument ``schedule`` (a
    ``ued.schedule.Schedule``): the step then passes what the seeds of a run share, the
    update count (``schedule.update``) and the update's schedule key (``schedule.key``),
    both unbatched when seeds are vmapped. A decision on the update count should read
    ``schedule.update`` (not a count in ``cstate``, which is per seed), a random decision
    that may be the same for every seed should draw from ``schedule.key``, and a branch on
    per-seed state should use ``schedule.cond`` / ``schedule.switch``: then the seeds'
    branches stay branches under ``vmap`` (a ``lax.cond`` on a per-seed predicate runs both
    branches there). A curriculum without the keyword gets none and works as before.

    Optionally, ``add_levels(self, cstate, levels: Level, key) -> cstate`` takes levels
    from outside the curriculum (drawn by a person and sent to the run's inbox, see
    ``ued.inbox``): ``levels`` is a stacked batch of valid levels (leading axis B), and the
    curriculum puts them where it will train on them (PLR's buffer, DR's grounding set, a
    program curriculum's grounding set). It must be pure and jittable, keep every shape of
    ``cstate``, and work on one seed's state (the driver maps it over the seed axis). The
    host calls it between chunks, never inside the train step. A curriculum without it
    refuses sent levels, and the run logs why.
    """

    groups: tuple[str, ...]

    def init(self, key: chex.PRNGKey) -> Any: ...

    def propose(
        self, key: chex.PRNGKey, cstate: Any, student: Any, schedule: Any = None
    ) -> tuple[Any, Level, Plan]: ...

    def update(
        self,
        key: chex.PRNGKey,
        cstate: Any,
        plan: Plan,
        levels: Level,
        rollout: Any,
        student: Any,
        schedule: Any = None,
    ) -> tuple[Any, dict[str, chex.Array]]: ...


def generate(generator: Generator, key: chex.PRNGKey, n: int) -> Level:
    """n fresh levels from ``generator``."""
    return jax.vmap(generator)(jax.random.split(key, n))


def full_plan(n: int, group: int = 0, train: bool = True) -> Plan:
    """Every env in one group, all trained on (or none)."""
    return Plan(
        train_mask=jnp.full((n,), train),
        group=jnp.full((n,), group, jnp.int32),
        buffer_idx=jnp.full((n,), -1, jnp.int32),
    )


def group_fractions(groups: tuple[str, ...], plan: Plan) -> dict[str, chex.Array]:
    """``curriculum/<group>``: the fraction of this step's envs in each group."""
    return {
        f"curriculum/{name}": (plan.group == i).mean(dtype=jnp.float32)
        for i, name in enumerate(groups)
    }


def restarts(curriculum, cstate: Any, levels: Level, plan: Plan) -> Callable | None:
    """What the step's rollout resets a finished episode to: ``key -> levels`` (leaves
    (N, ...); env i restarts on entry i), from the curriculum's ``next_levels`` or its
    ``next_level`` (N draws of the generator, one key each), or None: the env replays."""
    per_env = getattr(curriculum, "next_levels", None)
    if per_env is not None:
        return per_env(cstate, levels, plan)
    generator = getattr(curriculum, "next_level", None)
    if generator is None:
        return None
    n = plan.group.shape[0]
    return lambda key: jax.vmap(generator)(jax.random.split(key, n))
