"""Target difficulty: fresh levels whose metric follows a target rising over the run."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ued.config.options import ConfigError, option
from ued.curricula import register
from ued.curricula.base import Deps, full_plan, generate


@dataclasses.dataclass(frozen=True)
class TargetOptions:
    metric: str = option("shortest_path", allowed="a level metric of the family")
    start: float = option(2.0)  # target of the first update
    end: float = option(20.0)  # target of the last update
    candidates: int = option(8, ge=1)  # generator draws per env; the closest one is kept


@dataclasses.dataclass(frozen=True)
class TargetDifficulty:
    deps: Deps
    options: TargetOptions
    groups: tuple[str, ...] = ("new",)

    def init(self, key):
        return jnp.zeros((), jnp.int32)  # updates done: the curriculum's whole state

    def target(self, count):
        progress = jnp.minimum(count / max(self.deps.total_updates - 1, 1), 1.0)
        return self.options.start + progress * (self.options.end - self.options.start)

    def propose(self, key, count, student):
        n, k = self.deps.num_envs, self.options.candidates
        family, env = self.deps.family, self.deps.env
        levels = generate(self.deps.generator, key, n * k)
        value = jax.vmap(lambda lv: family.level_metrics(env, lv))(levels)[self.options.metric]
        gap = jnp.abs(value.reshape(n, k).astype(jnp.float32) - self.target(count))
        keep = jnp.arange(n) * k + jnp.argmin(gap, axis=1)
        return count, jax.tree.map(lambda x: x[keep], levels), full_plan(n)

    def update(self, key, count, plan, levels, rollout, student):
        return count + 1, {"curriculum/target": self.target(count)}


@register("target_difficulty", TargetOptions)
def make_target_difficulty(options: TargetOptions, deps: Deps) -> TargetDifficulty:
    example = deps.family.example_level(deps.env)
    known = jax.eval_shape(lambda lv: deps.family.level_metrics(deps.env, lv), example)
    if options.metric not in known:
        raise ConfigError(
            f"curriculum.options.metric={options.metric!r}; must be one of {sorted(known)}"
        )
    return TargetDifficulty(deps, options)
