"""Tests of the level buffer on a tiny level pytree (a (3, 3) bool map and a (2,) int pos)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from ued.core import buffer as B
from ued.core import level_sets

INF = np.inf


@struct.dataclass
class TinyLevel:
    walls: jax.Array  # (3, 3) bool
    pos: jax.Array  # (2,) int32


def levels_from_ids(ids) -> TinyLevel:
    """Distinct ids < 512 give distinct levels; equal ids give equal levels."""
    ids = jnp.asarray(ids, jnp.int32)
    bits = (ids[:, None] >> jnp.arange(9)) & 1
    return TinyLevel(
        walls=bits.reshape(-1, 3, 3).astype(bool),
        pos=jnp.stack([ids % 3, (ids // 3) % 2], axis=1).astype(jnp.int32),
    )


EXAMPLE = jax.tree.map(lambda x: x[0], levels_from_ids([0]))
insert = jax.jit(B.insert)
sample = jax.jit(B.sample, static_argnums=3)
update = jax.jit(B.update)
weights = jax.jit(B.replay_weights)


def filled_buffer(scores, last_sampled=None, clock=0, capacity=None):
    """A buffer whose slot i holds level id i + 1 with scores[i] (no insert involved)."""
    scores = jnp.asarray(scores, jnp.float32)
    n = scores.shape[0]
    buf = B.init(EXAMPLE, capacity or n)
    new = levels_from_ids(jnp.arange(1, n + 1))
    last = jnp.zeros((n,), jnp.int32) if last_sampled is None else jnp.asarray(last_sampled)
    filled = buf.filled.at[:n].set(True)
    return buf.replace(
        levels=jax.tree.map(lambda x, v: x.at[:n].set(v), buf.levels, new),
        scores=buf.scores.at[:n].set(scores),
        last_sampled=buf.last_sampled.at[:n].set(last.astype(jnp.int32)),
        filled=filled,
        size=filled.sum(dtype=jnp.int32),
        clock=jnp.int32(clock),
    )


# --- params -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"temperature": 0.0}, "temperature"),
        ({"staleness_coef": 1.5}, "staleness_coef"),
        ({"replay_prob": -0.1}, "replay_prob"),
        ({"min_fill_ratio": 2.0}, "min_fill_ratio"),
        ({"top_k": 0}, "top_k"),
        ({"top_k": 1.5}, "top_k"),
        ({"prioritisation": "softmax"}, "prioritisation"),
        ({"replay_schedule": "always"}, "replay_schedule"),
        ({"dedup": "yes"}, "dedup"),
        ({"temperatur": 0.3}, "temperatur"),
    ],
)
def test_params_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        B.make_buffer_params(**kwargs)


def test_numeric_params_are_traced_not_static():
    fn = jax.jit(chex.assert_max_traces(B.replay_weights, n=1))
    buf = filled_buffer([1.0, 2.0, 3.0])
    w1 = fn(buf, B.make_buffer_params(temperature=0.3, staleness_coef=0.0))
    w2 = fn(buf, B.make_buffer_params(temperature=1.0, staleness_coef=0.0))
    assert not np.allclose(w1, w2)
    # A sweep can vmap over the numeric leaves.
    params = B.make_buffer_params(temperature=jnp.array([0.3, 1.0]), staleness_coef=0.0)
    params = jax.tree.map(lambda x: jnp.broadcast_to(x, (2,)), params)
    swept = jax.vmap(B.replay_weights, in_axes=(None, 0))(buf, params)
    np.testing.assert_allclose(swept, np.stack([w1, w2]), rtol=1e-6)


# --- encoding ------------------------------------------------------------------------------


def test_level_encoding_and_equality():
    levels = levels_from_ids([5, 6, 5])
    enc = B.level_encoding(levels)
    assert enc.shape == (3, 11) and enc.dtype == jnp.float32
    np.testing.assert_array_equal(enc[0], enc[2])
    first = jax.tree.map(lambda x: x[0], levels)
    assert bool(level_sets.levels_equal(first, jax.tree.map(lambda x: x[2], levels)))
    assert not bool(level_sets.levels_equal(first, jax.tree.map(lambda x: x[1], levels)))
    np.testing.assert_array_equal(
        level_sets.pairwise_equal(levels, levels), [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
    )


# --- replay weights ------------------------------------------------------------------------


def test_rank_weights_follow_formula_and_temperature():
    buf = filled_buffer([3.0, 1.0, 2.0, -INF], capacity=6)
    for temp in (0.5, 0.3, 1.0):
        params = B.make_buffer_params(temperature=temp, staleness_coef=0.0)
        w = np.asarray(weights(buf, params))
        raw = (1.0 / np.array([1, 3, 2, 4])) ** (1.0 / temp)
        np.testing.assert_allclose(w[:4], raw / raw.sum(), rtol=1e-5)
        np.testing.assert_array_equal(w[4:], 0.0)
    cold = weights(buf, B.make_buffer_params(temperature=0.1, staleness_coef=0.0))
    hot = weights(buf, B.make_buffer_params(temperature=1.0, staleness_coef=0.0))
    assert cold.max() > hot.max()  # lower temperature is more peaked


def test_higher_score_gets_higher_rank_weight():
    for seed in range(5):
        scores = jax.random.normal(jax.random.key(seed), (7,))
        buf = filled_buffer(scores)
        w = weights(buf, B.make_buffer_params(staleness_coef=0.0))
        order = np.argsort(-np.asarray(scores))
        assert np.all(np.diff(np.asarray(w)[order]) < 0)


def test_power_and_top_k_weights():
    buf = filled_buffer([4.0, 1.0, -2.0, -INF, 1.0])
    w = weights(
        buf, B.make_buffer_params(prioritisation="power", temperature=1.0, staleness_coef=0)
    )
    np.testing.assert_allclose(w, [4 / 6, 1 / 6, 0, 0, 1 / 6], rtol=1e-6)
    w = weights(buf, B.make_buffer_params(prioritisation="top_k", top_k=2, staleness_coef=0.0))
    # Ties (1.0 at slots 1 and 4) go to the lower index.
    np.testing.assert_allclose(w, [0.5, 0.5, 0, 0, 0])
    huge = filled_buffer([1e30, 5e29, 0.0])  # no overflow to inf / inf
    w = weights(huge, B.make_buffer_params(prioritisation="power", staleness_coef=0.0))
    assert not np.isnan(np.asarray(w)).any() and w[0] > w[1] > 0 and w[2] == 0
    neg = filled_buffer([-1.0, -INF])  # nothing positive: uniform
    w = weights(neg, B.make_buffer_params(prioritisation="power", staleness_coef=0.0))
    np.testing.assert_allclose(w, [0.5, 0.5])


@pytest.mark.parametrize("prioritisation", ["rank", "power"])
def test_neg_inf_score_gets_lowest_weight(prioritisation):
    buf = filled_buffer([0.5, -INF, 2.0, 0.1])
    params = B.make_buffer_params(prioritisation=prioritisation, staleness_coef=0.0)
    w = np.asarray(weights(buf, params))
    assert not np.isnan(w).any()
    assert w[1] == w.min() and (w[1] < np.delete(w, 1)).all()
    np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-6)


def test_staleness_grows_for_unsampled_levels():
    buf = filled_buffer([5.0, 1.0, 2.0, 3.0])
    only_best = B.make_buffer_params(prioritisation="top_k", top_k=1, staleness_coef=0.0)
    stale = []
    for i in range(4):
        buf, idx, _ = sample(buf, only_best, jax.random.key(i), 2)
        np.testing.assert_array_equal(idx, [0, 0])
        stale.append(np.asarray(buf.clock - buf.last_sampled))
    stale = np.stack(stale)
    np.testing.assert_array_equal(stale[:, 0], 0)
    np.testing.assert_array_equal(stale[:, 1:], np.arange(1, 5)[:, None] * np.ones((1, 3)))
    np.testing.assert_allclose(B.staleness_weights(buf), [0, 1 / 3, 1 / 3, 1 / 3])
    mixed = B.make_buffer_params(staleness_coef=0.5)
    before = weights(filled_buffer([5.0, 1.0, 2.0, 3.0]), mixed)
    after = weights(buf, mixed)
    assert after[0] < before[0] and (after[1:] > before[1:]).all()


# --- invariants over random operation sequences ----------------------------------------------


def _random_episode(key, params, capacity=8, steps=12, batch=5):
    def step(buf, key):
        k_ids, k_scores, k_inf, k_sample, k_new = jax.random.split(key, 5)
        ids = jax.random.randint(k_ids, (batch,), 0, 20)
        scores = jax.random.normal(k_scores, (batch,))
        scores = jnp.where(jax.random.bernoulli(k_inf, 0.15, (batch,)), -jnp.inf, scores)
        levels = levels_from_ids(ids)
        buf, slots = B.insert(buf, params, levels, scores)
        stored = jax.tree.map(lambda x: x[jnp.maximum(slots, 0)], buf.levels)
        same = jax.vmap(level_sets.levels_equal)(stored, levels) | (slots < 0)
        w = B.replay_weights(buf, params)
        buf, idx, _ = B.sample(buf, params, k_sample, 3)
        buf = B.update(buf, idx, jax.random.normal(k_new, (3,)))
        dup = level_sets.pairwise_equal(buf.levels, buf.levels) & buf.filled & buf.filled[:, None]
        dup = dup & ~jnp.eye(capacity, dtype=bool)
        out = dict(size=buf.size, filled=buf.filled, w=w, idx=idx, same=same, dup=dup.any())
        return buf, out

    return jax.lax.scan(step, B.init(EXAMPLE, capacity), jax.random.split(key, steps))[1]


# "power" differs from "rank" only in score_weights, which the tests above cover.
@pytest.fixture(scope="module", params=["rank", "top_k"])
def episodes(request):
    params = B.make_buffer_params(prioritisation=request.param, top_k=3)
    keys = jax.random.split(jax.random.key(0), 48)
    return jax.device_get(jax.jit(jax.vmap(lambda k: _random_episode(k, params)))(keys))


def test_invariants_size_and_weights(episodes):
    size, filled, w = episodes["size"], episodes["filled"], episodes["w"]
    assert (size <= 8).all() and (size >= 1).all()
    np.testing.assert_array_equal(size, filled.sum(-1))
    assert not np.isnan(w).any()
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)
    assert (w[~filled] == 0).all() and (w >= 0).all()


def test_invariants_sampled_filled_and_no_duplicates(episodes):
    filled, idx = episodes["filled"], episodes["idx"]
    assert np.take_along_axis(filled, idx, axis=-1).all()
    assert episodes["same"].all()  # the returned slot holds the inserted level
    assert not episodes["dup"].any()


# --- insert ---------------------------------------------------------------------------------


def test_lowest_weighted_levels_are_replaced():
    params = B.make_buffer_params(staleness_coef=0.3)

    def case(key):
        k1, k2 = jax.random.split(key)
        buf = B.init(EXAMPLE, 6)
        buf, _ = B.insert(buf, params, levels_from_ids(jnp.arange(6)), jax.random.normal(k1, (6,)))
        buf = buf.replace(clock=jnp.int32(10), last_sampled=jax.random.randint(k2, (6,), 0, 10))
        w = B.replay_weights(buf, params)
        new = levels_from_ids(jnp.array([100, 101]))
        _, slots = B.insert(buf, params, new, jnp.array([50.0, 60.0]))
        return w, slots

    w, slots = jax.device_get(jax.jit(jax.vmap(case))(jax.random.split(jax.random.key(1), 32)))
    lowest_two = np.argsort(w, axis=1, kind="stable")[:, :2]
    np.testing.assert_array_equal(slots[:, 1], lowest_two[:, 0])  # best new -> lowest weight
    np.testing.assert_array_equal(slots[:, 0], lowest_two[:, 1])


def test_full_buffer_admits_only_levels_that_beat_the_replaced_one():
    params = B.make_buffer_params(staleness_coef=0.0)
    buf = filled_buffer([1.0, 2.0, 3.0])
    new_buf, slots = insert(buf, params, levels_from_ids([50, 51]), jnp.array([0.5, 1.5]))
    # 1.5 beats the lowest-weighted (score 1.0, slot 0); 0.5 does not beat score 2.0.
    np.testing.assert_array_equal(slots, [-1, 0])
    np.testing.assert_allclose(new_buf.scores, [1.5, 2.0, 3.0])
    assert int(new_buf.last_sampled[0]) == int(buf.clock)
    _, slots = insert(buf, params, levels_from_ids([52]), jnp.array([-INF]))
    np.testing.assert_array_equal(slots, [-1])


def test_duplicates_take_no_extra_slot():
    params = B.make_buffer_params()
    buf = B.init(EXAMPLE, 5)
    extras = B.default_extras(3).replace(best_return=jnp.array([4.0, 1.0, 0.0]))
    buf, slots = insert(buf, params, levels_from_ids([7, 8, 7]), jnp.array([1.0, 2.0, 3.0]), extras)
    assert int(buf.size) == 2 and slots[0] == slots[2] and slots[0] != slots[1]
    assert float(buf.scores[slots[0]]) == 1.0  # the first copy in the batch is used
    buf, again = insert(buf, params, levels_from_ids([8, 9]), jnp.array([9.0, 0.0]))
    assert int(buf.size) == 3 and again[0] == slots[1]
    assert float(buf.scores[slots[1]]) == 9.0
    assert float(buf.extras.best_return[slots[1]]) == 1.0  # max of old 1.0 and new -inf
    # Without dedup the copy takes its own slot.
    nodedup = B.make_buffer_params(dedup=False)
    buf, slots = insert(B.init(EXAMPLE, 5), nodedup, levels_from_ids([7, 7]), jnp.ones(2))
    assert int(buf.size) == 2 and slots[0] != slots[1]


def test_batch_larger_than_capacity_keeps_the_best():
    scores = jnp.array([3.0, 9.0, 1.0, 7.0, 5.0, 8.0, 2.0, 6.0, 4.0, 0.0])
    buf, slots = insert(
        B.init(EXAMPLE, 4), B.make_buffer_params(), levels_from_ids(jnp.arange(10)), scores
    )
    assert int(buf.size) == 4
    np.testing.assert_array_equal(np.sort(np.asarray(buf.scores)), [6.0, 7.0, 8.0, 9.0])
    kept = np.asarray(scores) >= 6.0
    assert (np.asarray(slots)[~kept] == -1).all() and (np.asarray(slots)[kept] >= 0).all()


def test_capacity_one():
    params = B.make_buffer_params()
    buf, slots = insert(
        B.init(EXAMPLE, 1), params, levels_from_ids([1, 2, 3]), jnp.array([1.0, 5.0, 3.0])
    )
    np.testing.assert_array_equal(slots, [-1, 0, -1])
    _, slots = insert(buf, params, levels_from_ids([4]), jnp.array([4.0]))
    np.testing.assert_array_equal(slots, [-1])
    buf, slots = insert(buf, params, levels_from_ids([4]), jnp.array([6.0]))
    np.testing.assert_array_equal(slots, [0])
    np.testing.assert_allclose(weights(buf, params), [1.0])
    buf, idx, levels = sample(buf, params, jax.random.key(0), 3)
    np.testing.assert_array_equal(idx, [0, 0, 0])
    np.testing.assert_array_equal(levels.pos, np.repeat(levels_from_ids([4]).pos, 3, axis=0))


# --- sample / update -------------------------------------------------------------------------


def test_sampling_frequency_matches_replay_weights():
    buf = filled_buffer([0.3, 2.0, -1.0, 1.0, 0.5, -INF], last_sampled=[0, 3, 1, 4, 2, 0], clock=5)
    params = B.make_buffer_params(temperature=1.0, staleness_coef=0.3)
    w = np.asarray(weights(buf, params))
    n = 20000
    _, idx, _ = jax.jit(B.sample, static_argnums=3)(buf, params, jax.random.key(3), n)
    counts = np.bincount(np.asarray(idx), minlength=6)
    chi2 = ((counts - n * w) ** 2 / (n * w)).sum()
    assert chi2 < 25.0, (counts, n * w)  # 5 dof: p < 1e-4 for a correct sampler


def test_sample_only_filled_slots_and_empty_is_well_defined():
    params = B.make_buffer_params()
    buf = filled_buffer([1.0, 2.0], capacity=5)
    _, idx, _ = sample(buf, params, jax.random.key(0), 64)
    assert set(np.asarray(idx).tolist()) <= {0, 1}
    empty = B.init(EXAMPLE, 5)
    w = weights(empty, params)
    np.testing.assert_array_equal(w, 0.0)
    after, idx, levels = sample(empty, params, jax.random.key(0), 4)
    np.testing.assert_array_equal(idx, [0, 0, 0, 0])
    np.testing.assert_array_equal(levels.walls[0], EXAMPLE.walls)
    assert int(after.clock) == 0 and not bool(after.filled.any())


def test_update_scatter_last_occurrence_wins_and_invalid_ignored():
    buf = filled_buffer([1.0, 2.0, 3.0], capacity=4)
    extras = B.default_extras(4).replace(num_edits=jnp.array([1, 2, 3, 4]))
    out = update(buf, jnp.array([0, 2, 0, -1]), jnp.array([10.0, 20.0, 30.0, 40.0]), extras)
    np.testing.assert_allclose(out.scores, [30.0, 2.0, 20.0, 0.0])
    np.testing.assert_array_equal(out.extras.num_edits, [3, 0, 2, 0])
    out = update(buf, jnp.array([3, 1]), jnp.array([5.0, jnp.nan]))  # slot 3 is empty
    np.testing.assert_allclose(out.scores, [1.0, -INF, 3.0, 0.0])
    assert not bool(out.filled[3])


def test_jit_and_no_jit_agree():
    params = B.make_buffer_params(staleness_coef=0.4)

    def step(buf, key):
        k1, k2, k3 = jax.random.split(key, 3)
        ids = jax.random.randint(k1, (4,), 0, 12)
        buf, _ = B.insert(buf, params, levels_from_ids(ids), jax.random.normal(k2, (4,)))
        buf, idx, _ = B.sample(buf, params, k3, 3)
        return B.update(buf, idx, jax.random.normal(k1, (3,)))

    eager = jitted = B.init(EXAMPLE, 6)
    jit_step = jax.jit(step)
    for key in jax.random.split(jax.random.key(7), 2):  # the 2nd insert evicts
        eager, jitted = step(eager, key), jit_step(jitted, key)
    for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


# --- should_replay ---------------------------------------------------------------------------


_replay_draws = jax.jit(jax.vmap(B.should_replay, in_axes=(None, None, 0)))


def _replay_rate(params, size, capacity=10, n=4000):
    filled = jnp.arange(capacity) < size  # only size and filled matter here
    buf = B.init(EXAMPLE, capacity).replace(filled=filled, size=filled.sum(dtype=jnp.int32))
    return float(np.mean(_replay_draws(buf, params, jax.random.split(jax.random.key(size), n))))


def test_should_replay_respects_min_fill_and_schedules():
    always = B.make_buffer_params(replay_prob=1.0, min_fill_ratio=0.5)
    for size in range(5):
        assert _replay_rate(always, size) == 0.0
    assert _replay_rate(always, 5) == 1.0
    assert abs(_replay_rate(B.make_buffer_params(replay_prob=0.3), 6) - 0.3) < 0.05
    prop = B.make_buffer_params(replay_schedule="proportionate", min_fill_ratio=0.0)
    assert abs(_replay_rate(prop, 8) - 0.5) < 0.05  # min(fill 0.8, replay_prob 0.5), as dcd
    prop = B.make_buffer_params(
        replay_schedule="proportionate", min_fill_ratio=0.0, replay_prob=1.0
    )
    assert abs(_replay_rate(prop, 8) - 0.8) < 0.05
    assert _replay_rate(prop, 0) == 0.0  # never replay an empty buffer


def test_level_clock_samples_one_level_after_another():
    # Staleness only: slot 0 is the only stale slot, so the first draw takes it; with the
    # per-level clock the second draw sees it fresh (weight 0) and takes another slot, while
    # the per-batch clock draws both from the same distribution (slot 0 twice).
    params = dict(staleness_coef=1.0, prioritisation="rank")
    buf = filled_buffer([1.0, 2.0, 3.0, 4.0], last_sampled=[0, 5, 5, 5], clock=5)
    per_batch = B.make_buffer_params(**params)
    per_level = B.make_buffer_params(staleness_clock="level", **params)
    for seed in range(5):
        key = jax.random.key(seed)
        out, idx, _ = B.sample(buf, per_batch, key, 2)
        np.testing.assert_array_equal(idx, [0, 0])
        assert int(out.clock) == 6
        out, idx, _ = B.sample(buf, per_level, key, 2)
        assert int(idx[0]) == 0 and int(idx[1]) != 0
        assert int(out.clock) == 7
        assert int(out.last_sampled[0]) == 6 and int(out.last_sampled[idx[1]]) == 7


def test_level_clock_ticks_per_insertion_attempt():
    per_level = B.make_buffer_params(staleness_clock="level")
    buf = B.init(EXAMPLE, 4).replace(clock=jnp.int32(10))
    buf, slots = B.insert(buf, per_level, levels_from_ids([7, 8, 9]), jnp.array([1.0, 3.0, 2.0]))
    assert int(buf.clock) == 13  # three attempts
    # The level at batch index i was attempted at tick 10 + i + 1.
    np.testing.assert_array_equal(np.asarray(buf.last_sampled)[np.asarray(slots)], [11, 12, 13])
    # A duplicate is an attempt too, and counts as just seen.
    buf, slots = B.insert(buf, per_level, levels_from_ids([5, 8]), jnp.array([0.5, 4.0]))
    assert int(buf.clock) == 15 and int(buf.last_sampled[slots[1]]) == 15
    per_batch = B.make_buffer_params()
    buf = B.init(EXAMPLE, 4).replace(clock=jnp.int32(10))
    buf, slots = B.insert(buf, per_batch, levels_from_ids([7, 8]), jnp.array([1.0, 3.0]))
    assert int(buf.clock) == 10
    np.testing.assert_array_equal(np.asarray(buf.last_sampled)[np.asarray(slots)], [10, 10])
