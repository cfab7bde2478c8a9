"""PAIRED (Dennis et al. 2020) and its Minimax baseline: an adversary *builds* the levels.

Each train step (all inside the one jitted step):

1. ``propose``: the adversary (its own policy, trained with PPO) builds ``num_envs`` levels in
   the family's level builder: a ``lax.scan`` over the build steps, ``vmap`` over envs.
2. The step rolls the protagonist (the student) out on them and trains it (as for every
   curriculum).
3. ``update``: the antagonist (a second student: the student's network, its own parameters
   and optimiser) is rolled out on the same levels; per level

       regret = max(0, max antagonist return - mean protagonist return)

   over the episodes that finished in each rollout (``ued.core.scoring.episode_stats``). A student
   with no finished episode on a level counts as return 0 there (no evidence that it can
   solve it; with ``ppo.num_steps`` >= the episode horizon every level finishes at least one
   episode). The antagonist trains with PPO on its own rollout (it maximises regret by
   maximising its return); the adversary is rewarded with the regret, sparsely, at its last
   build step, and trains with PPO (``ued.core.ppo.update`` with the adversary's network).

Options (``curriculum.options``, see ``PAIREDOptions``):
    ``minimax``: the adversary's reward is minus the protagonist's mean return; no
        antagonist is rolled out or trained (its metrics are NaN).
    ``population``: K adversary/antagonist pairs; step t uses pair ``t mod K`` (round
        robin), so each pair is trained every K-th step.
    ``builder``: options passed to the family's ``make_builder`` (maze: ``num_walls``,
        ``noise_dim``).
    ``adversary_*``: the adversary's learning rate, entropy coefficient and network size.
    The adversary's other PPO settings (epochs, clipping, gamma, lambda, ...) are the
    student's ``ppo`` section.

The level-builder protocol (generic: any family may provide one through
``Family.make_builder(env, **options)``) is ``LevelBuilder`` below. The adversary network
reads a dict observation with any of ``image`` (H, W, C) (a 3x3 conv, as a patch product:
``ued.core.networks.PatchConv``), ``time`` (int32 (), a learned embedding) and ``noise`` (float32
(D,), passed through); then an LSTM (or MLP) torso and actor/critic heads shared with
``ued.core.networks.ActorCritic`` (its LSTM input projection as one wide product: ``wide_input``).

Environment steps beyond the student's rollout are reported as metrics:
``env_steps/antagonist`` and ``env_steps/builder`` per update.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, Protocol

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct
from flax.training.train_state import TrainState

from envs.core import Level, StepOut
from ued.config.options import ConfigError, call_with_options, option, positive_ints
from ued.core import ppo, scoring
from ued.core.networks import ActorCritic, PatchConv
from ued.core.types import Rollout
from ued.curricula import register
from ued.curricula.base import Deps, Support, full_plan


class LevelBuilder(Protocol):
    """An environment whose actions build a level step by step (PAIRED's adversary env).

    ``num_steps`` is static; after ``num_steps`` calls of ``step`` from ``reset``,
    ``to_level`` must return a *valid* level whatever the actions were. All methods are
    pure and jittable, and ``reset``/``step``/``to_level`` are vmappable.
    """

    num_steps: int

    def reset(self, key: chex.PRNGKey) -> tuple[Any, Any]: ...

    def step(self, key: chex.PRNGKey, state: Any, action: chex.Array) -> tuple[Any, Any]: ...

    def to_level(self, state: Any) -> Level: ...

    def observation_space(self) -> Any: ...

    def action_space(self) -> Any: ...


# --- options ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PAIREDOptions:
    minimax: bool = option(False, resume="refuse")  # no antagonist state
    population: int = option(1, ge=1, resume="refuse")  # adversary/antagonist pairs
    builder: dict = option(
        {}, allowed="a mapping of the family's builder options", resume="refuse"
    )  # sets the build rollout's shapes
    adversary_lr: float = option(1e-4, gt=0)
    adversary_ent_coef: float = option(0.05, ge=0)
    # The adversary network's shape: a change changes its parameters.
    adversary_kind: str = option("conv_lstm", choices=("conv_lstm", "mlp"), resume="refuse")
    adversary_conv_channels: int = option(128, ge=1, resume="refuse")
    adversary_time_embedding: int = option(10, ge=1, resume="refuse")
    adversary_lstm_size: int = option(256, ge=1, resume="refuse")
    adversary_head_size: int = option(32, ge=1, resume="refuse")
    adversary_mlp_sizes: tuple = option(
        (64, 64), check=positive_ints, allowed="a list of integers >= 1", resume="refuse"
    )


# --- the adversary's network -----------------------------------------------------------------


class BuilderEncoder(nn.Module):
    """Builder observation -> features: conv over ``image``, embedding of ``time``, and the
    ``noise`` vector as is. Leading axes (e.g. (T, N)) are kept."""

    conv_channels: int
    time_embedding: int
    num_times: int

    @nn.compact
    def __call__(self, obs) -> chex.Array:
        parts = []
        if "image" in obs:
            image = obs["image"].astype(jnp.float32)
            padding = "VALID" if min(image.shape[-3:-1]) >= 3 else "SAME"
            # The parameters, initialisation and result of nn.Conv(conv_channels, (3, 3),
            # padding=padding), as one matrix product over patches: XLA:CPU's convolution
            # weight gradient was most of PAIRED's train step.
            conv = PatchConv(self.conv_channels, padding, dense_backward=True, name="conv")
            x = nn.relu(conv(image))
            parts.append(x.reshape(image.shape[:-3] + (-1,)))
        if "time" in obs:
            time = jnp.clip(obs["time"].astype(jnp.int32), 0, self.num_times - 1)
            parts.append(nn.Embed(self.num_times, self.time_embedding, name="time")(time))
        if "noise" in obs:
            parts.append(obs["noise"].astype(jnp.float32))
        return jnp.concatenate(parts, axis=-1)


class AdversaryNetwork(nn.Module):
    """The adversary: ``BuilderEncoder`` -> ``ActorCritic`` torso and heads.

    Same call convention as ``ActorCritic``: ``(carry, obs, resets) -> (carry, logits,
    values)`` over time-major ``(T, N, ...)`` inputs, so ``ued.core.ppo`` collects and updates it.
    """

    action_dim: int
    num_times: int
    recurrent: bool = True
    conv_channels: int = 128
    time_embedding: int = 10
    lstm_size: int = 256
    head_size: int = 32
    mlp_sizes: Sequence[int] = (64, 64)
    continuous: bool = False

    def _torso(self, name: str | None = None) -> ActorCritic:
        return ActorCritic(
            action_dim=self.action_dim,
            recurrent=self.recurrent,
            lstm_size=self.lstm_size,
            head_size=self.head_size,
            mlp_sizes=tuple(self.mlp_sizes),
            wide_input=True,  # the conv features are wide (13x13 maze: 15548 inputs)
            name=name,
        )

    @nn.compact
    def __call__(self, carry, obs, resets):
        encoder = BuilderEncoder(
            self.conv_channels, self.time_embedding, self.num_times, name="builder_encoder"
        )
        return self._torso("torso")(carry, encoder(obs), resets)

    def initial_carry(self, batch: int):
        if not self.recurrent:
            return ()
        zeros = jnp.zeros((batch, self.lstm_size), jnp.float32)
        return (zeros, zeros)


class _BuildEnv:
    """A builder seen as the env ``ued.core.ppo.collect`` steps: no reward, ``done`` on the last
    build step, no auto-reset (the rollout is exactly ``num_steps`` long)."""

    def __init__(self, builder: LevelBuilder):
        self.builder = builder

    def reset(self, key):
        obs, state = self.builder.reset(key)
        return obs, (state, jnp.zeros((), jnp.int32))

    def step(self, key, state, action, params) -> StepOut:
        inner, t = state
        obs, inner = self.builder.step(key, inner, action)
        t = t + 1
        done = t >= self.builder.num_steps
        info = {"success": jnp.zeros((), bool)}
        return StepOut(obs, (inner, t), jnp.zeros((), jnp.float32), done, info)


# --- regret -----------------------------------------------------------------------------------


def episode_return(mean_or_max: chex.Array, num_episodes: chex.Array) -> chex.Array:
    """(N,) float32 return per level, 0 where no episode finished."""
    return jnp.where(num_episodes > 0, mean_or_max, 0.0).astype(jnp.float32)


def regret(
    protagonist_mean: chex.Array,
    protagonist_episodes: chex.Array,
    antagonist_max: chex.Array,
    antagonist_episodes: chex.Array,
) -> chex.Array:
    """(N,) float32 PAIRED regret ``max(0, antagonist max return - protagonist mean return)``.

    A student with no finished episode on a level counts as return 0 there.
    """
    pro = episode_return(protagonist_mean, protagonist_episodes)
    ant = episode_return(antagonist_max, antagonist_episodes)
    return jnp.maximum(ant - pro, 0.0).astype(jnp.float32)


# --- the curriculum ---------------------------------------------------------------------------


@struct.dataclass
class PAIREDState:
    adversaries: TrainState  # leaves (K, ...): the adversaries' params and optimiser states
    antagonists: TrainState  # leaves (K, ...): the antagonists' params and optimiser states
    pending: Rollout  # leaves (num_build_steps, N, ...): this step's building rollout (propose)
    pair: chex.Array  # () int32, pair used by this step
    count: chex.Array  # () int32, steps taken


def _take(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def _put(tree, i, value):
    return jax.tree.map(lambda x, v: x.at[i].set(v), tree, value)


@dataclasses.dataclass(frozen=True)
class PAIRED:
    """Built by ``make_paired``."""

    deps: Deps
    options: PAIREDOptions
    builder: LevelBuilder
    adversary: AdversaryNetwork
    adversary_ppo: Any  # PPOConfig with the adversary's lr and entropy coefficient
    updates_per_pair: int  # optimiser steps schedule length (for lr annealing)
    groups: tuple[str, ...] = ("built",)

    @property
    def population(self) -> int:
        return self.options.population

    def init(self, key) -> PAIREDState:
        adv_key, ant_key, build_key, env_key = jax.random.split(key, 4)
        k = self.population
        deps = self.deps
        build_obs, _ = self.builder.reset(build_key)
        adv_tx = ppo.make_optimizer(self.adversary_ppo, self.updates_per_pair)
        adversaries = jax.vmap(
            lambda key: ppo.init_student(key, self.adversary, build_obs, adv_tx)
        )(jax.random.split(adv_key, k))
        example = deps.family.example_level(deps.env)
        obs, _ = deps.env.reset_to_level(env_key, example, deps.env_params)
        ant_tx = ppo.make_optimizer(deps.ppo, self.updates_per_pair)
        antagonists = jax.vmap(lambda key: ppo.init_student(key, deps.network, obs, ant_tx))(
            jax.random.split(ant_key, k)
        )
        # Shapes only (eval_shape): the pending rollout starts as zeros.
        pending = jax.eval_shape(lambda: self._build(build_key, _take(adversaries, 0).params)[0])
        pending = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), pending)
        zero = jnp.zeros((), jnp.int32)
        return PAIREDState(adversaries, antagonists, pending, pair=zero, count=zero)

    def propose(self, key, cstate: PAIREDState, student, schedule=None):
        # Round robin on the shared, unbatched update count when there is a schedule (the
        # same value as the state's count): an unbatched index picks the pair by a slice.
        count = cstate.count if schedule is None else schedule.update
        pair = (count % self.population).astype(jnp.int32)
        adversary = _take(cstate.adversaries, pair)
        rollout, levels = self._build(key, adversary.params)
        cstate = cstate.replace(pending=rollout, pair=pair)
        return cstate, levels, full_plan(self.deps.num_envs)

    def update(self, key, cstate: PAIREDState, plan, levels, rollout, student):
        ant_roll_key, ant_key, adv_key = jax.random.split(key, 3)
        pair = cstate.pair
        pro = scoring.episode_stats(rollout)
        pro_return = episode_return(pro["mean_return"], pro["num_episodes"])
        antagonist = _take(cstate.antagonists, pair)
        if self.options.minimax:
            reward = -pro_return
            ant_metrics = self._antagonist_nan(ant_key, antagonist, rollout)
        else:
            ant_rollout = self.deps.rollout(ant_roll_key, antagonist.params, levels)
            ant = scoring.episode_stats(ant_rollout)
            reward = regret(
                pro["mean_return"], pro["num_episodes"], ant["max_return"], ant["num_episodes"]
            )
            antagonist, stats = self._train_antagonist(ant_key, antagonist, ant_rollout)
            ant_metrics = {
                "paired/regret": reward.mean(),
                "paired/antagonist_return": episode_return(
                    ant["mean_return"], ant["num_episodes"]
                ).mean(),
                "paired/antagonist_max_return": episode_return(
                    ant["max_return"], ant["num_episodes"]
                ).mean(),
                "paired/antagonist_solve_rate": ant["success_rate"].mean(),
                "env_steps/antagonist": jnp.float32(ant_rollout.rewards.size),
                **{f"paired/antagonist/{k}": v for k, v in stats.items()},
            }
        adversary, adv_stats = self._train_adversary(
            adv_key, _take(cstate.adversaries, pair), cstate.pending, reward
        )
        cstate = cstate.replace(
            adversaries=_put(cstate.adversaries, pair, adversary),
            antagonists=_put(cstate.antagonists, pair, antagonist),
            count=cstate.count + 1,
        )
        metrics = {
            **ant_metrics,
            "paired/adversary_reward": reward.mean(),
            "paired/protagonist_return": pro_return.mean(),
            "paired/pair": pair.astype(jnp.float32),
            "env_steps/builder": jnp.float32(cstate.pending.rewards.size),
            **{f"paired/adversary/{k}": v for k, v in adv_stats.items()},
        }
        return cstate, metrics

    # --- parts --------------------------------------------------------------------------
    def _build(self, key, params) -> tuple[Rollout, Level]:
        """The adversary's building rollout on ``num_envs`` builders, and the built levels."""
        reset_key, roll_key = jax.random.split(key)
        env = _BuildEnv(self.builder)
        obs, state = jax.vmap(env.reset)(jax.random.split(reset_key, self.deps.num_envs))
        rollout, (final, _) = ppo.collect(
            roll_key, env, None, self.adversary, params, obs, state, self.builder.num_steps
        )
        # noise_dim 0 (JaxUED's zeroed noise): the empty noise adds nothing to the adversary's
        # input; it is dropped from the stored rollout, since orbax cannot save a zero-size
        # array (the state would not checkpoint).
        if isinstance(rollout.obs, dict):
            rollout = rollout.replace(
                obs={k: v for k, v in rollout.obs.items() if math.prod(v.shape) > 0}
            )
        return rollout, jax.vmap(self.builder.to_level)(final)

    def _train_adversary(self, key, adversary: TrainState, pending: Rollout, reward):
        """PPO on the building rollout, rewarded with ``reward`` (N,) at the last step."""
        rewards = jnp.zeros_like(pending.rewards).at[-1].set(reward.astype(jnp.float32))
        rollout = ppo.with_gae(
            pending.replace(rewards=rewards), self.deps.ppo.gamma, self.deps.ppo.gae_lambda
        )
        mask = jnp.ones((self.deps.num_envs,), bool)
        return ppo.update(key, adversary, self.adversary, rollout, mask, self.adversary_ppo)

    def _train_antagonist(self, key, antagonist: TrainState, rollout: Rollout):
        mask = jnp.ones((self.deps.num_envs,), bool)
        return ppo.update(key, antagonist, self.deps.network, rollout, mask, self.deps.ppo)

    def _antagonist_nan(self, key, antagonist, rollout) -> dict[str, chex.Array]:
        """Minimax: the antagonist's metric keys, all NaN (it is neither run nor trained)."""
        _, stats = jax.eval_shape(lambda: self._train_antagonist(key, antagonist, rollout))
        names = [
            "paired/regret",
            "paired/antagonist_return",
            "paired/antagonist_max_return",
            "paired/antagonist_solve_rate",
        ] + [f"paired/antagonist/{k}" for k in stats]
        out = {name: jnp.float32(jnp.nan) for name in names}
        out["env_steps/antagonist"] = jnp.float32(0.0)
        return out


def _make_builder(deps: Deps, options: dict) -> LevelBuilder:
    family = deps.family
    if family.make_builder is None:
        raise ConfigError(
            f"curriculum.name='paired' needs a level builder, but family "
            f"{family.name!r} has none (Family.make_builder)"
        )
    where = "curriculum.options.builder"
    return call_with_options(family.make_builder, options, where, deps.env)


def _support(options: PAIREDOptions) -> Support:
    return Support("builder", builder=dict(options.builder))


@register("paired", PAIREDOptions, support=_support)
def make_paired(options: PAIREDOptions, deps: Deps) -> PAIRED:
    """PAIRED (or Minimax with ``curriculum.options.minimax``)."""
    builder = _make_builder(deps, options.builder)
    action_space = builder.action_space()
    if not hasattr(action_space, "n"):
        raise ConfigError(
            f"the builder of family {deps.family.name!r} needs a discrete action space"
        )
    adversary = AdversaryNetwork(
        action_dim=int(action_space.n),
        num_times=builder.num_steps + 1,
        recurrent=options.adversary_kind == "conv_lstm",
        conv_channels=options.adversary_conv_channels,
        time_embedding=options.adversary_time_embedding,
        lstm_size=options.adversary_lstm_size,
        head_size=options.adversary_head_size,
        mlp_sizes=tuple(options.adversary_mlp_sizes),
    )
    adversary_ppo = dataclasses.replace(
        deps.ppo, lr=options.adversary_lr, ent_coef=options.adversary_ent_coef
    )
    updates_per_pair = max(1, math.ceil(deps.total_updates / options.population))
    return PAIRED(deps, options, builder, adversary, adversary_ppo, updates_per_pair)
