# tests/ued/uniform_replay.py
"""Uniform replay: the generator's levels kept in a ring, each env replaying one of them with
probability ``replay_prob`` (no scores). Built on the shared level ring (``ued.core.level_sets``);
``ShownUniformReplay`` declares that it takes sent levels and shows its ring as a buffer."""

import dataclasses

import jax
import jax.numpy as jnp

from ued.config.options import option
from ued.core import level_sets
from ued.curricula.base import Deps, LevelView, ShowsLevels, TakesLevels, full_plan, generate


@dataclasses.dataclass(frozen=True)
class UniformReplayOptions:
    capacity: int = option(32, ge=1, resume="refuse")  # the ring's size: a shape
    replay_prob: float = option(0.5, ge=0.0, le=1.0)


@dataclasses.dataclass(frozen=True)
class UniformReplay:
    deps: Deps
    options: UniformReplayOptions
    groups: tuple[str, ...] = ("new", "replay")

    def init(self, key):
        example = self.deps.family.example_level(self.deps.env)
        return level_sets.ring(example, self.options.capacity)

    def propose(self, key, ring, student):
        n, (new_key, use_key, pick_key) = self.deps.num_envs, jax.random.split(key, 3)
        new = generate(self.deps.generator, new_key, n)
        use = jax.random.bernoulli(use_key, self.options.replay_prob, (n,)) & ring.filled.any()
        levels = level_sets.mix(new, level_sets.sample(ring, pick_key, n), use)
        return ring, levels, full_plan(n).replace(group=use.astype(jnp.int32))

    def update(self, key, ring, plan, levels, rollout, student):
        ring = level_sets.add(ring, levels, valid=plan.group == 0)  # keeps the new ones
        return ring, {"buffer/size": ring.filled.sum().astype(jnp.float32)}


@dataclasses.dataclass(frozen=True)
class ShownUniformReplay(UniformReplay, TakesLevels, ShowsLevels):
    def add_levels(self, ring, levels, key):
        return level_sets.add(ring, levels)

    def taken_levels(self, ring):
        return self.level_view(ring)

    def level_view(self, ring):
        ring = jax.device_get(ring)
        return LevelView("buffer", ring.levels, ring.filled)
