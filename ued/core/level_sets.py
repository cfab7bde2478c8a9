"""Sets of levels as stacked pytrees: the one home of the parts every curriculum shares.

- ``stack_like(level, n)``: ``n`` copies of a level stacked on a new leading axis, how every
  fixed-capacity set starts (its empty slots hold the example level).
- ``levels_equal`` / ``pairwise_equal`` / ``find_slot``: level equality, leaf by leaf.
- ``LevelRing``: a ring of fixed capacity (levels sent in by people, a grounding file):
  ``add`` keeps the last valid levels and overwrites the oldest, ``sample`` draws uniformly
  from the filled slots, ``mix`` puts drawn levels into a batch.

All of it is pure and jittable (``find_slot`` is host side); ``ued.core.buffer`` builds the scored
level buffer on the same parts.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

Level = Any  # a flax.struct dataclass with fixed shapes


def stack_like(level: Level, n: int) -> Level:
    """``n`` copies of ``level``: every leaf gets a leading axis of size ``n``."""
    return jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(x), (n, *jnp.shape(x))), level)


def levels_equal(a: Level, b: Level) -> chex.Array:
    """Scalar bool: every leaf of ``a`` equals the matching leaf of ``b``."""
    eqs = jax.tree.leaves(jax.tree.map(lambda x, y: jnp.all(x == y), a, b))
    return jnp.all(jnp.stack(eqs)) if eqs else jnp.array(True)


def pairwise_equal(a: Level, b: Level) -> chex.Array:
    """(A, B) bool: ``out[i, j]`` is True when level ``a[i]`` equals level ``b[j]``."""

    def leaf_eq(x, y):
        eq = x[:, None] == y[None, :]
        return jnp.all(eq.reshape(eq.shape[:2] + (-1,)), axis=-1)

    eqs = jax.tree.leaves(jax.tree.map(leaf_eq, a, b))
    return jnp.all(jnp.stack(eqs), axis=0)


def find_slot(levels: Level, filled, level: Level) -> int | None:
    """The first filled slot of ``levels`` (leaves (C, ...)) holding ``level``, or None."""
    match = np.asarray(pairwise_equal(levels, stack_like(level, 1))[:, 0]) & np.asarray(filled)
    slots = np.flatnonzero(match)
    return int(slots[0]) if slots.size else None


@struct.dataclass
class LevelRing:
    """Levels kept in arrival order; the capacity K is the leading axis of every leaf."""

    levels: Level  # leaves (K, ...); unfilled slots hold the example level
    filled: chex.Array  # (K,) bool
    count: chex.Array  # () int32 levels ever added (the next slot is count % K)

    @property
    def capacity(self) -> int:
        return self.filled.shape[0]


def ring(example: Level, capacity: int, given: Level | None = None) -> LevelRing:
    """An empty ring of ``capacity`` slots, or one holding ``given`` (leaves (G, ...), G <=
    capacity) in its first slots."""
    levels, filled, count = stack_like(example, capacity), jnp.zeros((capacity,), bool), 0
    if given is not None:
        count = jax.tree.leaves(given)[0].shape[0]
        put = lambda x, v: x.at[:count].set(jnp.asarray(v, x.dtype))  # noqa: E731
        levels, filled = jax.tree.map(put, levels, given), filled.at[:count].set(True)
    return LevelRing(levels, filled, jnp.asarray(count, jnp.int32))


def add(ring: LevelRing, levels: Level, valid: chex.Array | None = None) -> LevelRing:
    """``ring`` with the ``valid`` ones of ``levels`` (leaves (B, ...); all by default) added
    in order, each overwriting the oldest level when the ring is full; of more than K valid
    levels only the last K are kept."""
    k = ring.capacity
    n = jax.tree.leaves(levels)[0].shape[0]
    valid = jnp.ones((n,), bool) if valid is None else valid
    before = jnp.cumsum(valid) - valid  # valid levels ahead of each one
    total = valid.sum()
    keep = valid & (total - before <= k)
    pos = (ring.count + before - jnp.maximum(total - k, 0)) % k
    target = jnp.where(keep, pos, k)
    put = lambda x, v: x.at[target].set(v.astype(x.dtype), mode="drop")  # noqa: E731
    return LevelRing(
        levels=jax.tree.map(put, ring.levels, levels),
        filled=put(ring.filled, keep),
        count=(ring.count + keep.sum()).astype(jnp.int32),
    )


def sample(ring: LevelRing, key: chex.PRNGKey, n: int) -> Level:
    """``n`` levels drawn uniformly from the filled slots (any slots while none is)."""
    logits = jnp.where(ring.filled, 0.0, -jnp.inf)
    idx = jax.random.categorical(key, jnp.where(ring.filled.any(), logits, 0.0), shape=(n,))
    return jax.tree.map(lambda x: x[idx], ring.levels)


def mix(levels: Level, chosen: Level, use: chex.Array) -> Level:
    """The batch ``levels`` (leaves (N, ...)) with its last M rows taken from ``chosen``
    (leaves (M, ...), M <= N) where ``use`` (N,) is True."""
    n = use.shape[0]

    def put(x, v):
        m = v.shape[0]
        full = jnp.concatenate([x[: n - m], v.astype(x.dtype)])
        return jnp.where(use.reshape((n,) + (1,) * (x.ndim - 1)), full, x)

    return jax.tree.map(put, levels, chosen)
