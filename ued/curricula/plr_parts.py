"""What a PLR-type curriculum's schedules work with: its state and its parts.

``PLRParts`` holds where new and edited levels come from, which groups the student trains
on, and the buffer's bookkeeping (inserting scored levels with their statistics and extras,
refreshing replayed ones). The schedules (``plr_schedules``) use these and the state; the
curriculum (``plr``) builds the parts and calls a schedule, so the dependency points one
way: plr -> plr_schedules -> plr_parts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from envs.core import Generator, Level
from ued.core import buffer as buf_lib

NEW, REPLAY, EDIT = 0, 1, 2  # group indices, in the order of ``PLR.groups``


@struct.dataclass
class PLRState:
    buffer: buf_lib.LevelBuffer
    params: buf_lib.BufferParams  # the buffer's hyper-parameters: leaves a sweep can vmap
    level_stats: dict  # name -> (C,) float32 level metrics of each buffer slot
    last_replayed: Any  # levels (leaves (R, ...)) of the last replay, the edit group's parents
    last_idx: Any  # (R,) int32 their buffer slots
    edit_next: Any  # () bool, sequential editing: the previous step replayed, so this one edits
    env_slots: Any  # (N,) int32 buffer slot each env's level of this step came from, -1 for none


@dataclasses.dataclass(frozen=True)
class PLRParts:
    """The parts a schedule proposes and updates with (see the module docstring)."""

    num_envs: int
    new_levels: Generator  # key -> level, the generator of fresh levels
    edit_n: Any  # (key, level, n) -> level, or None: no editing
    num_edits: int  # edits applied to each replayed level (0 without editing)
    trained: tuple[int, ...]  # groups (NEW, REPLAY, EDIT) the student trains on
    level_metrics: Callable[[Level], dict]  # level -> {name: () metric}, kept per slot

    @property
    def editing(self) -> bool:
        return self.edit_n is not None

    def train_mask(self, group):
        return jnp.isin(group, jnp.asarray(self.trained, jnp.int32))

    def generate(self, key, n):
        return jax.vmap(self.new_levels)(jax.random.split(key, n))

    def edit(self, key, levels):
        # Every level of the batch is edited, each with its own key.
        n = jax.tree.leaves(levels)[0].shape[0]
        count = jnp.full((n,), self.num_edits, jnp.int32)
        return jax.vmap(self.edit_n)(jax.random.split(key, n), levels, count)

    def extras(self, cstate: PLRState, best, edited):
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
            num_edits=jnp.where(edited, parent_edits + self.num_edits, 0).astype(jnp.int32),
            parent=jnp.where(edited, parents, -1).astype(jnp.int32),
        )

    def insert(self, cstate: PLRState, levels, scores, extras) -> PLRState:
        buffer, slots = buf_lib.insert(cstate.buffer, cstate.params, levels, scores, extras)
        metrics = jax.vmap(self.level_metrics)(levels)
        target = jnp.where(slots >= 0, slots, buffer.capacity)
        level_stats = {
            k: v.at[target].set(metrics[k].astype(jnp.float32), mode="drop")
            for k, v in cstate.level_stats.items()
        }
        return cstate.replace(buffer=buffer, level_stats=level_stats)

    def refresh(self, cstate: PLRState, idx, scores, best) -> PLRState:
        extras = jax.tree.map(lambda x: x[idx], cstate.buffer.extras).replace(best_return=best)
        return cstate.replace(buffer=buf_lib.update(cstate.buffer, idx, scores, extras))
