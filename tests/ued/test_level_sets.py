"""Level sets: stacked copies, equality and the level ring, with known answers on hand-built
corridor levels (start, goal, length)."""

import jax
import jax.numpy as jnp
import numpy as np

from tests.toy_family import CorridorLevel
from ued.core import level_sets as ls


def corridor(start, goal, length=6):
    return CorridorLevel(jnp.int32(start), jnp.int32(goal), jnp.int32(length))


def batch(*pairs):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *(corridor(s, g) for s, g in pairs))


def test_stack_like_and_equality():
    three = ls.stack_like(corridor(1, 4), 3)
    assert three.start.shape == (3,) and three.start.tolist() == [1, 1, 1]
    assert bool(ls.levels_equal(corridor(1, 4), jax.tree.map(lambda x: x[2], three)))
    assert not bool(ls.levels_equal(corridor(1, 4), corridor(1, 5)))
    levels = batch((0, 1), (2, 3), (0, 1))
    np.testing.assert_array_equal(
        ls.pairwise_equal(levels, levels), [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
    )
    filled = np.array([False, True, True])
    assert ls.find_slot(levels, filled, corridor(0, 1)) == 2  # slot 0 is not filled
    assert ls.find_slot(levels, filled, corridor(5, 1)) is None


def test_ring_keeps_the_last_valid_levels_in_order():
    ring = ls.ring(corridor(0, 0), 3)
    assert not ring.filled.any() and int(ring.count) == 0
    ring = jax.jit(ls.add)(ring, batch((0, 1), (1, 2)), jnp.array([True, False]))
    assert ring.filled.tolist() == [True, False, False] and int(ring.count) == 1
    ring = ls.add(ring, batch((2, 3), (3, 4), (4, 5)))  # the oldest, (0, 1), is overwritten
    assert ring.levels.start.tolist() == [4, 2, 3]
    assert ring.filled.all() and int(ring.count) == 4
    ring = ls.add(ring, batch(*((s, s + 1) for s in range(5))))  # more than fit: the last 3
    assert sorted(ring.levels.start.tolist()) == [2, 3, 4] and int(ring.count) % 3 == 1


def test_ring_from_given_levels_samples_only_filled_slots_and_mixes_the_last_rows():
    ring = ls.ring(corridor(0, 0), 4, given=batch((1, 2), (3, 4)))
    assert ring.filled.tolist() == [True, True, False, False] and int(ring.count) == 2
    drawn = ls.sample(ring, jax.random.PRNGKey(0), 200)
    assert set(drawn.start.tolist()) == {1, 3}  # never an empty slot
    base = batch((5, 0), (5, 1), (5, 2), (5, 3))
    use = jnp.array([True, False, True, True])
    mixed = ls.mix(base, batch((1, 2), (3, 4)), use)  # two chosen: the last two rows
    assert mixed.start.tolist() == [5, 5, 1, 3] and mixed.goal.tolist() == [0, 1, 2, 4]
    full = ls.mix(base, batch((1, 2), (1, 2), (3, 4), (3, 4)), use)
    assert full.start.tolist() == [1, 5, 3, 3]
