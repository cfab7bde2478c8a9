"""Prioritised Level Replay and its descendants, composed from parts.

The parts, each passed in rather than switched on by a flag:

- **schedule**, how a step's levels are proposed: ``Sequential`` (each step is one kind:
  new levels from the generator, replayed buffer levels, or, with an editor, edits of the
  levels replayed last) or ``Parallel`` (every step splits its envs into fixed groups of
  new, replayed and edited levels and rolls them out together: PLR||, ACCEL||).
- **trained**, which groups the student takes gradients on: PLR trains on new and replayed
  levels; Robust PLR (PLR-perp) and ACCEL only on replayed ones (Jiang et al. 2021b).
- **editor**, ``None`` or a ``(key, level, n) -> level`` that edits replayed levels
  (ACCEL, Parker-Holder et al. 2022); edited levels are scored and inserted.

Registered compositions: ``plr``, ``robust_plr``, ``accel`` (sequential) and
``plr_parallel``, ``robust_plr_parallel``, ``accel_parallel``.

``compose`` builds the levels' parts and the buffer's bookkeeping (``plr_parts.PLRParts``)
and hands them to the schedule with the state; the schedule never calls back into ``PLR``.
The buffer's hyper-parameters are held once, in the state (``PLRState.params``, which a
sweep can vmap); ``PLR`` keeps only the options it started them from.

With seeds (``run.num_seeds``), the sequential schedule's replay-or-new coin is drawn from
the schedule key that every seed shares (``ued.core.schedule``), so the seeds replay on the same
updates; see ``ued.curricula.plr_schedules`` for which decisions are shared.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from envs.editing import menu, repeat
from ued.config.options import ConfigError, call_with_options, option
from ued.core import buffer as buf_lib
from ued.core import scoring
from ued.core.level_sets import stack_like
from ued.curricula import register
from ued.curricula.base import (
    Deps,
    LevelView,
    ShowsLevels,
    Support,
    TakesLevels,
    generator_support,
)
from ued.curricula.plr_parts import EDIT, NEW, REPLAY, PLRParts, PLRState
from ued.curricula.plr_schedules import Parallel, Sequential


def _editors_ok(entries) -> bool:
    def ok(value):
        if isinstance(value, dict):
            value = value.get("weight", 1.0)
        return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0

    return all(ok(v) for v in entries.values())


@dataclasses.dataclass(frozen=True)
class PLROptions:
    # Literature defaults (Jiang et al. 2021, dcd's train.py): buffer 4000, rank
    # prioritisation, temperature 0.3, staleness 0.3, replay probability 0.5; MaxMC averaged
    # per finished episode (JaxUED examples/maze_plr.py, score_function MaxMC).
    score: dict = option(
        {"max_mc_per_episode": 1.0},
        check=scoring.weights_ok,
        allowed=scoring.WEIGHTS_ALLOWED,
    )
    buffer: buf_lib.BufferParams = option(factory=buf_lib.BufferParams)
    # Seed the search with the generator's levels, or with empty rooms (ACCEL's paper).
    start_from: str = option("generator", choices=("generator", "empty"))


@dataclasses.dataclass(frozen=True)
class ACCELOptions(PLROptions):
    # Editor name -> weight, or -> {weight: w, <the editor's own options>}; empty means every
    # editor of the family with weight 1.
    editors: dict = option(
        {},
        check=_editors_ok,
        allowed="a mapping of editor names to weights >= 0 or to {weight, options...}",
    )
    num_edits: int = option(5, ge=0)  # edits applied to each replayed level


@dataclasses.dataclass(frozen=True)
class PLR(TakesLevels, ShowsLevels):
    """A PLR-type curriculum; see the module docstring for its parts."""

    deps: Deps
    options: PLROptions  # or ACCELOptions; the buffer's hyper-parameters live in the state
    schedule: Any  # Sequential or Parallel
    parts: PLRParts  # new and edited levels, the trained groups, the buffer's bookkeeping
    score_fn: Any  # ScoreInputs -> (N,)
    uses_novelty: bool

    @property
    def groups(self) -> tuple[str, ...]:
        return ("new", "replay", "edit") if self.parts.editing else ("new", "replay")

    # --- the interface ------------------------------------------------------------------
    def init(self, key) -> PLRState:
        deps = self.deps
        example = deps.family.example_level(deps.env)
        # Checked when the curriculum was built (compose); the state holds them from here.
        params = buf_lib.as_arrays(self.options.buffer)
        capacity = params.capacity
        metrics = jax.eval_shape(lambda lv: deps.family.level_metrics(deps.env, lv), example)
        r = self.schedule.replay_count(self.parts)
        return PLRState(
            buffer=buf_lib.init(example, capacity),
            params=params,
            level_stats={k: jnp.zeros((capacity,), jnp.float32) for k in metrics},
            last_replayed=stack_like(example, r),
            last_idx=jnp.full((r,), -1, jnp.int32),
            edit_next=jnp.zeros((), bool),
            env_slots=jnp.full((deps.num_envs,), -1, jnp.int32),
        )

    def propose(self, key, cstate: PLRState, student, schedule=None):
        return self.schedule.propose(self.parts, key, cstate, schedule)

    def update(self, key, cstate: PLRState, plan, levels, rollout, student, schedule=None):
        best = self.best_return(cstate.buffer, cstate.env_slots, rollout)
        scores = self.score_fn(self._score_inputs(cstate.buffer, levels, rollout, best))
        cstate = self.schedule.update(self.parts, cstate, plan, levels, scores, best, schedule)
        return cstate, self._metrics(cstate, scores)

    def add_levels(self, cstate: PLRState, levels, key) -> PLRState:
        """Inserts levels sent from outside (a stacked batch) into the buffer.

        Each gets a score just above the buffer's highest (0 when the buffer holds no finite
        score): with rank prioritisation it ranks first, so it is replayed soon, and it
        always wins a slot (the lowest-weight level is evicted). Its first replay measures
        its real score, which replaces this one. A level already in the buffer only has its
        score raised. ``key`` is unused: insertion is deterministic.
        """
        del key
        buffer = cstate.buffer
        finite = buffer.filled & jnp.isfinite(buffer.scores)
        top = jnp.where(finite.any(), jnp.where(finite, buffer.scores, -jnp.inf).max(), 0.0)
        n = jax.tree.leaves(levels)[0].shape[0]
        scores = jnp.full((n,), jnp.nextafter(top, jnp.inf), jnp.float32)
        extras = buf_lib.default_extras(n)
        return self.parts.insert(cstate, levels, scores, extras)

    def level_view(self, cstate: PLRState) -> LevelView:
        """The buffer: levels by score, with staleness, edits and best return."""
        buffer = jax.device_get(cstate.buffer)
        columns = {
            "score": buffer.scores,
            "staleness": np.asarray(buffer.clock - buffer.last_sampled),
            "num_edits": buffer.extras.num_edits,
            "best_return": buffer.extras.best_return,
        }
        return LevelView("buffer", buffer.levels, buffer.filled, buffer.scores, columns)

    def taken_levels(self, cstate: PLRState) -> LevelView:
        return self.level_view(cstate)

    # --- scoring ------------------------------------------------------------------------
    @staticmethod
    def best_return(buffer, idx, rollout):
        """Best return seen per level: the buffer's record for replayed levels, and this
        rollout's episodes."""
        known = jnp.where(idx >= 0, buffer.extras.best_return[jnp.maximum(idx, 0)], -jnp.inf)
        return scoring.best_return_update(known, rollout)

    def _score_inputs(self, buffer, levels, rollout, best):
        if not self.uses_novelty:
            return scoring.make_score_inputs(rollout, best)
        return scoring.make_score_inputs(
            rollout,
            best,
            buf_lib.level_encoding(levels),
            buf_lib.level_encoding(buffer.levels),
            buffer.filled,
        )

    def _metrics(self, cstate: PLRState, scores):
        buffer = cstate.buffer
        filled = buffer.filled
        count = jnp.maximum(filled.sum(), 1)
        finite = filled & jnp.isfinite(buffer.scores)
        out = {
            "curriculum/score_mean": jnp.nanmean(jnp.where(jnp.isfinite(scores), scores, jnp.nan)),
            "buffer/size": buffer.size.astype(jnp.float32),
            "buffer/fill": buffer.size / buffer.capacity,
            "buffer/score_mean": jnp.where(finite, buffer.scores, 0.0).sum()
            / jnp.maximum(finite.sum(), 1),
            "buffer/score_max": jnp.where(finite, buffer.scores, -jnp.inf).max(),
            "buffer/num_edits": (buffer.extras.num_edits * filled).sum() / count,
        }
        for k, v in cstate.level_stats.items():
            out[f"buffer/{k}"] = (v * filled).sum() / count
        return out


