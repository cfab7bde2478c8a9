"""Prioritised Level Replay and its descendants, as one set of parts.

- PLR: each step either samples fresh levels from the generator or replays buffer levels;
  the student trains on both.
- Robust PLR (PLR⊥): the same, but fresh levels are only rolled out and scored (no gradient).
- ACCEL: Robust PLR whose step after a replay step edits the levels just replayed (k edits
  from the family's editor menu); edited levels are scored and inserted, not trained on.
- Parallel variants (PLR‖, ACCEL‖): one step splits its envs into fixed groups of new,
  replayed (and edited) levels and rolls all of them out together.

The branch (new / replay / edit) is a scalar chosen outside any env vmap; ``lax.switch``
then builds only that branch's levels.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from envs.editing import menu, repeat
from ued import buffer as buf_lib
from ued import scoring
from ued.config import ConfigError
from ued.curricula.base import Context, Plan

NEW, REPLAY, EDIT = 0, 1, 2


@struct.dataclass
class PLRState:
    buffer: buf_lib.LevelBuffer
    params: buf_lib.BufferParams
    level_stats: dict  # name -> (C,) float32 level metrics of each buffer slot
    last_replayed: Any  # levels (leaves (R, ...)) of the last replay, the edit branch's parents
    last_idx: Any  # (R,) int32 their buffer slots
    edit_next: Any  # () bool, ACCEL: the previous step replayed, so this one edits


@dataclasses.dataclass(frozen=True)
class PLR:
    """Built by ``make_plr`` / ``make_robust_plr`` / ``make_accel``."""

    ctx: Context
    robust: bool  # no gradient on fresh (or edited) levels
    accel: bool  # edit the replayed levels on the step after a replay
    score_fn: Any  # ScoreInputs -> (N,)
    buffer_params: buf_lib.BufferParams
    new_levels: Any  # key -> level, the generator of fresh levels
    edit_n: Any  # (key, level, n) -> level; None without editing

    @property
    def cfg(self):
        return self.ctx.cfg.curriculum

    @property
    def parallel(self) -> bool:
        return self.cfg.parallel

    @property
    def groups(self) -> tuple[int, int, int]:
        """Env counts (new, replay, edit) per step of the parallel variant."""
        n = self.ctx.num_envs
        share = n // 3 if self.accel else n // 2
        edit = share if self.accel else 0
        return (n - share - edit, share, edit)  # the remainder goes to the new group

    @property
    def replay_count(self) -> int:
        return self.groups[1] if self.parallel else self.ctx.num_envs

    # --- the interface ------------------------------------------------------------------
    def init(self, key) -> PLRState:
        example = self.ctx.family.example_level(self.ctx.env)
        capacity = self.cfg.buffer.capacity
        metrics = jax.eval_shape(
            lambda lv: self.ctx.family.level_metrics(self.ctx.env, lv), example
        )
        r = self.replay_count
        return PLRState(
            buffer=buf_lib.init(example, capacity),
            params=self.buffer_params,
            level_stats={k: jnp.zeros((capacity,), jnp.float32) for k in metrics},
            last_replayed=jax.tree.map(lambda x: jnp.broadcast_to(x, (r, *jnp.shape(x))), example),
            last_idx=jnp.full((r,), -1, jnp.int32),
            edit_next=jnp.zeros((), bool),
        )

    def propose(self, key, cstate: PLRState, student):
        if self.parallel:
            return self._propose_parallel(key, cstate)
        n = self.ctx.num_envs
        decide_key, key = jax.random.split(key)
        replay = buf_lib.should_replay(cstate.buffer, cstate.params, decide_key)
        branch = jnp.where(replay, REPLAY, NEW).astype(jnp.int32)
        if self.accel:
            branch = jnp.where(cstate.edit_next, EDIT, branch)
        none = jnp.full((n,), -1, jnp.int32)

        def new(key, buffer):
            return buffer, self._generate(key, n), none

        def replayed(key, buffer):
            buffer, idx, levels = buf_lib.sample(buffer, cstate.params, key, n)
            return buffer, levels, idx

        def edited(key, buffer):
            return buffer, self._edit(key, cstate.last_replayed), none

        branches = [new, replayed] + ([edited] if self.accel else [])
        buffer, levels, idx = jax.lax.switch(branch, branches, key, cstate.buffer)
        train = branch == REPLAY if self.robust else branch != EDIT
        plan = Plan(train_mask=jnp.full((n,), train), branch=branch, buffer_idx=idx)
        return cstate.replace(buffer=buffer), levels, plan

    def update(self, key, cstate: PLRState, plan: Plan, levels, rollout, student):
        best = self._best_return(cstate.buffer, plan.buffer_idx, rollout)
        scores = self.score_fn(self._score_inputs(cstate.buffer, levels, rollout, best))
        if self.parallel:
            cstate = self._update_parallel(cstate, plan, levels, scores, best)
        else:
            cstate = self._update_sequential(cstate, plan, levels, scores, best)
        return cstate, self._metrics(cstate, plan, scores)

    # --- parts --------------------------------------------------------------------------
    def _generate(self, key, n):
        return jax.vmap(self.new_levels)(jax.random.split(key, n))

    def _edit(self, key, levels):
        # Every level of the batch is edited, each with its own key.
        n = jax.tree.leaves(levels)[0].shape[0]
        count = jnp.full((n,), self.cfg.num_edits, jnp.int32)
        return jax.vmap(self.edit_n)(jax.random.split(key, n), levels, count)

    @staticmethod
    def _best_return(buffer, idx, rollout):
        """Best return seen per level: the buffer's record for replayed levels, and this
        rollout's episodes."""
        known = jnp.where(idx >= 0, buffer.extras.best_return[jnp.maximum(idx, 0)], -jnp.inf)
        return scoring.best_return_update(known, rollout)

    def _score_inputs(self, buffer, levels, rollout, best):
        if "novelty" not in self.cfg.score:
            return scoring.make_score_inputs(rollout, best)
        return scoring.make_score_inputs(
            rollout,
            best,
            buf_lib.level_encoding(levels),
            buf_lib.level_encoding(buffer.levels),
            buffer.filled,
        )

    def _extras(self, cstate: PLRState, best, edited):
        """Extras of levels to insert; ``edited`` (n,) marks children of ``last_replayed``."""
        n = best.shape[0]
        if edited is None:
            return buf_lib.LevelExtras(
                best_return=best,
                num_edits=jnp.zeros((n,), jnp.int32),
                parent=jnp.full((n,), -1, jnp.int32),
            )
        parents = cstate.last_idx
        parent_edits = cstate.buffer.extras.num_edits[jnp.maximum(parents, 0)]
        return buf_lib.LevelExtras(
            best_return=best,
            num_edits=jnp.where(edited, parent_edits + self.cfg.num_edits, 0).astype(jnp.int32),
            parent=jnp.where(edited, parents, -1).astype(jnp.int32),
        )

    def _insert(self, cstate: PLRState, levels, scores, extras) -> PLRState:
        buffer, slots = buf_lib.insert(cstate.buffer, cstate.params, levels, scores, extras)
        metrics = jax.vmap(lambda lv: self.ctx.family.level_metrics(self.ctx.env, lv))(levels)
        target = jnp.where(slots >= 0, slots, buffer.capacity)
        level_stats = {
            k: v.at[target].set(metrics[k].astype(jnp.float32), mode="drop")
            for k, v in cstate.level_stats.items()
        }
        return cstate.replace(buffer=buffer, level_stats=level_stats)

    def _refresh(self, cstate: PLRState, idx, scores, best) -> PLRState:
        extras = jax.tree.map(lambda x: x[idx], cstate.buffer.extras).replace(best_return=best)
        return cstate.replace(buffer=buf_lib.update(cstate.buffer, idx, scores, extras))

    def _update_sequential(self, cstate, plan, levels, scores, best):
        def on_replay(cstate):
            cstate = self._refresh(cstate, jnp.maximum(plan.buffer_idx, 0), scores, best)
            return cstate.replace(
                last_replayed=levels, last_idx=plan.buffer_idx, edit_next=jnp.asarray(self.accel)
            )

        def on_insert(cstate):
            edited = jnp.full(scores.shape, plan.branch == EDIT)
            cstate = self._insert(cstate, levels, scores, self._extras(cstate, best, edited))
            return cstate.replace(edit_next=jnp.zeros((), bool))

        return jax.lax.cond(plan.branch == REPLAY, on_replay, on_insert, cstate)

    def _propose_parallel(self, key, cstate: PLRState):
        n_new, n_rep, n_edit = self.groups
        decide_key, new_key, rep_key, edit_key = jax.random.split(key, 4)
        always = cstate.params.replace(replay_prob=jnp.float32(1.0))
        ready = buf_lib.should_replay(cstate.buffer, always, decide_key)
        sampled, idx, replayed = buf_lib.sample(cstate.buffer, cstate.params, rep_key, n_rep)
        fresh = self._generate(new_key, self.ctx.num_envs)
        pick = lambda cond, a, b: jax.tree.map(lambda x, y: jnp.where(cond, x, y), a, b)
        # Until the buffer is ready the replay group rolls out fresh levels instead, and
        # until something was replayed the edit group does too.
        parts = [
            jax.tree.map(lambda f: f[:n_new], fresh),
            pick(ready, replayed, jax.tree.map(lambda f: f[n_new : n_new + n_rep], fresh)),
        ]
        if self.accel:
            has_parent = cstate.last_idx >= 0
            edited = self._edit(edit_key, cstate.last_replayed)
            tail = jax.tree.map(lambda f: f[n_new + n_rep :], fresh)
            parts.append(jax.vmap(pick)(has_parent, edited, tail))
        levels = jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)
        group = jnp.repeat(
            jnp.arange(3), jnp.asarray(self.groups), total_repeat_length=self.ctx.num_envs
        )
        buffer_idx = jnp.where(
            group == REPLAY, jnp.pad(jnp.where(ready, idx, -1), (n_new, n_edit)), -1
        )
        train = (group == REPLAY) & ready if self.robust else group != EDIT
        plan = Plan(train_mask=train, branch=ready.astype(jnp.int32), buffer_idx=buffer_idx)
        return cstate.replace(buffer=pick(ready, sampled, cstate.buffer)), levels, plan

    def _update_parallel(self, cstate, plan, levels, scores, best):
        n_new, n_rep, n_edit = self.groups
        ready = plan.branch == 1
        take = lambda tree, start, stop: jax.tree.map(lambda x: x[start:stop], tree)
        rep_idx = plan.buffer_idx[n_new : n_new + n_rep]

        def replay_ready(cstate):
            cstate = self._refresh(
                cstate, rep_idx, scores[n_new : n_new + n_rep], best[n_new : n_new + n_rep]
            )
            extras = self._extras(cstate, best[:n_new], None)
            return self._insert(cstate, take(levels, 0, n_new), scores[:n_new], extras)

        def not_ready(cstate):
            m = n_new + n_rep
            return self._insert(
                cstate, take(levels, 0, m), scores[:m], self._extras(cstate, best[:m], None)
            )

        cstate = jax.lax.cond(ready, replay_ready, not_ready, cstate)
        if self.accel:
            start = n_new + n_rep
            edited = cstate.last_idx >= 0
            extras = self._extras(cstate, best[start:], edited)
            cstate = self._insert(cstate, take(levels, start, None), scores[start:], extras)
            parents = jnp.where(ready, rep_idx, -1)
            cstate = cstate.replace(last_replayed=take(levels, n_new, start), last_idx=parents)
        return cstate

    def _metrics(self, cstate: PLRState, plan: Plan, scores):
        buffer = cstate.buffer
        filled = buffer.filled
        count = jnp.maximum(filled.sum(), 1)
        finite = filled & jnp.isfinite(buffer.scores)
        out = {
            "curriculum/replay": (plan.branch == REPLAY).astype(jnp.float32),
            "curriculum/edit": (plan.branch == EDIT).astype(jnp.float32),
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


def _make(ctx: Context, robust: bool, accel: bool) -> PLR:
    cfg = ctx.cfg.curriculum
    b = cfg.buffer
    try:
        score_fn = scoring.make_score(cfg.score)
        params = buf_lib.make_buffer_params(
            temperature=b.temperature,
            staleness_coef=b.staleness_coef,
            replay_prob=b.replay_prob,
            min_fill_ratio=b.min_fill_ratio,
            top_k=b.top_k,
            prioritisation=b.prioritisation,
            replay_schedule=b.replay_schedule,
            dedup=b.dedup,
        )
    except ValueError as err:
        raise ConfigError(f"curriculum: {err}") from err
    new_levels = ctx.generator
    if cfg.start_from == "empty":
        if "empty_room" not in ctx.family.generators:
            raise ConfigError(
                "curriculum.start_from=empty needs an 'empty_room' generator; family "
                f"{ctx.family.name!r} has {sorted(ctx.family.generators)}"
            )
        new_levels = ctx.family.generators["empty_room"](ctx.env)
    if cfg.parallel and ctx.num_envs < (3 if accel else 2):
        raise ConfigError(
            f"ppo.num_envs={ctx.num_envs} is too small for the parallel variant, which splits "
            f"the envs into new/replay{'/edit' if accel else ''} groups"
        )
    edit_n = repeat(editor_menu(ctx), cfg.num_edits) if accel else None
    return PLR(ctx, robust, accel, score_fn, params, new_levels, edit_n)


def editor_menu(ctx: Context):
    """The family's editors weighted by ``curriculum.editors`` (all, weight 1, if empty)."""
    family = ctx.family
    weights = dict(ctx.cfg.curriculum.editors) or {name: 1.0 for name in family.editors}
    unknown = sorted(set(weights) - set(family.editors))
    if unknown:
        raise ConfigError(
            f"curriculum.editors.{unknown[0]} is not an editor of family {family.name!r}; "
            f"allowed: {sorted(family.editors)}"
        )
    return menu({name: (family.editors[name](ctx.env), w) for name, w in weights.items()})


def make_plr(ctx: Context) -> PLR:
    return _make(ctx, robust=False, accel=False)


def make_robust_plr(ctx: Context) -> PLR:
    return _make(ctx, robust=True, accel=False)


def make_accel(ctx: Context) -> PLR:
    return _make(ctx, robust=True, accel=True)
