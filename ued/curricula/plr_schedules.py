"""How a PLR-type curriculum proposes a step's levels: one kind per step, or fixed groups.

Both schedules work with the curriculum's state and parts (``plr_parts``) alone, and label
every env with its group (``NEW``, ``REPLAY``, ``EDIT``, indices into ``PLR.groups``); an env
of the replay or edit group that had to fall back to fresh levels (buffer not ready, nothing
replayed yet) is labelled ``NEW``, so the train mask and the logged group fractions say what
the env really held.

Which decisions the seeds of a run share (``ued.core.schedule``; the step passes a ``Schedule``):

- **shared**: the sequential schedule's replay coin, ``uniform(schedule.key) < p``, the same
  draw for every seed (``p`` is each seed's ``replay_prob``, or ``min(fill,
  replay_prob)`` for the "proportionate" schedule).
- **per seed**: whether the seed's buffer is full enough to replay (``min_fill_ratio``),
  whether the previous step of this seed replayed (ACCEL's edit step follows a replay of the
  same seed), and the parallel schedule's "replay group ready". These stay real branches of
  each seed: under a vmap over seeds a branch runs when some seed takes it
  (``Schedule.switch``/``cond``), so seeds that agree (the usual case once their buffers
  are full: same coin, same chain of replay and edit steps) run one branch, and a seed
  whose buffer is not ready yet costs the other branch for that update only.

Without a schedule (``propose(..., schedule=None)``, e.g. called directly) the coin comes
from the per-seed key, as before seeds shared it.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ued.config.options import ConfigError
from ued.core import buffer as buf_lib
from ued.curricula.base import Plan
from ued.curricula.plr_parts import EDIT, NEW, REPLAY, PLRParts, PLRState


def _pick(cond, a, b):
    return jax.tree.map(lambda x, y: jnp.where(cond, x, y), a, b)


def _take(tree, start, stop):
    return jax.tree.map(lambda x: x[start:stop], tree)


@dataclasses.dataclass(frozen=True)
class Sequential:
    """Each step is one kind: new levels, a replay of buffer levels, or (with an editor) the
    step after a replay edits the levels just replayed (ACCEL). The kind is a scalar chosen
    outside any env vmap; ``lax.switch`` then builds only that kind's levels."""

    def check(self, num_envs: int, editing: bool) -> None:
        return None

    def replay_count(self, parts: PLRParts) -> int:
        return parts.num_envs

    def propose(self, parts: PLRParts, key, cstate: PLRState, schedule=None):
        n = parts.num_envs
        decide_key, key = jax.random.split(key)
        if schedule is not None:
            decide_key = schedule.key  # the coin every seed shares
        replay = buf_lib.should_replay(cstate.buffer, cstate.params, decide_key)
        kind = jnp.where(replay, REPLAY, NEW).astype(jnp.int32)
        if parts.editing:
            kind = jnp.where(cstate.edit_next, EDIT, kind)
        none = jnp.full((n,), -1, jnp.int32)
        buffer = cstate.buffer
        # Each branch returns what it changes: the levels, their slots and the buffer's
        # staleness (sampling marks the replayed slots), not the whole buffer.
        unchanged = (buffer.last_sampled, buffer.clock)

        def new(key):
            return parts.generate(key, n), none, unchanged

        def replayed(key):
            sampled, idx, levels = buf_lib.sample(buffer, cstate.params, key, n)
            return levels, idx, (sampled.last_sampled, sampled.clock)

        def edited(key):
            return parts.edit(key, cstate.last_replayed), none, unchanged

        branches = [new, replayed] + ([edited] if parts.editing else [])
        switch = schedule.switch if schedule is not None else jax.lax.switch
        levels, idx, (last_sampled, clock) = switch(kind, branches, key)
        buffer = buffer.replace(last_sampled=last_sampled, clock=clock)
        group = jnp.full((n,), kind)
        plan = Plan(train_mask=parts.train_mask(group), group=group)
        return cstate.replace(buffer=buffer, env_slots=idx), levels, plan

    def update(self, parts: PLRParts, cstate: PLRState, plan, levels, scores, best, schedule=None):
        kind = plan.group[0]

        def on_replay(cstate):
            slots = cstate.env_slots
            cstate = parts.refresh(cstate, jnp.maximum(slots, 0), scores, best)
            return cstate.replace(
                last_replayed=levels, last_idx=slots, edit_next=jnp.asarray(parts.editing)
            )

        def on_insert(cstate):
            edited = jnp.full(scores.shape, kind == EDIT)
            cstate = parts.insert(cstate, levels, scores, parts.extras(cstate, best, edited))
            return cstate.replace(edit_next=jnp.zeros((), bool))

        if schedule is None:
            return jax.lax.cond(kind == REPLAY, on_replay, on_insert, cstate)
        # The insertion (dedup, eviction) is the dearer part: with vmapped seeds it runs
        # only on updates where some seed inserts; the cheap refresh runs on every update.
        return schedule.cond(kind != REPLAY, on_insert, on_replay, cstate)


