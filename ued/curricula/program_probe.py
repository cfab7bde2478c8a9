"""How the program curriculum measures the student's learning (``spec.signal: probe``): its
success on a fixed probe set, one level each of programs drawn inside the current bounds,
every ``probe_every`` updates. A widening of the bounds draws a new set."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp

from ued.core import scoring


@dataclasses.dataclass(frozen=True)
class Probe:
    space: Any  # envs.programs.ProgramSpace
    rollout: Callable[..., Any]  # Deps.rollout: (key, params, levels, num_steps) -> Rollout
    num_levels: int  # K, the programs of a probe set (one level each)
    num_steps: int  # steps of a probe rollout
    every: int  # updates between probes

    def draw(self, key, low: chex.Array, high: chex.Array):
        """Leaves (K, ...): one level each of K programs sampled uniformly inside the
        bounds: the fixed sample the student's learning is measured on."""
        k = self.num_levels
        p_key, g_key = jax.random.split(jax.random.fold_in(key, 0x9E0B))
        programs = jax.vmap(lambda kk: self.space.sample_in(kk, low, high))(
            jax.random.split(p_key, k)
        )
        return jax.vmap(self.space.generate)(jax.random.split(g_key, k), programs)

    def measure(self, key, levels, count: chex.Array, params) -> chex.Array:
        """() float32 ``success`` on ``levels`` when ``count`` is due (a multiple of
        ``every``), NaN otherwise. Branches on ``count`` alone, so an unbatched count keeps
        the rollout a real branch under vmapped seeds."""
        due = count % self.every == 0
        run = lambda levels: self.success(key, levels, params)  # noqa: E731
        skip = lambda levels: jnp.float32(jnp.nan)  # noqa: E731
        return jax.lax.cond(due, run, skip, levels).astype(jnp.float32)

    def success(self, key, levels, params) -> chex.Array:
        """() float32 the mean over ``levels`` of the fraction of finished episodes solved
        (a level with none counts 0) in one rollout of ``num_steps``."""
        rollout = self.rollout(key, params, levels, num_steps=self.num_steps)
        stats = scoring.episode_stats(rollout)
        return jnp.where(stats["num_episodes"] > 0, stats["success_rate"], 0.0).mean()
