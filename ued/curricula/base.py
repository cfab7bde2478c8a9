"""The curriculum interface: the parts each curriculum plugs into the one train step."""

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
    """What the curriculum decided for this step."""

    train_mask: chex.Array  # (N,) bool, envs whose experience the student trains on
    branch: chex.Array  # () int32, curriculum-specific (e.g. 0 new, 1 replay, 2 edit)
    buffer_idx: chex.Array  # (N,) int32, buffer slot each level came from, -1 for none


@dataclasses.dataclass(frozen=True)
class Context:
    """Static things a curriculum needs from the run (built once, outside jit)."""

    cfg: Any  # ued.config.Config
    family: Family
    env: Environment
    env_params: Any
    generator: Generator
    num_envs: int
    network: Any  # the student's ActorCritic module (PAIRED's antagonist shares it)
    # (key, params, levels, num_steps=None) -> Rollout with GAE: a rollout of a student
    # (any params of ``network``) on a batch of levels, for curricula that look at the
    # student outside the main rollout (SFL, PAIRED). num_steps defaults to ppo.num_steps.
    rollout: Callable[..., Any]


class Curriculum(Protocol):
    """Each of dr / plr / accel / paired / sfl supplies these three pure functions.

    ``update`` must return the same metric keys on every step (use NaN where a metric does
    not apply to the branch taken) so the step can be scanned.
    """

    def init(self, key: chex.PRNGKey) -> Any: ...

    def propose(self, key: chex.PRNGKey, cstate: Any, student: Any) -> tuple[Any, Level, Plan]: ...

    def update(
        self, key: chex.PRNGKey, cstate: Any, plan: Plan, levels: Level, rollout: Any, student: Any
    ) -> tuple[Any, dict[str, chex.Array]]: ...


def generate(ctx: Context, key: chex.PRNGKey, n: int) -> Level:
    """n fresh levels from the run's generator."""
    return jax.vmap(ctx.generator)(jax.random.split(key, n))


def full_plan(n: int, branch: int = 0, train: bool = True) -> Plan:
    return Plan(
        train_mask=jnp.full((n,), train),
        branch=jnp.asarray(branch, jnp.int32),
        buffer_idx=jnp.full((n,), -1, jnp.int32),
    )