@dataclasses.dataclass(frozen=True)
class Parallel:
    """Every step splits its envs into fixed groups rolled out together (PLR||, ACCEL||):
    new and replayed levels in halves, or new, replayed and edited levels in thirds (the
    remainder goes to the new group). The edit group edits the previous step's replayed
    levels."""

    def check(self, num_envs: int, editing: bool) -> None:
        if num_envs < (3 if editing else 2):
            raise ConfigError(
                f"ppo.num_envs={num_envs} is too small for a parallel curriculum, which splits "
                f"the envs into new/replay{'/edit' if editing else ''} groups"
            )

    @staticmethod
    def sizes(parts: PLRParts) -> tuple[int, int, int]:
        """Env counts (new, replay, edit) per step."""
        n = parts.num_envs
        share = n // 3 if parts.editing else n // 2
        edit = share if parts.editing else 0
        return (n - share - edit, share, edit)

    def replay_count(self, parts: PLRParts) -> int:
        return self.sizes(parts)[1]

    def propose(self, parts: PLRParts, key, cstate: PLRState, schedule=None):
        n_new, n_rep, n_edit = self.sizes(parts)
        n = parts.num_envs
        decide_key, new_key, rep_key, edit_key = jax.random.split(key, 4)
        always = cstate.params.replace(replay_prob=jnp.float32(1.0))
        ready = buf_lib.should_replay(cstate.buffer, always, decide_key)
        sampled, idx, replayed = buf_lib.sample(cstate.buffer, cstate.params, rep_key, n_rep)
        fresh = parts.generate(new_key, n)
        # Until the buffer is ready the replay group rolls out fresh levels instead, and
        # until something was replayed the edit group does too.
        pieces = [
            _take(fresh, 0, n_new),
            _pick(ready, replayed, _take(fresh, n_new, n_new + n_rep)),
        ]
        group = [
            jnp.full((n_new,), NEW, jnp.int32),
            jnp.full((n_rep,), jnp.where(ready, REPLAY, NEW), jnp.int32),
        ]
        if parts.editing:
            has_parent = cstate.last_idx >= 0
            edited = parts.edit(edit_key, cstate.last_replayed)
            pieces.append(jax.vmap(_pick)(has_parent, edited, _take(fresh, n_new + n_rep, None)))
            group.append(jnp.where(has_parent, EDIT, NEW).astype(jnp.int32))
        levels = jax.tree.map(lambda *xs: jnp.concatenate(xs), *pieces)
        group = jnp.concatenate(group)
        slots = jnp.where(group == REPLAY, jnp.pad(idx, (n_new, n_edit)), -1)
        plan = Plan(train_mask=parts.train_mask(group), group=group)
        buffer = _pick(ready, sampled, cstate.buffer)
        return cstate.replace(buffer=buffer, env_slots=slots), levels, plan

    def update(self, parts: PLRParts, cstate: PLRState, plan, levels, scores, best, schedule=None):
        n_new, n_rep, _ = self.sizes(parts)
        ready = plan.group[n_new] == REPLAY
        rep_idx = cstate.env_slots[n_new : n_new + n_rep]

        def replay_ready(cstate):
            cstate = parts.refresh(
                cstate, rep_idx, scores[n_new : n_new + n_rep], best[n_new : n_new + n_rep]
            )
            extras = parts.extras(cstate, best[:n_new], None)
            return parts.insert(cstate, _take(levels, 0, n_new), scores[:n_new], extras)

        def not_ready(cstate):
            m = n_new + n_rep
            return parts.insert(
                cstate, _take(levels, 0, m), scores[:m], parts.extras(cstate, best[:m], None)
            )

        if schedule is None:
            cstate = jax.lax.cond(ready, replay_ready, not_ready, cstate)
        else:  # vmapped seeds: the warm-up branch runs only while some seed is not ready
            cstate = schedule.cond(~ready, not_ready, replay_ready, cstate)
        if parts.editing:
            start = n_new + n_rep
            edited = cstate.last_idx >= 0
            extras = parts.extras(cstate, best[start:], edited)
            cstate = parts.insert(cstate, _take(levels, start, None), scores[start:], extras)
            parents = jnp.where(ready, rep_idx, -1)
            cstate = cstate.replace(last_replayed=_take(levels, n_new, start), last_idx=parents)
        return cstate