# --- building ---------------------------------------------------------------------------------


def editor_menu(options: ACCELOptions, deps: Deps):
    """The family's editors weighted by ``options.editors`` (all, weight 1, if empty); an
    entry may be a weight or ``{weight: w, <editor options>}``."""
    family, where = deps.family, "curriculum.options.editors"
    entries = dict(options.editors) or {name: 1.0 for name in family.editors}
    unknown = sorted(set(entries) - set(family.editors))
    if unknown:
        raise ConfigError(
            f"{where}.{unknown[0]} is not an editor of family {family.name!r}; "
            f"allowed: {sorted(family.editors)}"
        )
    built = {}
    for name, entry in entries.items():
        kwargs = dict(entry) if isinstance(entry, dict) else {"weight": entry}
        weight = float(kwargs.pop("weight", 1.0))
        edit = call_with_options(family.editors[name], kwargs, f"{where}.{name}", deps.env)
        built[name] = (edit, weight)
    return menu(built)


def _new_levels(options: PLROptions, deps: Deps):
    if options.start_from == "generator":
        return deps.generator
    if "empty_room" not in deps.family.generators:
        raise ConfigError(
            "curriculum.options.start_from=empty needs an 'empty_room' generator; family "
            f"{deps.family.name!r} has {sorted(deps.family.generators)}"
        )
    return deps.family.generators["empty_room"](deps.env)


