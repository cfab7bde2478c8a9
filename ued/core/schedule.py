"""What the seeds of a run share at each update, and branches that stay branches under vmap.

``run.num_seeds = S > 1`` trains S seeds in one program (``ued.step.parallel``). Under
``jax.vmap`` a ``lax.cond`` or ``lax.switch`` whose predicate differs across seeds runs every
branch and selects (the PPO update on a no-gradient step, every kind of PLR step, SFL's
refresh on every update). To keep real branches:

- **the update count** is passed to the step unbatched (``Schedule.update``: the chunk loop's
  index plus the chunk's first update), never read from a per-seed copy in the state;
- **random decisions** (replay or new levels) are drawn from a *schedule key*
  (``Schedule.key``) that every seed of the run shares: ``fold_in(base, t)`` with ``base``
  derived from ``run.schedule_seed`` (default ``run.seed``, the run's first seed) and ``t``
  the update count; levels, students, buffers and every other draw stay per seed;
- **per-seed facts** that a shared draw cannot decide (is this seed's buffer full enough to
  replay, has it replayed levels to edit, does it train on any env) stay per seed: the
  branch runs when *any* seed needs it (``Schedule.any``, a ``pmax`` over the seed axis, so
  the predicate is unbatched), and each seed selects its own result (``Schedule.switch``:
  each branch that some seed takes runs once; ``Schedule.cond``: the dear branch runs when
  some seed takes it, the cheap one on every update). With shared draws the seeds agree
  almost always, so one branch runs; when they disagree (e.g. one seed's buffer is ready
  before another's) each needed branch runs once for all seeds. A seed's result never
  depends on the other seeds: it is what the same step computes for that seed alone (to
  float rounding: XLA may sum a batched computation in another order).

Without a seed axis (one seed, or ``run.seed_mode=sequential``) ``Schedule.cond`` and
``Schedule.switch`` are plain ``lax.cond`` / ``lax.switch``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import chex
import jax
import jax.numpy as jnp
from flax import struct

# Folded into PRNGKey(schedule_seed): the schedule's keys are a stream of their own, apart
# from the seeds' train keys (PRNGKey(seed) and its splits).
SCHEDULE_STREAM = 0x5C4ED


def schedule_base(seed: int) -> chex.PRNGKey:
    """The schedule's base key for ``run.schedule_seed`` (or ``run.seed``) ``seed``."""
    return jax.random.fold_in(jax.random.PRNGKey(seed), SCHEDULE_STREAM)


@struct.dataclass
class Schedule:
    """One update's shared inputs: the same value for every seed of the run (unbatched)."""

    update: chex.Array  # () int32, updates done before this one (0 on the first)
    key: chex.PRNGKey  # the schedule key of this update, shared by every seed
    # The vmap axis of the seeds, or None (one seed, or seeds run one after another).
    seed_axis: str | None = struct.field(pytree_node=False, default=None)

    @classmethod
    def at(cls, base: chex.PRNGKey, update, seed_axis: str | None = None) -> Schedule:
        """The schedule of update ``update`` (updates done before it) from ``base``."""
        update = jnp.asarray(update, jnp.int32)
        return cls(update=update, key=jax.random.fold_in(base, update), seed_axis=seed_axis)

    # --- predicates over the seeds ------------------------------------------------------
    def any(self, pred: chex.Array) -> chex.Array:
        """() bool, unbatched: ``pred`` holds for at least one seed."""
        pred = jnp.asarray(pred, bool)
        if self.seed_axis is None:
            return pred
        return jax.lax.pmax(pred.astype(jnp.int32), self.seed_axis) > 0

    def all(self, pred: chex.Array) -> chex.Array:
        """() bool, unbatched: ``pred`` holds for every seed."""
        return ~self.any(~jnp.asarray(pred, bool))

    # --- branches -----------------------------------------------------------------------
    def cond(self, pred, true_fn: Callable, false_fn: Callable, *operands):
        """``lax.cond(pred, true_fn, false_fn, *operands)`` for a per-seed ``pred``. Under
        the seed vmap, ``true_fn`` runs (once, for every seed) only when some seed needs it,
        then each seed selects its own result; ``false_fn`` runs on every update, so make it
        the cheap branch (e.g. "skip the gradient step")."""
        if self.seed_axis is None:
            return jax.lax.cond(pred, true_fn, false_fn, *operands)

        def some(*ops):
            return _select(pred, true_fn(*ops), false_fn(*ops))

        return jax.lax.cond(self.any(pred), some, false_fn, *operands)

    def switch(self, index, branches: Sequence[Callable], *operands):
        """``lax.switch(index, branches, *operands)`` for a per-seed ``index``: under the
        seed vmap, each branch runs (once, for every seed) only when some seed takes it, and
        each seed selects the result of its own branch. Each branch is traced once."""
        if self.seed_axis is None:
            return jax.lax.switch(index, branches, *operands)
        index = jnp.clip(jnp.asarray(index, jnp.int32), 0, len(branches) - 1)
        out = None
        for k, branch in enumerate(branches):
            mine = index == k
            value = jax.lax.cond(self.any(mine), branch, _placeholder(branch, *operands), *operands)
            out = value if out is None else _select(mine, value, out)
        return out


def _select(pred, a, b):
    return jax.tree.map(lambda x, y: jnp.where(pred, x, y), a, b)


def _placeholder(fn: Callable, *operands) -> Callable:
    """A function of ``operands`` returning zeros shaped like ``fn``'s result (not run)."""
    shapes = jax.eval_shape(fn, *operands)
    return lambda *_: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
