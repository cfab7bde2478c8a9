"""A curriculum over generator programs: searched by learning potential, kept diverse,
grounded by constraints and given levels, widened when the student's learning plateaus.

The run's program space (the family's ``Family.programs``, or one registered by name such as
the maze's ``latent`` space; see ``envs.programs``) turns a program vector into levels. Each
step splits the env batch among P = ``archive_programs`` + ``new_programs`` programs (env i
plays a level of program ``i % P``) and a grounding share:

- ``archive``: programs drawn from the archive by rank-prioritised fitness plus novelty,
  mixed with staleness (PLR's sampler, ``ued.core.program_archive.selection_weights``), without
  replacement; fresh programs stand in while the archive holds too few;
- ``mutated`` / ``fresh``: new programs, each a mutation of an archive program (chance
  ``mutate_prob``) or a fresh sample, inside the specification's current bounds;
- ``grounding``: ``round(grounding_fraction * num_envs)`` envs play levels of the grounding
  set (a level file, plus levels sent in with ``add_levels``); while it is empty they play
  program levels.

With ``resample: episode`` (default) an env whose episode ends inside the rollout starts a
new level of the same program (``next_levels``; a grounding env replays its level); with
``rollout`` it replays its level for the whole rollout.

After the rollout every level gets a learning-potential value: the configured ``score``
(per level, e.g. positive value loss) plus ``learnability`` x p (1 - p), p being the success
rate pooled over all episodes of its program's envs (a program solved half the time is the
most learnable). A program's value this step is the mean over its envs (and the mean
square, for the spread); archive programs fold it into their moving averages, new programs
compete for a slot (``insertion``: the capacity-bounded ``hybrid`` with a grid bonus, or
classic MAP-Elites ``elites``, one per cell; ``ued.core.program_archive``). Constraints
(``min_solvable``, ``descriptor_bounds``) filter candidates or penalise fitness.

The specification (``ued.core.program_spec``) holds the current bounds of every program dim.
When the student's learning plateaus (its success on a fixed probe set of the current
bounds stops rising over ``plateau_window`` updates) the bounds widen: to the next stage of
the space's ladder (``spec: stages``) or where a surrogate model of learning potential
predicts the most (``spec: model``). ``events/widen`` is 1 on that update, and the run logs
it to ``events.jsonl``.

This module proposes levels and folds the results in; its parts live beside it: the options
and their checks (``program_options``), the archive's estimates (``program_estimates``), the
probe of the student's learning (``program_probe``), the logged metrics
(``program_metrics``) and what the studio shows (``program_view``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ued.core import level_sets, scoring
from ued.core import program_archive as arc
from ued.core.program_spec import Specification, SpecState
from ued.curricula import program_view, register
from ued.curricula.base import (
    Deps,
    LevelView,
    Plan,
    ResetsEpisodes,
    ShowsLevels,
    Support,
    TakesLevels,
)
from ued.curricula.program_estimates import Estimates
from ued.curricula.program_metrics import step_metrics
from ued.curricula.program_options import ProgramsOptions, check_options
from ued.curricula.program_probe import Probe

ARCHIVE, FRESH, MUTATED, GROUNDING = range(4)
GROUPS = ("archive", "fresh", "mutated", "grounding")


@struct.dataclass
class ProgramsState:
    archive: arc.Archive
    grounding: level_sets.LevelRing  # capacity G: the grounding file's and sent levels
    batch_programs: chex.Array  # (P, D) float32 this step's programs
    batch_slots: chex.Array  # (P,) int32 their archive slots, -1 for new ones
    batch_kind: chex.Array  # (P,) int32 ARCHIVE, FRESH or MUTATED
    spec: SpecState  # the current bounds, the plateau signal and the model in the loop
    probe_levels: Any  # leaves (K, ...) the probe set of the current bounds, or ()
    count: chex.Array  # () int32 updates done

    # The specification's counters, as the studio and the logs read them.
    @property
    def stage(self) -> chex.Array:
        return self.spec.stage

    @property
    def widen_events(self) -> chex.Array:
        return self.spec.widen_events

    @property
    def last_widen(self) -> chex.Array:
        return self.spec.last_widen


@dataclasses.dataclass(frozen=True)
class ProgramCurriculum(ResetsEpisodes, TakesLevels, ShowsLevels):
    """Built by ``make_programs``; see the module docstring."""

    deps: Deps
    options: ProgramsOptions
    space: Any  # envs.programs.ProgramSpace
    spec: Specification
    score_fn: Any  # ScoreInputs -> (N,), or None
    grid: tuple[int, ...]  # descriptor indices spanning the grid
    bounds: np.ndarray  # (E, 2) descriptor bounds of the constraint (-inf/inf: none)
    grounding_levels: Any  # leaves (G0, ...) host arrays from the grounding file, or None
    groups: tuple[str, ...] = GROUPS

    # --- static layout --------------------------------------------------------------------
    @property
    def num_programs(self) -> int:
        return self.options.archive_programs + self.options.new_programs

    @property
    def grounding_envs(self) -> int:
        if self.options.grounding_capacity == 0:
            return 0
        return int(round(self.options.grounding_fraction * self.deps.num_envs))

    @property
    def probing(self) -> bool:
        return self.spec.signal == "probe"

    @property
    def probe_steps(self) -> int:
        return self.options.probe_steps or self.deps.ppo.num_steps

    def owner(self) -> np.ndarray:
        return np.arange(self.deps.num_envs) % self.num_programs

    @functools.cached_property
    def learning_probe(self) -> Probe:
        """The student's success on a probe set of the current bounds."""
        o = self.options
        return Probe(self.space, self.deps.rollout, o.probe_levels, self.probe_steps, o.probe_every)

    @functools.cached_property
    def estimates(self) -> Estimates:
        """Fitness, cells and selection weights of archive programs."""
        return Estimates(self.options, self.space, self.grid, self.bounds)

    # --- state ----------------------------------------------------------------------------
    def init(self, key) -> ProgramsState:
        deps, o, space = self.deps, self.options, self.space
        example = deps.family.example_level(deps.env)
        grounding = level_sets.ring(example, o.grounding_capacity, self.grounding_levels)
        p = self.num_programs
        spec = self.spec.init()
        return ProgramsState(
            archive=arc.init(example, o.capacity, space.num_dims, len(space.descriptor_names)),
            grounding=grounding,
            batch_programs=jnp.zeros((p, space.num_dims), jnp.float32),
            batch_slots=jnp.full((p,), -1, jnp.int32),
            batch_kind=jnp.full((p,), FRESH, jnp.int32),
            spec=spec,
            probe_levels=self.learning_probe.draw(key, spec.low, spec.high) if self.probing else (),
            count=jnp.zeros((), jnp.int32),
        )

    def add_levels(self, cstate: ProgramsState, levels, key) -> ProgramsState:
        """Appends the valid ones of ``levels`` (leaves (B, ...)) to the grounding set, a ring
        of fixed capacity (the oldest are overwritten). Jittable; ``key`` is unused (the
        ring's order is deterministic) and kept for the shared signature."""
        del key
        if self.options.grounding_capacity == 0:
            return cstate
        env, family = self.deps.env, self.deps.family
        valid = jax.vmap(lambda lv: family.is_valid(env, lv))(levels)
        return cstate.replace(grounding=level_sets.add(cstate.grounding, levels, valid))

    # --- propose --------------------------------------------------------------------------
    def propose(self, key, cstate: ProgramsState, student):
        o, space = self.options, self.space
        k, f, p, n = o.archive_programs, o.new_programs, self.num_programs, self.deps.num_envs
        keys = jax.random.split(key, 7)
        w = self.estimates.weights(cstate)
        logw = jnp.where(w > 0, jnp.log(jnp.where(w > 0, w, 1.0)), -jnp.inf)
        # Sampling without replacement: the top k of log w + Gumbel noise.
        gumbel = jax.random.gumbel(keys[0], w.shape)
        top = min(k, w.shape[0])
        picks = jax.lax.top_k(logw + gumbel, top)[1] if top else jnp.zeros((0,), jnp.int32)
        picks = jnp.concatenate([picks.astype(jnp.int32), jnp.zeros((k - top,), jnp.int32)])
        valid = (w[picks] > 0) & (jnp.arange(k) < w.shape[0])
        low, high = cstate.spec.low, cstate.spec.high
        fresh = jax.vmap(lambda kk: space.sample_in(kk, low, high))(jax.random.split(keys[1], p))
        parents = jax.random.categorical(keys[2], logw, shape=(f,))
        mutated = jax.vmap(lambda kk, x: space.mutate_in(kk, x, low, high, o.mutation_scale))(
            jax.random.split(keys[3], f), cstate.archive.programs[parents]
        )
        is_mut = (jax.random.uniform(keys[4], (f,)) < o.mutate_prob) & (w > 0).any()
        programs = jnp.concatenate([
            jnp.where(valid[:, None], cstate.archive.programs[picks], fresh[:k]),
            jnp.where(is_mut[:, None], mutated, fresh[k:]),
        ])  # fmt: skip
        slots = jnp.concatenate([jnp.where(valid, picks, -1), jnp.full((f,), -1, jnp.int32)])
        kind = jnp.concatenate([
            jnp.where(valid, ARCHIVE, FRESH), jnp.where(is_mut, MUTATED, FRESH)
        ]).astype(jnp.int32)  # fmt: skip
        owner = self.owner()
        levels = jax.vmap(space.generate)(jax.random.split(keys[5], n), programs[owner])
        group = kind[owner]
        is_ground = jnp.zeros((n,), bool)
        if self.grounding_envs:
            levels, is_ground = self._ground(keys[6], cstate, levels)
            group = jnp.where(is_ground, GROUNDING, group)
        plan = Plan(train_mask=jnp.ones((n,), bool), group=group.astype(jnp.int32))
        cstate = cstate.replace(batch_programs=programs, batch_slots=slots, batch_kind=kind)
        return cstate, levels, plan

    def _ground(self, key, cstate: ProgramsState, levels):
        """The last ``grounding_envs`` envs play grounding levels (while there are any)."""
        n, g = self.deps.num_envs, self.grounding_envs
        chosen = level_sets.sample(cstate.grounding, key, g)
        is_ground = (jnp.arange(n) >= n - g) & cstate.grounding.filled.any()
        return level_sets.mix(levels, chosen, is_ground), is_ground

    def next_levels(self, cstate: ProgramsState, levels, plan: Plan):
        """What a finished episode restarts on, given this step's proposal: with ``resample:
        episode`` a function ``key -> levels`` (leaves (N, ...)) drawing a new level of each
        env's program (a grounding env keeps its level); with ``rollout`` None (replay).

        The train step resets env i to entry i of ``next_levels(...)(key)`` when its episode
        ends (``ResetsEpisodes``); unlike DR's, the draw depends on the curriculum's state
        (each env's program)."""
        if self.options.resample == "rollout":
            return None
        n = self.deps.num_envs
        programs = cstate.batch_programs[jnp.asarray(self.owner())]
        keep = plan.group == GROUNDING

        def draw(key):
            fresh = jax.vmap(self.space.generate)(jax.random.split(key, n), programs)

            def mix(old, new):
                return jnp.where(keep.reshape((n,) + (1,) * (old.ndim - 1)), old, new)

            return jax.tree.map(mix, levels, fresh)

        return draw

    # --- update ---------------------------------------------------------------------------
    def level_values(self, rollout, owner_mask):
        """(N,) learning-potential value of each level and (N,) bool: it has evidence."""
        o = self.options
        inputs = scoring.make_score_inputs(rollout)
        n = rollout.rewards.shape[1]
        value = jnp.zeros((n,), jnp.float32)
        ok = jnp.ones((n,), bool)
        if self.score_fn is not None:
            s = self.score_fn(inputs)
            ok = jnp.isfinite(s)
            value = jnp.where(ok, s, 0.0)
        if o.learnability:
            stats = scoring.episode_stats(rollout)
            eps = stats["num_episodes"].astype(jnp.float32)
            wins = stats["success_rate"] * eps
            # Pooled over the program's levels (owner_mask (N, P)); a grounding env alone.
            prog_eps = (owner_mask * eps[:, None]).sum(0)
            prog_wins = (owner_mask * wins[:, None]).sum(0)
            mine = owner_mask.any(1)
            eps_i = jnp.where(mine, owner_mask @ prog_eps, eps)
            wins_i = jnp.where(mine, owner_mask @ prog_wins, wins)
            p = wins_i / jnp.maximum(eps_i, 1.0)
            value = value + o.learnability * p * (1.0 - p)
            ok = ok & (eps_i > 0)
        return value, ok

    def update(self, key, cstate: ProgramsState, plan, levels, rollout, student, schedule=None):
        deps, n, p = self.deps, self.deps.num_envs, self.num_programs
        is_program = plan.group != GROUNDING
        owner_mask = (jnp.asarray(self.owner())[:, None] == jnp.arange(p)[None, :]) & is_program[
            :, None
        ]
        owner_mask = owner_mask.astype(jnp.float32)
        value, ok = self.level_values(rollout, owner_mask)
        descriptors = jax.vmap(self.space.describe)(levels)
        metrics = jax.vmap(lambda lv: deps.family.level_metrics(deps.env, lv))(levels)
        solvable = metrics.get("solvable", jnp.ones((n,), jnp.float32)).astype(jnp.float32)
        used = owner_mask * ok[:, None]
        evidence = used.sum(0)
        levels_per = jnp.maximum(owner_mask.sum(0), 1.0)
        per = arc.Candidates(
            programs=cstate.batch_programs,
            lp=(used * value[:, None]).sum(0) / jnp.maximum(evidence, 1.0),
            lp_sq=(used * (value * value)[:, None]).sum(0) / jnp.maximum(evidence, 1.0),
            evidence=evidence.astype(jnp.int32),
            descriptor=(owner_mask.T @ descriptors) / levels_per[:, None],
            solvable=(owner_mask.T @ solvable) / levels_per,
            levels=jax.tree.map(lambda x: x[:p], levels),  # env j < P plays program j
        )
        probe_key, absorb_key = jax.random.split(key)
        success = self.probe(probe_key, cstate, student, schedule)
        cstate, info = self.absorb(cstate, per, success, absorb_key, schedule)
        out = step_metrics(self, cstate, per, info, value, ok, plan.group)
        return cstate, out

    def probe(self, key, cstate: ProgramsState, student, schedule=None) -> chex.Array:
        """() float32 the student's success rate on the probe set, every ``probe_every``
        updates (NaN between, and with the ``fitness`` signal): the mean over the probe
        levels of the fraction of finished episodes solved (a level with none counts 0).
        With a ``schedule`` (``ued.core.schedule``) the due updates are read from its unbatched
        count, so with vmapped seeds the probe rollout stays a real branch."""
        if not self.probing:
            return jnp.float32(jnp.nan)
        count = cstate.count if schedule is None else schedule.update  # the same value
        return self.learning_probe.measure(key, cstate.probe_levels, count, student.params)

    def absorb(
        self,
        cstate: ProgramsState,
        per: arc.Candidates,
        probe_success=None,
        key=None,
        schedule=None,
    ):
        """Folds one step's per-program results (``Candidates``, leading axis P, ordered as
        ``cstate.batch_*``) into the archive, then the specification (its surrogate, the
        plateau signal with this update's ``probe_success``, NaN for none, and a widening; a
        new probe set is drawn only on a widening, for every seed when some seed widens).
        Returns the state (count advanced) and a dict of what happened: ``inserted`` (P,)
        bool (which new programs entered the archive), ``widened`` () bool and the
        surrogate's prediction for this step's programs (made before it saw them)."""
        o, spec = self.options, self.spec
        if probe_success is None:
            probe_success = jnp.float32(jnp.nan)
        key = jax.random.key(0) if key is None else key
        elites = o.insertion == "elites"
        archive = arc.refresh(
            cstate.archive, cstate.batch_slots, per, o.lp_ema, cstate.count, not elites
        )
        cstate = cstate.replace(archive=archive)
        fit, cell, _ = self.estimates.archive_view(cstate)
        new = cstate.batch_slots < 0
        viol = self.estimates.violation(per.descriptor, per.solvable)
        feasible = new & ((viol <= 0) | (o.constraint_mode == "penalty"))
        new_fit = per.lp + o.spread_weight * arc.spread(per.lp, per.lp_sq)
        new_fit = new_fit - jnp.where(viol > 0, o.constraint_penalty * viol, 0.0)
        new_cell = arc.cells(
            self.space.normalise_descriptors(per.descriptor), o.grid_resolution, self.grid
        )
        if elites:
            archive, inserted = arc.insert_elites(
                archive, per, new_fit, feasible, fit, new_cell, cstate.count
            )
        else:
            archive, inserted = arc.insert(
                archive, per, new_fit, feasible, fit, cell, new_cell, self.estimates.num_cells,
                o.grid_weight, cstate.count,
            )  # fmt: skip
        cstate = cstate.replace(archive=archive)
        fit, _, _ = self.estimates.archive_view(cstate)
        has = per.evidence > 0
        info = {"inserted": inserted}
        if spec.mode == "model":
            mean, std = spec.surrogate.predict(cstate.spec.surrogate, per.programs)
            info["predicted"] = (mean, std, spec.surrogate.noise(cstate.spec.surrogate))
        spec_state, widened = spec.update(
            key, cstate.spec, per.programs, per.lp, has, fit.max(), probe_success, cstate.count
        )
        probe_levels = cstate.probe_levels
        if self.probing:
            cond = jax.lax.cond if schedule is None else schedule.cond
            probe_levels = cond(
                widened,
                lambda old: self.learning_probe.draw(key, spec_state.low, spec_state.high),
                lambda old: old,
                probe_levels,
            )
        info.update(widened=widened, probe_success=probe_success)
        cstate = cstate.replace(spec=spec_state, probe_levels=probe_levels, count=cstate.count + 1)
        return cstate, info

    # --- host side: galleries and views -----------------------------------------------------
    def current_bounds(self, cstate: ProgramsState) -> dict[str, list[float]]:
        """``{dim name: [low, high]}``: the specification's current bounds (host side; with
        ``spec: model`` they are not any stage of the ladder)."""
        low, high = np.asarray(cstate.spec.low), np.asarray(cstate.spec.high)
        return {n: [float(low[i]), float(high[i])] for i, n in enumerate(self.space.names)}

    def level_view(self, cstate: ProgramsState) -> LevelView:
        return program_view.archive_view(self, cstate)

    def taken_levels(self, cstate: ProgramsState) -> LevelView:
        return program_view.grounding_view(cstate)

    @functools.cached_property
    def compiled_view(self):
        """Compiled once per curriculum (a frozen dataclass keeps it in its ``__dict__``)."""
        return program_view.compile_view(self)


def _support(options: ProgramsOptions) -> Support:
    return Support("programs")


@register("programs", ProgramsOptions, support=_support)
def make_programs(options: ProgramsOptions, deps: Deps) -> ProgramCurriculum:
    return ProgramCurriculum(deps, options, **check_options(options, deps))
