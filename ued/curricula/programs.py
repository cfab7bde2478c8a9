"""A curriculum over generator programs: searched by learning potential, kept diverse,
grounded by constraints and given levels, widened when learning plateaus.

The family's program space (``Family.programs``, see ``envs.programs``) turns a program
vector into levels. Each step splits the env batch among P = ``archive_programs`` +
``new_programs`` programs (env i plays a level of program ``i % P``) and a grounding share:

- ``archive``: programs drawn from the archive by rank-prioritised fitness plus novelty,
  mixed with staleness (PLR's sampler, ``ued.program_archive.selection_weights``), without
  replacement; fresh programs stand in while the archive holds too few;
- ``mutated`` / ``fresh``: new programs, each a mutation of an archive program (chance
  ``mutate_prob``) or a fresh sample of the current widening stage;
- ``grounding``: ``round(grounding_fraction * num_envs)`` envs play levels of the grounding
  set (a level file, plus levels sent in with ``add_levels``); while it is empty they play
  program levels.

After the rollout every level gets a learning-potential value: the configured ``score``
(per level, e.g. positive value loss) plus ``learnability`` x p (1 - p), p being the success
rate pooled over all episodes of its program's levels (a program solved half the time is the
most learnable). A program's value this step is the mean over its levels (and the mean
square, for the spread); archive programs fold it into their moving averages, new programs
compete for a slot by MAP-Elites on the descriptor grid (``ued.program_archive.insert``).
Constraints (``min_solvable``, ``descriptor_bounds``) filter candidates or penalise fitness.
When the best fitness has not improved for ``plateau_window`` updates, the space widens to
its next stage (``events/widen`` is 1 on that update, and the run logs it to ``events.jsonl``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ued import program_archive as arc
from ued import scoring
from ued.curricula import register
from ued.curricula.base import Deps, Plan
from ued.curricula.program_options import ProgramsOptions, check_options

ARCHIVE, FRESH, MUTATED, GROUNDING = range(4)
GROUPS = ("archive", "fresh", "mutated", "grounding")


@struct.dataclass
class ProgramsState:
    archive: arc.Archive
    grounding: Any  # leaves (G, ...) levels of the grounding set
    grounding_filled: chex.Array  # (G,) bool
    grounding_next: chex.Array  # () int32 ring position of the next added level
    batch_programs: chex.Array  # (P, D) float32 this step's programs
    batch_slots: chex.Array  # (P,) int32 their archive slots, -1 for new ones
    batch_kind: chex.Array  # (P,) int32 ARCHIVE, FRESH or MUTATED
    stage: chex.Array  # () int32 widening stage of the program space
    record: chex.Array  # () float32 best fitness when it last improved
    since: chex.Array  # () int32 updates since the record last improved
    widen_events: chex.Array  # () int32 widenings so far
    last_widen: chex.Array  # () int32 update of the last widening, -1 for none
    count: chex.Array  # () int32 updates done


@dataclasses.dataclass(frozen=True)
class ProgramCurriculum:
    """Built by ``make_programs``; see the module docstring."""

    deps: Deps
    options: ProgramsOptions
    space: Any  # envs.programs.ProgramSpace
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
    def num_cells(self) -> int:
        return self.options.grid_resolution ** len(self.grid)

    def owner(self) -> np.ndarray:
        return np.arange(self.deps.num_envs) % self.num_programs

    # --- state ----------------------------------------------------------------------------
    def init(self, key) -> ProgramsState:
        deps, o, space = self.deps, self.options, self.space
        example = deps.family.example_level(deps.env)
        g = o.grounding_capacity
        grounding = jax.tree.map(lambda x: jnp.broadcast_to(x, (g, *jnp.shape(x))), example)
        filled = jnp.zeros((g,), bool)
        given = 0  # levels from the grounding file (static)
        if self.grounding_levels is not None:
            given = jax.tree.leaves(self.grounding_levels)[0].shape[0]
            grounding = jax.tree.map(
                lambda x, v: x.at[:given].set(jnp.asarray(v, x.dtype)),
                grounding,
                self.grounding_levels,
            )
            filled = filled.at[:given].set(True)
        p = self.num_programs
        return ProgramsState(
            archive=arc.init(example, o.capacity, space.num_dims, len(space.descriptor_names)),
            grounding=grounding,
            grounding_filled=filled,
            grounding_next=jnp.asarray(given % max(g, 1), jnp.int32),
            batch_programs=jnp.zeros((p, space.num_dims), jnp.float32),
            batch_slots=jnp.full((p,), -1, jnp.int32),
            batch_kind=jnp.full((p,), FRESH, jnp.int32),
            stage=jnp.asarray(min(o.start_stage, space.num_stages - 1), jnp.int32),
            record=jnp.asarray(-jnp.inf, jnp.float32),
            since=jnp.zeros((), jnp.int32),
            widen_events=jnp.zeros((), jnp.int32),
            last_widen=jnp.asarray(-1, jnp.int32),
            count=jnp.zeros((), jnp.int32),
        )

    def add_levels(self, cstate: ProgramsState, levels, key) -> ProgramsState:
        """Appends the valid ones of ``levels`` (leaves (B, ...)) to the grounding set, a ring
        of fixed capacity (the oldest are overwritten). Jittable; ``key`` is unused (the
        ring's order is deterministic) and kept for the shared signature."""
        del key
        g = self.options.grounding_capacity
        if g == 0:
            return cstate
        env, family = self.deps.env, self.deps.family
        valid = jax.vmap(lambda lv: family.is_valid(env, lv))(levels)
        before = jnp.cumsum(valid) - valid  # valid levels ahead of each one
        total = valid.sum()
        keep = valid & (total - before <= g)  # only the last g valid levels
        skipped = jnp.maximum(total - g, 0)
        pos = (cstate.grounding_next + before - skipped) % g
        target = jnp.where(keep, pos, g)
        put = lambda x, v: x.at[target].set(v.astype(x.dtype), mode="drop")  # noqa: E731
        return cstate.replace(
            grounding=jax.tree.map(put, cstate.grounding, levels),
            grounding_filled=put(cstate.grounding_filled, keep),
            grounding_next=((cstate.grounding_next + keep.sum()) % g).astype(jnp.int32),
        )

    # --- estimates ------------------------------------------------------------------------
    def violation(self, descriptor: chex.Array, solvable: chex.Array) -> chex.Array:
        """(...,) constraint violation >= 0: solvable shortfall plus descriptor excess as
        fractions of the descriptor ranges."""
        o, space = self.options, self.space
        span = jnp.maximum(
            jnp.asarray(space.descriptor_high) - jnp.asarray(space.descriptor_low), 1e-9
        )
        lo, hi = jnp.asarray(self.bounds[:, 0]), jnp.asarray(self.bounds[:, 1])
        excess = (jnp.maximum(lo - descriptor, 0) + jnp.maximum(descriptor - hi, 0)) / span
        return jnp.maximum(o.min_solvable - solvable, 0.0) + excess.sum(-1)

    def fitness_params(self) -> arc.FitnessParams:
        o = self.options
        penalty = jnp.inf if o.constraint_mode == "filter" else o.constraint_penalty
        return arc.FitnessParams(o.age_decay, o.spread_weight, penalty)

    def archive_view(self, cstate: ProgramsState):
        """``(fitness, cell, normalised descriptors)`` of every archive slot."""
        a = cstate.archive
        viol = self.violation(a.descriptor, a.solvable)
        fit = arc.fitness(a, viol, cstate.count, self.fitness_params())
        norm = self.space.normalise_descriptors(a.descriptor)
        return fit, arc.cells(norm, self.options.grid_resolution, self.grid), norm

    def weights(self, cstate: ProgramsState) -> chex.Array:
        o = self.options
        fit, _, norm = self.archive_view(cstate)
        nov = arc.novelty(norm, cstate.archive.filled)
        return arc.selection_weights(
            cstate.archive, fit, nov, cstate.count, o.temperature, o.staleness_coef,
            o.novelty_weight,
        )  # fmt: skip

    # --- propose --------------------------------------------------------------------------
    def propose(self, key, cstate: ProgramsState, student):
        o, space = self.options, self.space
        k, f, p, n = o.archive_programs, o.new_programs, self.num_programs, self.deps.num_envs
        keys = jax.random.split(key, 7)
        w = self.weights(cstate)
        logw = jnp.where(w > 0, jnp.log(jnp.where(w > 0, w, 1.0)), -jnp.inf)
        # Sampling without replacement: the top k of log w + Gumbel noise.
        gumbel = jax.random.gumbel(keys[0], w.shape)
        top = min(k, w.shape[0])
        picks = jax.lax.top_k(logw + gumbel, top)[1] if top else jnp.zeros((0,), jnp.int32)
        picks = jnp.concatenate([picks.astype(jnp.int32), jnp.zeros((k - top,), jnp.int32)])
        valid = (w[picks] > 0) & (jnp.arange(k) < w.shape[0])
        fresh = jax.vmap(lambda kk: space.sample_program(kk, cstate.stage))(
            jax.random.split(keys[1], p)
        )
        parents = jax.random.categorical(keys[2], logw, shape=(f,))
        mutated = jax.vmap(lambda kk, x: space.mutate(kk, x, cstate.stage, o.mutation_scale))(
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
        plan = Plan(
            train_mask=jnp.ones((n,), bool),
            group=group.astype(jnp.int32),
            buffer_idx=jnp.where(is_ground, -1, slots[owner]).astype(jnp.int32),
        )
        cstate = cstate.replace(batch_programs=programs, batch_slots=slots, batch_kind=kind)
        return cstate, levels, plan

    def _ground(self, key, cstate: ProgramsState, levels):
        """The last ``grounding_envs`` envs play grounding levels (while there are any)."""
        n, g = self.deps.num_envs, self.grounding_envs
        filled = cstate.grounding_filled
        logits = jnp.where(filled, 0.0, -jnp.inf)
        idx = jax.random.categorical(key, jnp.where(filled.any(), logits, 0.0), shape=(g,))
        chosen = jax.tree.map(lambda x: x[idx], cstate.grounding)
        is_ground = (jnp.arange(n) >= n - g) & filled.any()

        def mix(x, v):
            full = jnp.concatenate([x[: n - g], v.astype(x.dtype)])
            mask = is_ground.reshape((n,) + (1,) * (x.ndim - 1))
            return jnp.where(mask, full, x)

        return jax.tree.map(mix, levels, chosen), is_ground

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

    def update(self, key, cstate: ProgramsState, plan, levels, rollout, student):
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
        cstate, inserted = self.absorb(cstate, per)
        out = self._metrics(cstate, per, inserted, value, ok, plan.group)
        return cstate, out

    def absorb(self, cstate: ProgramsState, per: arc.Candidates):
        """Folds one step's per-program results (``Candidates``, leading axis P, ordered as
        ``cstate.batch_*``) into the archive, then applies the widening rule. Returns the
        state (count advanced) and (P,) bool: which new programs entered the archive."""
        o = self.options
        archive = arc.refresh(cstate.archive, cstate.batch_slots, per, o.lp_ema, cstate.count)
        cstate = cstate.replace(archive=archive)
        fit, cell, _ = self.archive_view(cstate)
        new = cstate.batch_slots < 0
        viol = self.violation(per.descriptor, per.solvable)
        feasible = new & ((viol <= 0) | (o.constraint_mode == "penalty"))
        new_fit = per.lp + o.spread_weight * arc.spread(per.lp, per.lp_sq)
        new_fit = new_fit - jnp.where(viol > 0, o.constraint_penalty * viol, 0.0)
        new_cell = arc.cells(
            self.space.normalise_descriptors(per.descriptor), o.grid_resolution, self.grid
        )
        archive, inserted = arc.insert(
            archive, per, new_fit, feasible, fit, cell, new_cell, self.num_cells,
            o.grid_weight, cstate.count,
        )  # fmt: skip
        cstate = cstate.replace(archive=archive)
        fit, _, _ = self.archive_view(cstate)
        record, since, stage, widened = arc.plateau(
            cstate.record, cstate.since, cstate.stage, fit.max(), o.plateau_window,
            self.space.num_stages, o.min_improvement,
        )  # fmt: skip
        cstate = cstate.replace(
            record=record,
            since=since,
            stage=stage,
            widen_events=cstate.widen_events + widened,
            last_widen=jnp.where(widened, cstate.count, cstate.last_widen),
            count=cstate.count + 1,
        )
        return cstate, inserted

    def _metrics(self, cstate: ProgramsState, per, inserted, value, ok, group):
        a = cstate.archive
        filled = a.filled.astype(jnp.float32)
        size = jnp.maximum(filled.sum(), 1.0)
        nan = jnp.float32(jnp.nan)
        fit, cell, _ = self.archive_view(cstate)
        finite = a.filled & jnp.isfinite(fit)

        def mean(x):
            return jnp.where(a.filled.any(), (x * filled).sum() / size, nan)

        def std(x):
            m = mean(x)
            return jnp.sqrt(jnp.maximum(mean(x * x) - m * m, 0.0))

        def group_mean(g):
            m = (group == g) & ok
            return jnp.where(m.any(), (value * m).sum() / jnp.maximum(m.sum(), 1), nan)

        occ = arc.occupancy(cell, a.filled, self.num_cells)
        out = {
            "programs/size": filled.sum(),
            "programs/coverage": (occ > 0).mean(dtype=jnp.float32),
            "programs/best_lp": jnp.where(
                finite.any(), jnp.where(finite, fit, -jnp.inf).max(), nan
            ),
            "programs/mean_lp": mean(a.lp),
            "programs/lp_spread": mean(arc.spread(a.lp, a.lp_sq)),
            "programs/solvable": mean(a.solvable),
            "programs/inserted": inserted.sum().astype(jnp.float32),
            "programs/stage": cstate.stage.astype(jnp.float32),
            "programs/widen_events": cstate.widen_events.astype(jnp.float32),
            "events/widen": (cstate.last_widen == cstate.count - 1).astype(jnp.float32),
            "programs/since_improve": cstate.since.astype(jnp.float32),
            "programs/grounding_size": cstate.grounding_filled.sum().astype(jnp.float32),
            **{f"programs/lp_{name}": group_mean(i) for i, name in enumerate(GROUPS)},
        }
        for i, name in enumerate(self.space.names):
            out[f"programs/{name}_mean"] = mean(a.programs[:, i])
            out[f"programs/{name}_std"] = std(a.programs[:, i])
        for i, name in enumerate(self.space.descriptor_names):
            out[f"programs/desc_{name}_mean"] = mean(a.descriptor[:, i])
        return out

    # --- host side: galleries -------------------------------------------------------------
    def gallery_entries(self, cstate: ProgramsState) -> list[tuple[int, str]]:
        """``(slot, caption)`` of the fittest program of every occupied grid cell, best
        first (host side; ``cstate`` as host arrays)."""
        fit, cell, _ = jax.device_get(jax.jit(self.archive_view)(cstate))
        filled = np.asarray(cstate.archive.filled)
        best: dict[int, int] = {}
        for slot in np.flatnonzero(filled):
            c = int(cell[slot])
            if c not in best or fit[slot] > fit[best[c]]:
                best[c] = int(slot)
        r = self.options.grid_resolution
        entries = []
        for c, slot in sorted(best.items(), key=lambda kv: -fit[kv[1]]):
            coords = ",".join(str((c // r**i) % r) for i in reversed(range(len(self.grid))))
            entries.append((slot, f"({coords}) {fit[slot]:.3f}"))
        return entries


@register("programs", ProgramsOptions)
def make_programs(options: ProgramsOptions, deps: Deps) -> ProgramCurriculum:
    return ProgramCurriculum(deps, options, **check_options(options, deps))
