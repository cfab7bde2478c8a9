"""Sampling For Learnability (SFL; Rutherford et al. 2024, "No Regrets").

Every ``refresh_every`` updates (L, starting with the first), SFL samples ``num_samples``
levels (N) from the generator, rolls the current student out on them for ``rollout_steps``
steps (R), scores each level by its learnability ``p (1 - p)`` (p = success rate of the
finished episodes; ``ued.core.scoring.learnability``, -inf when none finished) and keeps the
``buffer_size`` (K) most learnable as the buffer. Each train batch then draws
``round(buffer_fraction * num_envs)`` envs uniformly (with replacement) from the buffer and
the rest fresh from the generator; the student trains on all of them.

The refresh runs inside the jitted step behind a ``lax.cond`` on the update count, so it
costs nothing on other steps. The count is the step's ``Schedule.update``, which the seeds
of a run share unbatched (``ued.core.schedule``): with vmapped seeds the refresh is still a real
branch, run on every L-th update only (a per-seed copy of the count would make the predicate
batched, and the refresh would run on every update). Its environment steps, ``N * R``, are
reported as ``env_steps/curriculum_eval`` on refresh steps (0 otherwise), exactly the steps
that ran; the run's own env-step count covers the training rollouts only.

Groups: ``buffer`` (the first ``round(buffer_fraction * num_envs)`` envs) and ``fresh`` (the
rest).
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
from flax import struct

from envs.core import Level
from ued.config.options import ConfigError, option
from ued.core import scoring
from ued.core.level_sets import stack_like
from ued.curricula import register
from ued.curricula.base import Deps, Plan, generate, generator_support


@dataclasses.dataclass(frozen=True)
class SFLOptions:
    num_samples: int = option(1000, ge=1)
    # Levels rolled out at once during a refresh (memory bound); 0 = all num_samples.
    samples_per_batch: int = option(0, ge=0, allowed="0 or a divisor of num_samples (>= 1)")
    # Rollout length R of a refresh; 0 = twice the env's episode horizon.
    rollout_steps: int = option(0, ge=0, allowed="an integer >= 0 (0 = twice the horizon)")
    buffer_size: int = option(
        100, ge=1, allowed="an integer in [1, num_samples]", resume="refuse"
    )  # the buffer's leading axis
    buffer_fraction: float = option(0.5, ge=0, le=1, resume="refuse")  # sets a static split
    refresh_every: int = option(50, ge=1)


@struct.dataclass
class SFLState:
    levels: Level  # leaves (K, ...): the buffer, the K most learnable sampled levels
    learnability: chex.Array  # (K,) float32 p (1 - p) of each buffer level at its refresh
    success_rate: chex.Array  # (K,) float32 p of each buffer level at its refresh
    level_stats: dict  # name -> () float32 mean level metric over the buffer
    sampled_learnability: chex.Array  # () float32 mean finite learnability of the last refresh
    refreshed: chex.Array  # () bool, the current step refreshed the buffer
    count: chex.Array  # () int32 steps taken (the refresh reads the schedule's count)


def top_k(scores: chex.Array, k: int) -> chex.Array:
    """(k,) int32 indices of the k highest scores (ties to the lower index); -inf ranks last."""
    scores = jnp.where(jnp.isnan(scores), -jnp.inf, scores.astype(jnp.float32))
    return jax.lax.top_k(scores, k)[1].astype(jnp.int32)


def _finite_mean(x: chex.Array) -> chex.Array:
    """Mean of the finite entries; NaN when there are none (e.g. no episode finished)."""
    finite = jnp.isfinite(x)
    mean = jnp.where(finite, x, 0.0).sum() / jnp.maximum(finite.sum(), 1)
    return jnp.where(finite.any(), mean, jnp.nan).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class SFL:
    """Built by ``make_sfl``."""

    deps: Deps
    options: SFLOptions
    rollout_steps: int  # R, resolved
    batch_size: int  # levels per refresh batch, resolved
    groups: tuple[str, ...] = ("buffer", "fresh")

    @property
    def buffer_envs(self) -> int:
        """Envs per batch drawn from the buffer (static)."""
        return int(round(self.options.buffer_fraction * self.deps.num_envs))

    @property
    def refresh_env_steps(self) -> int:
        return self.options.num_samples * self.rollout_steps

    def init(self, key) -> SFLState:
        k = self.options.buffer_size
        deps = self.deps
        example = deps.family.example_level(deps.env)
        metrics = jax.eval_shape(lambda lv: deps.family.level_metrics(deps.env, lv), example)
        zeros = jnp.zeros((k,), jnp.float32)
        return SFLState(
            levels=stack_like(example, k),
            learnability=zeros,
            success_rate=zeros,
            level_stats={name: jnp.zeros((), jnp.float32) for name in metrics},
            sampled_learnability=jnp.zeros((), jnp.float32),
            refreshed=jnp.zeros((), bool),
            count=jnp.zeros((), jnp.int32),
        )

    def propose(self, key, cstate: SFLState, student, schedule=None):
        refresh_key, key = jax.random.split(key)
        # The shared, unbatched update count when there is a schedule (the same value).
        count = cstate.count if schedule is None else schedule.update
        due = count % self.options.refresh_every == 0
        cstate = jax.lax.cond(
            due, lambda c: self.refresh(refresh_key, c, student.params), lambda c: c, cstate
        )
        cstate = cstate.replace(refreshed=due)
        levels, plan, _ = self.compose(key, cstate)
        return cstate, levels, plan

    def compose(self, key, cstate: SFLState) -> tuple[Level, Plan, chex.Array]:
        """The batch: ``buffer_envs`` levels drawn uniformly from the buffer (first), the
        rest fresh from the generator; every env is trained on. Also returns (N,) int32 the
        buffer slot of each env's level, -1 for a fresh one (nothing later needs it)."""
        pick_key, gen_key = jax.random.split(key)
        n, m = self.deps.num_envs, self.buffer_envs
        idx = jax.random.randint(pick_key, (m,), 0, self.options.buffer_size, dtype=jnp.int32)
        parts = [jax.tree.map(lambda x: x[idx], cstate.levels)]
        if n > m:
            parts.append(generate(self.deps.generator, gen_key, n - m))
        levels = jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)
        plan = Plan(train_mask=jnp.ones((n,), bool), group=(jnp.arange(n) >= m).astype(jnp.int32))
        return levels, plan, jnp.concatenate([idx, jnp.full((n - m,), -1, jnp.int32)])

    def update(self, key, cstate: SFLState, plan, levels, rollout, student):
        m = self.buffer_envs
        learn = scoring.learnability(scoring.make_score_inputs(rollout))
        nan = jnp.float32(jnp.nan)
        metrics = {
            "sfl/refresh": cstate.refreshed.astype(jnp.float32),
            "env_steps/curriculum_eval": jnp.where(
                cstate.refreshed, jnp.float32(self.refresh_env_steps), 0.0
            ),
            "sfl/sampled_learnability": jnp.where(
                cstate.refreshed, cstate.sampled_learnability, nan
            ),
            "sfl/buffer_learnability": _finite_mean(cstate.learnability),
            "sfl/buffer_success_rate": cstate.success_rate.mean(),
            "sfl/buffer_envs": jnp.float32(m),
            # Learnability seen in this batch's rollout, buffer vs fresh envs.
            "sfl/batch_learnability_buffer": _finite_mean(learn[:m]) if m else nan,
            "sfl/batch_learnability_fresh": _finite_mean(learn[m:]) if m < learn.shape[0] else nan,
            **{f"sfl/buffer/{k}": v for k, v in cstate.level_stats.items()},
        }
        return cstate.replace(count=cstate.count + 1), metrics

    # --- the refresh --------------------------------------------------------------------
    def sample_and_score(self, key, params):
        """N fresh levels (leaves (N, ...)), their learnability and success rate (N,)."""
        b = self.batch_size
        r = self.rollout_steps

        def batch(carry, key):
            gen_key, roll_key = jax.random.split(key)
            levels = generate(self.deps.generator, gen_key, b)
            rollout = self.deps.rollout(roll_key, params, levels, num_steps=r)
            stats = scoring.episode_stats(rollout)
            learn = scoring.learnability(scoring.make_score_inputs(rollout))
            return carry, (levels, learn, stats["success_rate"])

        keys = jax.random.split(key, self.options.num_samples // b)
        _, out = jax.lax.scan(batch, None, keys)
        return jax.tree.map(lambda x: x.reshape((-1, *x.shape[2:])), out)

    def refresh(self, key, cstate: SFLState, params) -> SFLState:
        """Replaces the buffer by the ``buffer_size`` most learnable of N sampled levels."""
        levels, learn, success = self.sample_and_score(key, params)
        top = top_k(learn, self.options.buffer_size)
        kept = jax.tree.map(lambda x: x[top], levels)
        stats = jax.vmap(lambda lv: self.deps.family.level_metrics(self.deps.env, lv))(kept)
        return cstate.replace(
            levels=kept,
            learnability=learn[top],
            success_rate=success[top],
            level_stats={k: v.astype(jnp.float32).mean() for k, v in stats.items()},
            sampled_learnability=_finite_mean(learn),
        )


@register("sfl", SFLOptions, support=generator_support)
def make_sfl(options: SFLOptions, deps: Deps) -> SFL:
    n = options.num_samples
    if options.buffer_size > n:
        raise ConfigError(
            f"curriculum.options.buffer_size={options.buffer_size}; must be in [1, num_samples] "
            f"(num_samples={n})"
        )
    batch = options.samples_per_batch or n
    if n % batch:
        raise ConfigError(
            f"curriculum.options.samples_per_batch={options.samples_per_batch}; must be 0 or a "
            f"divisor of num_samples={n}"
        )
    steps = options.rollout_steps or 2 * int(deps.env.max_episode_steps(deps.env_params))
    return SFL(deps, options, steps, batch)
