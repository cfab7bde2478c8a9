"""The level buffer: a pytree of stacked levels with scores and staleness, pure and jittable.

A buffer of capacity ``C`` stores ``C`` levels stacked on the leading axis of every leaf of
``levels`` (any ``flax.struct`` level with fixed shapes works). Every function here is pure,
jittable and vectorised over levels; ``jax.jit`` is applied by callers, once, at the top.

Replay distribution (Prioritized Level Replay, Jiang et al. 2021)::

    P = (1 - staleness_coef) * P_score + staleness_coef * P_staleness

over filled slots only. Staleness is ``clock - last_sampled``. With ``staleness_clock="batch"``
the clock counts ``sample`` calls, so it is the number of replay steps since the level was
last sampled or inserted; with ``"level"`` it counts sampled levels and insertion attempts,
as JaxUED does; with ``"replay"`` it counts sampled levels only, as dcd does (a new level's
insertion does not age the others).
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
from flax import struct

from ued.core.buffer_params import (  # noqa: F401  (part of this module's API)
    PRIORITISATIONS,
    REPLAY_SCHEDULES,
    STALENESS_CLOCKS,
    BufferParams,
    as_arrays,
    make_buffer_params,
)
from ued.core.level_sets import pairwise_equal, stack_like

Level = Any  # a flax.struct dataclass with fixed shapes


@struct.dataclass
class LevelExtras:
    """Per-level bookkeeping kept beside the scores (leaves have a leading level axis)."""

    best_return: chex.Array  # (C,) float32 best episodic return ever seen (-inf: none yet)
    num_edits: chex.Array  # (C,) int32 edits since the level was generated
    parent: chex.Array  # (C,) int32 buffer slot it was edited from, -1 if none


def default_extras(n: int) -> LevelExtras:
    """Extras of ``n`` freshly generated levels: no return seen, no edits, no parent."""
    return LevelExtras(
        best_return=jnp.full((n,), -jnp.inf, jnp.float32),
        num_edits=jnp.zeros((n,), jnp.int32),
        parent=jnp.full((n,), -1, jnp.int32),
    )


@struct.dataclass
class LevelBuffer:
    """Scored levels; the capacity C is the (static) leading dimension of every leaf."""

    levels: Level  # leaves (C, ...) stacked levels; empty slots hold the example level
    scores: chex.Array  # (C,) float32 (-inf allowed; 0 in empty slots)
    last_sampled: chex.Array  # (C,) int32 clock at the last sample or insertion
    filled: chex.Array  # (C,) bool
    size: chex.Array  # () int32 number of filled slots
    clock: chex.Array  # () int32 number of sample calls so far
    extras: LevelExtras  # leaves (C,)

    @property
    def capacity(self) -> int:
        return self.scores.shape[0]


def init(example_level: Level, capacity: int) -> LevelBuffer:
    """An empty buffer whose slots all hold copies of ``example_level``."""
    if capacity < 1:
        raise ValueError(f"capacity={capacity}; must be >= 1")
    return LevelBuffer(
        levels=stack_like(example_level, capacity),
        scores=jnp.zeros((capacity,), jnp.float32),
        last_sampled=jnp.zeros((capacity,), jnp.int32),
        filled=jnp.zeros((capacity,), bool),
        size=jnp.zeros((), jnp.int32),
        clock=jnp.zeros((), jnp.int32),
        extras=default_extras(capacity),
    )


# --- level encoding (equality is in ued.core.level_sets) -------------------------------------


def level_encoding(levels: Level) -> chex.Array:
    """(N, D) float32: every leaf of a batch of N levels flattened and concatenated."""
    leaves = jax.tree.leaves(levels)
    n = leaves[0].shape[0]
    return jnp.concatenate([jnp.reshape(x, (n, -1)).astype(jnp.float32) for x in leaves], axis=1)


# --- replay distribution ----------------------------------------------------------------------


def _clean(scores: chex.Array) -> chex.Array:
    # NaN would poison sorting and sums; treat it as "no information", like -inf.
    scores = jnp.asarray(scores, jnp.float32)
    return jnp.where(jnp.isnan(scores), -jnp.inf, scores)


def score_ranks(buf: LevelBuffer) -> chex.Array:
    """(C,) int32 rank of each slot, 1 = highest score among filled slots.

    Filled slots come first (``-inf`` scores last among them), then empty slots; ties go to
    the lower slot index.
    """
    c = buf.capacity
    order = jnp.lexsort((jnp.arange(c), -_clean(buf.scores), ~buf.filled))
    return jnp.zeros((c,), jnp.int32).at[order].set(jnp.arange(1, c + 1, dtype=jnp.int32))


def _normalise(w: chex.Array, filled: chex.Array) -> chex.Array:
    # w / sum(w) over filled slots; uniform over filled slots when the sum is zero.
    w = jnp.where(filled, w, 0.0)
    total = w.sum()
    uniform = filled / jnp.maximum(filled.sum(), 1)
    return jnp.where(total > 0, w / jnp.where(total > 0, total, 1.0), uniform)


def score_weights(buf: LevelBuffer, params: BufferParams) -> chex.Array:
    """(C,) float32 P_score over filled slots (zero elsewhere).

    - ``rank``: ``(1 / rank) ** (1 / temperature)``, ranks from ``score_ranks``.
    - ``power``: ``max(score, 0) ** (1 / temperature)``: scores are clipped at 0, so negative
      and ``-inf`` scores get zero score weight (all zero -> uniform over filled slots).
    - ``top_k``: uniform over the ``top_k`` best ranks (all filled slots if fewer).
    """
    scores = _clean(buf.scores)
    inv_t = 1.0 / params.temperature
    if params.prioritisation == "rank":
        w = jnp.exp(-inv_t * jnp.log(score_ranks(buf).astype(jnp.float32)))
    elif params.prioritisation == "power":
        clipped = jnp.where(buf.filled, jnp.maximum(scores, 0.0), 0.0)
        top = clipped.max()  # dividing by the max first cannot overflow; same ratios
        w = (clipped / jnp.where(top > 0, top, 1.0)) ** inv_t
    else:  # top_k
        w = (score_ranks(buf) <= params.top_k).astype(jnp.float32)
    return _normalise(w, buf.filled)


def staleness_weights(buf: LevelBuffer) -> chex.Array:
    """(C,) float32 P_staleness proportional to ``clock - last_sampled`` over filled slots."""
    staleness = jnp.maximum(buf.clock - buf.last_sampled, 0).astype(jnp.float32)
    return _normalise(staleness, buf.filled)


def replay_weights(buf: LevelBuffer, params: BufferParams) -> chex.Array:
    """(C,) float32 replay distribution: zero on empty slots, sums to 1 when size > 0."""
    c = params.staleness_coef
    return (1.0 - c) * score_weights(buf, params) + c * staleness_weights(buf)


def eviction_order(buf: LevelBuffer, params: BufferParams, protected: chex.Array) -> chex.Array:
    """(C,) int32 slots from first to last to be overwritten by ``insert``.

    Order: empty slots (by index), then unprotected filled slots by ascending replay weight,
    ties by ascending score, then by index; protected slots (never evicted) last.
    """
    c = buf.capacity
    w = replay_weights(buf, params)
    return jnp.lexsort((jnp.arange(c), _clean(buf.scores), w, protected, buf.filled))


# --- insert / sample / update ---------------------------------------------------------------


def _scatter(tree: Any, target: chex.Array, values: Any) -> Any:
    # Writes values[i] to slot target[i]; target == capacity (out of bounds) is dropped.
    return jax.tree.map(lambda x, v: x.at[target].set(v.astype(x.dtype), mode="drop"), tree, values)


def _find_duplicates(buf: LevelBuffer, params: BufferParams, levels: Level):
    """Per new level: its representative in the batch, and the filled slot it equals.

    Returns:
        first: (B,) int32 index of the first level in the batch equal to it (itself if none).
        match: (B,) int32 filled slot equal to it, -1 if none.
    """
    b = jax.tree.leaves(levels)[0].shape[0]
    if not params.dedup:
        return jnp.arange(b, dtype=jnp.int32), jnp.full((b,), -1, jnp.int32)
    eq_new = pairwise_equal(levels, levels) | jnp.eye(b, dtype=bool)
    first = jnp.argmax(eq_new, axis=1).astype(jnp.int32)
    eq_buf = pairwise_equal(levels, buf.levels) & buf.filled[None, :]
    match = jnp.where(eq_buf.any(axis=1), jnp.argmax(eq_buf, axis=1), -1).astype(jnp.int32)
    return first, match


def _refresh_duplicates(buf: LevelBuffer, slot: chex.Array, scores: chex.Array, extras):
    """Writes scores/extras of new levels into the filled slots they duplicate.

    ``slot`` (B,) is the slot to refresh, or C for none; ``best_return`` keeps the max of the
    old and new values. Returns the buffer and the (C,) bool mask of refreshed slots.
    """
    c = buf.capacity
    old_best = buf.extras.best_return[jnp.clip(slot, 0, c - 1)]
    merged = extras.replace(best_return=jnp.maximum(extras.best_return, old_best))
    buf = buf.replace(
        scores=buf.scores.at[slot].set(scores, mode="drop"),
        extras=_scatter(buf.extras, slot, merged),
    )
    return buf, jnp.zeros((c,), bool).at[slot].set(True, mode="drop")


def insert(
    buf: LevelBuffer,
    params: BufferParams,
    levels: Level,
    scores: chex.Array,
    extras: LevelExtras | None = None,
) -> tuple[LevelBuffer, chex.Array]:
    """Inserts a batch of B scored levels at once (vectorised; no loop over the batch).

    1. With ``params.dedup``, duplicates within the batch are represented by their first
       occurrence (its score and extras are used; later copies are ignored). A representative
       equal to a filled slot updates that slot's score and extras (``best_return`` becomes
       the max of both; ``last_sampled`` is kept) and takes no new slot; such slots are
       protected from eviction in this call.
    2. The other representatives ("fresh", sorted by descending score, ties by batch index)
       are paired with ``eviction_order`` (empty slots first, then lowest replay weight): the
       j-th best fresh level is written into the j-th slot iff that slot is empty or the new
       score is strictly greater than the slot's score. Only ``min(B, C)`` pairs exist, so
       at most C levels enter; a rejected pair does not stop later pairs.
    Replay weights used for the eviction order are those after the step-1 updates. Inserted
    levels get ``last_sampled = clock`` (staleness 0). With ``staleness_clock="level"`` the
    clock first advances by one per level of the batch (an insertion attempt each), and the
    level at batch index i, inserted or refreshed as a duplicate, gets ``clock_before + i +
    1``; ``"batch"`` and ``"replay"`` do not advance the clock here. NaN scores are treated
    as ``-inf``; a ``-inf`` level enters only an empty slot.

    Args:
        buf: the buffer (capacity C).
        params: buffer hyper-parameters.
        levels: B levels stacked on the leading axis.
        scores: (B,) float32.
        extras: ``LevelExtras`` with (B,) leaves; ``default_extras(B)`` if None.

    Returns:
        The new buffer and (B,) int32: the slot each level now occupies (its duplicate's slot
        for duplicates), -1 if it was rejected.
    """
    c = buf.capacity
    scores = _clean(scores)
    b = scores.shape[0]
    extras = default_extras(b) if extras is None else extras
    first, match = _find_duplicates(buf, params, levels)
    is_rep = first == jnp.arange(b)
    update_slot = jnp.where(is_rep & (match >= 0), match, c)
    fresh = is_rep & (match < 0)

    # Step 1: duplicates of stored levels refresh their slot.
    buf, protected = _refresh_duplicates(buf, update_slot, scores, extras)
    per_level = params.staleness_clock == "level"
    if per_level:  # each attempt is one tick; a refreshed duplicate counts as just seen
        stamps = buf.clock + 1 + jnp.arange(b, dtype=jnp.int32)
        buf = buf.replace(last_sampled=buf.last_sampled.at[update_slot].set(stamps, mode="drop"))

    # Step 2: pair the best fresh levels with the first slots to evict.
    k = min(b, c)
    cand = jnp.lexsort((jnp.arange(b), -scores, ~fresh))[:k]
    slots = eviction_order(buf, params, protected)[:k]
    beats = ~protected[slots] & (scores[cand] > _clean(buf.scores)[slots])
    admit = fresh[cand] & (~buf.filled[slots] | beats)
    target = jnp.where(admit, slots, c)
    take = lambda tree: jax.tree.map(lambda x: x[cand], tree)
    filled = buf.filled.at[target].set(True, mode="drop")
    buf = buf.replace(
        levels=_scatter(buf.levels, target, take(levels)),
        scores=buf.scores.at[target].set(scores[cand], mode="drop"),
        last_sampled=buf.last_sampled.at[target].set(
            stamps[cand] if per_level else buf.clock, mode="drop"
        ),
        filled=filled,
        size=filled.sum(dtype=jnp.int32),
        extras=_scatter(buf.extras, target, take(extras)),
        clock=buf.clock + b if per_level else buf.clock,
    )

    rep_slot = jnp.where(update_slot < c, update_slot, -1)
    rep_slot = rep_slot.at[cand].set(jnp.where(admit, slots, rep_slot[cand]))
    return buf, rep_slot[first].astype(jnp.int32)


def sample(
    buf: LevelBuffer, params: BufferParams, key: chex.PRNGKey, n: int
) -> tuple[LevelBuffer, chex.Array, Level]:
    """Draws n slots with replacement from ``replay_weights`` and marks them sampled.

    ``staleness_clock="batch"``: the n slots are drawn at once from one distribution; the
    clock advances by one per call, the sampled slots get ``last_sampled`` = the new clock
    (staleness 0) and every other filled slot grows one step staler. ``"level"``: the n
    draws are made one after another, each advancing the clock by one and marking its slot,
    so a later draw sees the staleness left by earlier ones (dcd, JaxUED); ``"replay"``
    samples as ``"level"`` (only its insertions differ).

    An empty buffer (size 0) must not be replayed (see ``should_replay``); if it is, this
    returns index 0 n times with slot 0's level (the example level given to ``init``) and
    leaves the buffer unchanged.

    Returns:
        The new buffer, (n,) int32 slot indices and the n levels (leaves (n, ...)).
    """
    c = buf.capacity
    nonempty = buf.size > 0
    if params.staleness_clock in ("level", "replay"):
        return _sample_one_by_one(buf, params, key, n)
    p = jnp.where(nonempty, replay_weights(buf, params), jnp.arange(c) == 0)
    idx = jax.random.choice(key, c, (n,), replace=True, p=p).astype(jnp.int32)
    idx = jnp.where(nonempty, idx, 0)
    clock = buf.clock + nonempty.astype(jnp.int32)
    last_sampled = jnp.where(nonempty, buf.last_sampled.at[idx].set(clock), buf.last_sampled)
    levels = jax.tree.map(lambda x: x[idx], buf.levels)
    return buf.replace(clock=clock, last_sampled=last_sampled), idx, levels


def _sample_one_by_one(buf: LevelBuffer, params: BufferParams, key: chex.PRNGKey, n: int):
    c = buf.capacity
    nonempty = buf.size > 0
    score_w = score_weights(buf, params)  # scores do not change while sampling

    def draw(carry, key):
        clock, last_sampled = carry
        stale = staleness_weights(buf.replace(clock=clock, last_sampled=last_sampled))
        w = (1.0 - params.staleness_coef) * score_w + params.staleness_coef * stale
        p = jnp.where(nonempty, w, jnp.arange(c) == 0)
        idx = jax.random.choice(key, c, (), p=p).astype(jnp.int32)
        idx = jnp.where(nonempty, idx, 0)
        clock = clock + nonempty.astype(jnp.int32)
        last_sampled = jnp.where(nonempty, last_sampled.at[idx].set(clock), last_sampled)
        return (clock, last_sampled), idx

    carry = (buf.clock, buf.last_sampled)
    (clock, last_sampled), idx = jax.lax.scan(draw, carry, jax.random.split(key, n))
    levels = jax.tree.map(lambda x: x[idx], buf.levels)
    return buf.replace(clock=clock, last_sampled=last_sampled), idx, levels


def update(
    buf: LevelBuffer,
    idx: chex.Array,
    scores: chex.Array,
    extras: LevelExtras | None = None,
) -> LevelBuffer:
    """Writes new scores (and extras, if given) for the slots ``idx`` (n,).

    A repeated index takes the values of its last occurrence. Indices that are negative
    (e.g. -1 from a rejected ``insert``), out of range or point at empty slots are ignored.
    NaN scores are stored as ``-inf``. ``last_sampled`` is not touched (``sample`` did it).
    """
    c = buf.capacity
    idx = jnp.asarray(idx, jnp.int32)
    n = idx.shape[0]
    valid = (idx >= 0) & (idx < c) & buf.filled[jnp.clip(idx, 0, c - 1)]
    pos = jnp.arange(n)
    repeated_later = ((idx[None, :] == idx[:, None]) & (pos[None, :] > pos[:, None])).any(1)
    target = jnp.where(valid & ~repeated_later, idx, c)
    buf = buf.replace(scores=buf.scores.at[target].set(_clean(scores), mode="drop"))
    if extras is not None:
        buf = buf.replace(extras=_scatter(buf.extras, target, extras))
    return buf


def should_replay(buf: LevelBuffer, params: BufferParams, key: chex.PRNGKey) -> chex.Array:
    """Scalar bool: replay from the buffer this step rather than take new levels.

    False while the buffer is empty or ``size < min_fill_ratio * capacity``. Otherwise a coin
    flip: with probability ``replay_prob`` for the "fixed" schedule, and ``min(size /
    capacity, replay_prob)`` for "proportionate" (replay more as the buffer fills, up to
    ``replay_prob``: dcd's level_sampler.py ``_sample_replay_decision``).
    """
    cap = buf.capacity
    min_size = jnp.ceil(params.min_fill_ratio * cap - 1e-3)  # tolerate float rounding
    enough = (buf.size > 0) & (buf.size >= min_size)
    fill = buf.size / cap
    p = (
        params.replay_prob
        if params.replay_schedule == "fixed"
        else jnp.minimum(fill, params.replay_prob)
    )
    return enough & jax.random.bernoulli(key, p)
