"""Builds a run from a config: env, generator, student, curriculum, and the one train step.

``Experiment.step`` is the pure function ``(TrainState, Schedule) -> (TrainState, metrics)``
that every curriculum shares: propose levels, roll the student out on them, let the
curriculum score and store them, and update the student where the plan says so. The
``Schedule`` (``ued.core.schedule``) is what the seeds of a run share: the update count and the
schedule key, passed unbatched so that branches stay branches when seeds are vmapped.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import struct
from flax.training.train_state import TrainState as StudentState

from envs.core import Environment, Family, get_family
from ued.config.config import Config, ConfigError, PPOConfig
from ued.config.options import call_with_options
from ued.core import ppo, scoring
from ued.core.networks import ActorCritic, make_network
from ued.core.schedule import Schedule, schedule_base
from ued.curricula import Curriculum, Deps, make_curriculum
from ued.curricula.base import CarriesEpisodes, group_fractions, restarts

# Bits of the ``nonfinite`` metric, in order: a quantity that became NaN or infinite.
NONFINITE = ("params", "loss", "grad_norm")


def nonfinite_flags(params, loss_metrics: Mapping[str, Any], trained) -> chex.Array:
    """() int32 bit mask over ``NONFINITE``; 0 when everything is finite.

    Losses and the gradient norm only count when a gradient step was taken (``trained``):
    otherwise they are NaN by convention ("not applicable").
    """

    def bad(leaves) -> chex.Array:
        return jnp.any(jnp.stack([~jnp.isfinite(x).all() for x in leaves] or [False]))

    losses = [v for k, v in loss_metrics.items() if k.startswith("loss/")]
    flags = (
        bad(jax.tree.leaves(params)),
        trained & bad(losses),
        trained & bad([loss_metrics["grad_norm"]] if "grad_norm" in loss_metrics else []),
    )
    return sum(f.astype(jnp.int32) << i for i, f in enumerate(flags))


@struct.dataclass
class TrainState:
    student: StudentState  # params and optimiser state
    curriculum: Any  # the curriculum's own pytree (buffer, adversary, ...)
    key: chex.PRNGKey
    updates: chex.Array  # () int32, updates done so far


def _lookup(table: Mapping[str, Any], name: str, key: str):
    if name not in table:
        raise ConfigError(f"{key}={name!r} is not one of {sorted(table)}")
    return table[name]


def make_rollout(
    env: Environment, env_params, network: ActorCritic, ppo_cfg: PPOConfig, batch_sharding=None
):
    """``(key, params, levels, num_steps=None) -> Rollout with GAE``: the student (any params
    of ``network``) on a batch of levels, each env reset to its level. ``batch_sharding``
    (a ``jax.sharding.Sharding`` of the levels' leading axis, or None for wherever XLA puts
    it) constrains the env batch axis; see ``ued.step.parallel``."""

    def rollout(
        key: chex.PRNGKey,
        params,
        levels,
        num_steps: int | None = None,
        next_levels=None,
        start: ppo.EpisodeCarry | None = None,
    ):
        reset_key, roll_key = jax.random.split(key)
        n = jax.tree.leaves(levels)[0].shape[0]
        if batch_sharding is not None:
            levels = jax.lax.with_sharding_constraint(levels, batch_sharding)
        reset = jax.vmap(env.reset_to_level, in_axes=(0, 0, None))
        obs, env_state = reset(jax.random.split(reset_key, n), levels, env_params)
        steps = num_steps or ppo_cfg.num_steps
        if start is None:
            out, _ = ppo.collect(
                roll_key, env, env_params, network, params, obs, env_state, steps, next_levels
            )
            return ppo.with_gae(out, ppo_cfg.gamma, ppo_cfg.gae_lambda)
        # Episodes continue from the previous rollout (after the first, fresh one).
        keep = lambda old, new: jnp.where(start.started, old, new)  # noqa: E731
        obs, env_state = jax.tree.map(keep, (start.obs, start.env_state), (obs, env_state))
        carried = jax.tree.map(
            keep,
            ppo.Carried(start.rnn, start.done),
            ppo.Carried(network.initial_carry(n), jnp.ones((n,), bool)),
        )
        out, (obs, env_state, end) = ppo.collect(
            roll_key, env, env_params, network, params, obs, env_state, steps, next_levels,
            start=carried,
        )  # fmt: skip
        end = ppo.EpisodeCarry(obs, env_state, end.carry, end.done, jnp.ones((), bool))
        return ppo.with_gae(out, ppo_cfg.gamma, ppo_cfg.gae_lambda), end

    return rollout


@dataclasses.dataclass(frozen=True)
class Experiment:
    cfg: Config
    family: Family
    env: Environment
    env_params: Any
    network: ActorCritic
    curriculum: Curriculum
    deps: Deps
    # Where the env batch axis of a rollout lives; see ``make_rollout``.
    batch_sharding: Any = None

    @property
    def rollout(self):
        return self.deps.rollout

    def with_batch_sharding(self, sharding) -> Experiment:
        """This experiment with every rollout's env batch, the curriculum's included,
        constrained to ``sharding`` (e.g. ``NamedSharding(mesh, P("env"))``)."""
        return build(self.cfg, batch_sharding=sharding)

    # --- construction -------------------------------------------------------------------
    def init(self, key: chex.PRNGKey) -> TrainState:
        net_key, cur_key, key = jax.random.split(key, 3)
        level = self.family.example_level(self.env)
        obs, _ = self.env.reset_to_level(jax.random.PRNGKey(0), level, self.env_params)
        tx = ppo.make_optimizer(self.cfg.ppo, self.cfg.total_updates)
        student = ppo.init_student(net_key, self.network, obs, tx)
        return TrainState(
            student=student,
            curriculum=self.curriculum.init(cur_key),
            key=key,
            updates=jnp.zeros((), jnp.int32),
        )

    # --- the train step -----------------------------------------------------------------
    @property
    def schedule_seed(self) -> int:
        """``run.schedule_seed``, or ``run.seed`` when it is -1."""
        run = self.cfg.run
        return run.schedule_seed if run.schedule_seed >= 0 else run.seed

    def schedule_base(self) -> chex.PRNGKey:
        """The base key of this run's schedule (``ued.core.schedule.schedule_base``)."""
        return schedule_base(self.schedule_seed)

    def step(
        self, state: TrainState, schedule: Schedule | None = None
    ) -> tuple[TrainState, dict[str, chex.Array]]:
        """One train step. ``schedule`` defaults to update ``state.updates`` of this run's
        schedule (``run.schedule_seed``), without a seed axis."""
        if schedule is None:
            schedule = Schedule.at(self.schedule_base(), state.updates)
        key, k_propose, k_roll, k_update, k_ppo = jax.random.split(state.key, 5)
        cstate, levels, plan = _scheduled(self.curriculum.propose, schedule)(
            k_propose, state.curriculum, state.student
        )
        # A curriculum may reset finished episodes to fresh levels (DR, programs) instead of
        # replaying.
        next_levels = restarts(self.curriculum, cstate, levels, plan)
        rollout, cstate = self._rollout(k_roll, state.student.params, cstate, levels, next_levels)
        cstate, cmetrics = _scheduled(self.curriculum.update, schedule)(
            k_update, cstate, plan, levels, rollout, state.student
        )

        # Wrapped in jit so that eval_shape below reuses this trace instead of tracing the
        # whole PPO update a second time (XLA inlines the nested call).
        @jax.jit
        def train(student):
            return ppo.update(k_ppo, student, self.network, rollout, plan.train_mask, self.cfg.ppo)

        def skip(student):
            # Same metric keys as train(), NaN: no gradient step was taken.
            _, stats = jax.eval_shape(train, student)
            return student, jax.tree.map(lambda s: jnp.full(s.shape, jnp.nan, s.dtype), stats)

        # Per seed; with vmapped seeds the update runs only when some seed trains.
        trained = plan.train_mask.any()
        student, loss_metrics = schedule.cond(trained, train, skip, state.student)
        metrics = {
            **self._episode_metrics(rollout),
            **self._level_metrics(levels),
            **loss_metrics,
            **cmetrics,
            **group_fractions(self.curriculum.groups, plan),
            "trained_envs": plan.train_mask.sum(),
            # The student's env steps; curricula report theirs as env_steps/<kind>.
            "env_steps/student": jnp.float32(rollout.rewards.size),
            "nonfinite": nonfinite_flags(student.params, loss_metrics, trained),
        }
        metrics = {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
        new_state = TrainState(
            student=student, curriculum=cstate, key=key, updates=state.updates + 1
        )
        return new_state, metrics

    def _rollout(self, key, params, cstate, levels, next_levels):
        """The student's rollout on ``levels``; a curriculum whose episodes continue across
        updates (``CarriesEpisodes``, DR's ``carry_episodes``) starts it where the last one
        ended and keeps where it ends."""
        if not isinstance(self.curriculum, CarriesEpisodes):
            return self.rollout(key, params, levels, next_levels=next_levels), cstate
        start = self.curriculum.episodes(cstate)
        rollout, end = self.rollout(key, params, levels, next_levels=next_levels, start=start)
        return rollout, self.curriculum.with_episodes(cstate, end)

    def _episode_metrics(self, rollout) -> dict[str, chex.Array]:
        stats = scoring.episode_stats(rollout)
        episodes = stats["num_episodes"].astype(jnp.float32)
        total = jnp.maximum(episodes.sum(), 1.0)
        return {
            "mean_return": (stats["mean_return"] * episodes).sum() / total,
            "solve_rate": (stats["success_rate"] * episodes).sum() / total,
            "episodes": episodes.sum(),
        }

    def _level_metrics(self, levels) -> dict[str, chex.Array]:
        per_level = jax.vmap(lambda level: self.family.level_metrics(self.env, level))(levels)
        return {f"levels/{k}": v.mean() for k, v in per_level.items()}

    def run_chunk(
        self,
        state: TrainState,
        num_updates: int,
        active: chex.Array | None = None,
        *,
        start: chex.Array | None = None,
        base: chex.PRNGKey | None = None,
        seed_axis: str | None = None,
    ):
        """``num_updates`` train steps in one ``lax.scan``; metrics get a leading axis.

        With ``active`` (a traced count), only the first ``active`` steps run and the rest
        pass the state through with NaN metrics: the run's last, shorter chunk reuses the
        same compiled program.

        Step ``i`` gets the schedule of update ``start + i`` from ``base``: ``start``
        defaults to ``state.updates`` and ``base`` to this run's schedule base key. When this
        runs under a vmap over seeds (``ued.step.parallel``), pass both unbatched, and the vmap's
        ``axis_name`` as ``seed_axis``.
        """
        start = state.updates if start is None else start
        base = self.schedule_base() if base is None else base

        def schedule(i):
            return Schedule.at(base, start + i, seed_axis)

        if active is None:
            return jax.lax.scan(
                lambda s, i: self.step(s, schedule(i)), state, jnp.arange(num_updates)
            )
        # One jit wrapper for both branches: the step is traced once, not again by eval_shape.
        step = jax.jit(self.step)

        def body(s, i):
            def skip(s, sched):
                _, metrics = jax.eval_shape(step, s, sched)
                return s, jax.tree.map(lambda m: jnp.full(m.shape, jnp.nan, jnp.float32), metrics)

            return jax.lax.cond(i < active, step, skip, s, schedule(i))

        return jax.lax.scan(body, state, jnp.arange(num_updates))


def _scheduled(fn: Callable, schedule: Schedule) -> Callable:
    """``fn`` (a curriculum's ``propose`` or ``update``) with ``schedule=schedule`` when it
    takes a ``schedule`` keyword; as it is otherwise (curricula that share no decisions)."""
    try:
        takes = "schedule" in inspect.signature(fn).parameters
    except (TypeError, ValueError):  # no signature to read
        takes = False
    if not takes:
        return fn
    return lambda *args: fn(*args, schedule=schedule)


def build(cfg: Config, batch_sharding=None) -> Experiment:
    """Builds the experiment top-down; config errors surface here, before any compilation."""
    try:
        family = get_family(cfg.env.family)
    except KeyError as err:
        raise ConfigError(f"env.family: {err.args[0]}") from None
    env = call_with_options(family.make_env, cfg.env.options, "env.options")
    gen_factory = _lookup(family.generators, cfg.env.generator, "env.generator")
    generator = call_with_options(
        gen_factory, cfg.env.generator_options, "env.generator_options", env
    )
    env_params = env.default_params()
    spaces = env.observation_space(env_params), env.action_space(env_params)
    network = make_network(cfg.network, *spaces)
    deps = Deps(
        env=env,
        env_params=env_params,
        family=family,
        generator=generator,
        network=network,
        ppo=cfg.ppo,
        rollout=make_rollout(env, env_params, network, cfg.ppo, batch_sharding),
        num_envs=cfg.ppo.num_envs,
        total_updates=cfg.total_updates,
    )
    curriculum = make_curriculum(cfg.curriculum.name, cfg.curriculum.options, deps)
    return Experiment(cfg, family, env, env_params, network, curriculum, deps, batch_sharding)