def compose(options: PLROptions, deps: Deps, schedule, trained, editing: bool) -> PLR:
    """A PLR-type curriculum from its parts (see the module docstring)."""
    try:
        score_fn = scoring.make_score(options.score)
        buf_lib.make_buffer_params(**dataclasses.asdict(options.buffer))  # checks the values
    except ValueError as err:
        raise ConfigError(f"curriculum.options: {err}") from err
    schedule.check(deps.num_envs, editing)
    parts = PLRParts(
        num_envs=deps.num_envs,
        new_levels=_new_levels(options, deps),
        edit_n=repeat(editor_menu(options, deps), options.num_edits) if editing else None,
        num_edits=options.num_edits if editing else 0,
        trained=tuple(trained),
        level_metrics=lambda level: deps.family.level_metrics(deps.env, level),
    )
    return PLR(deps, options, schedule, parts, score_fn, uses_novelty="novelty" in options.score)


ALL_LEVELS, REPLAYED_ONLY = (NEW, REPLAY), (REPLAY,)


def edits_support(options: ACCELOptions) -> Support:
    """The start levels and what the configured editors reach from them."""
    start = "empty_room" if options.start_from == "empty" else None
    return Support("edits", start=start, editors=tuple(options.editors))


@register("plr", PLROptions, support=generator_support)
def make_plr(options: PLROptions, deps: Deps) -> PLR:
    return compose(options, deps, Sequential(), ALL_LEVELS, editing=False)


@register("robust_plr", PLROptions, support=generator_support)
def make_robust_plr(options: PLROptions, deps: Deps) -> PLR:
    return compose(options, deps, Sequential(), REPLAYED_ONLY, editing=False)


@register("accel", ACCELOptions, support=edits_support)
def make_accel(options: ACCELOptions, deps: Deps) -> PLR:
    return compose(options, deps, Sequential(), REPLAYED_ONLY, editing=True)


@register("plr_parallel", PLROptions, support=generator_support)
def make_plr_parallel(options: PLROptions, deps: Deps) -> PLR:
    return compose(options, deps, Parallel(), ALL_LEVELS, editing=False)


@register("robust_plr_parallel", PLROptions, support=generator_support)
def make_robust_plr_parallel(options: PLROptions, deps: Deps) -> PLR:
    return compose(options, deps, Parallel(), REPLAYED_ONLY, editing=False)


@register("accel_parallel", ACCELOptions, support=edits_support)
def make_accel_parallel(options: ACCELOptions, deps: Deps) -> PLR:
    return compose(options, deps, Parallel(), REPLAYED_ONLY, editing=True)


__all__ = ["EDIT", "NEW", "REPLAY", "ACCELOptions", "PLR", "PLROptions", "PLRState", "compose"]
