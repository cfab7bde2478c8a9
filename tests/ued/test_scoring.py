"""Known-answer tests of the score functions on tiny hand-built rollouts (T = 4, N = 3)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ued.core import scoring
from ued.core.types import Rollout

INF = np.inf


def make_rollout(rewards, dones, successes=None, values=None, advantages=None) -> Rollout:
    rewards = jnp.asarray(rewards, jnp.float32)
    t, n = rewards.shape
    zeros = jnp.zeros((t, n), jnp.float32)
    values = zeros if values is None else jnp.asarray(values, jnp.float32)
    advantages = zeros if advantages is None else jnp.asarray(advantages, jnp.float32)
    successes = jnp.zeros((t, n), bool) if successes is None else jnp.asarray(successes, bool)
    return Rollout(
        obs=zeros,
        actions=jnp.zeros((t, n), jnp.int32),
        log_probs=zeros,
        values=values,
        rewards=rewards,
        dones=jnp.asarray(dones, bool),
        successes=successes,
        last_value=jnp.zeros((n,), jnp.float32),
        advantages=advantages,
        targets=advantages + values,
        init_carry=(),
    )


@pytest.fixture(scope="module")
def rollout() -> Rollout:
    # Columns are levels.
    # Level 0: episodes [0, 1] (return 1, solved) and [0, 2] (return 2, failed).
    # Level 1: no episode finishes.
    # Level 2: one episode of return 0 finishes at t = 0 (solved); the 5 after it is unfinished.
    F, T = False, True
    return make_rollout(
        rewards=[[0, 1, 0], [1, 1, 0], [0, 1, 0], [2, 1, 5]],
        dones=[[F, F, T], [T, F, F], [F, F, F], [T, F, F]],
        successes=[[F, F, T], [T, F, F], [F, F, F], [F, F, F]],
        values=[[0.5, 1, 0], [0.5, 2, 1], [0.5, 3, 0], [0.5, 4, 1]],
        advantages=[[1, -1, 0.5], [-1, -2, 0.5], [2, -3, 0.5], [-2, -4, 0.5]],
    )


def test_episode_stats_known_answer(rollout):
    stats = scoring.episode_stats(rollout)
    np.testing.assert_array_equal(stats["num_episodes"], [2, 0, 1])
    np.testing.assert_allclose(stats["mean_return"], [1.5, 0.0, 0.0])
    np.testing.assert_allclose(stats["max_return"], [2.0, -INF, 0.0])
    np.testing.assert_allclose(stats["success_rate"], [0.5, 0.0, 1.0])
    for value in stats.values():
        assert not np.isnan(np.asarray(value)).any()


def test_best_return_update_keeps_the_max(rollout):
    best = scoring.best_return_update(jnp.array([5.0, -INF, -1.0]), rollout)
    np.testing.assert_allclose(best, [5.0, -INF, 0.0])


def test_positive_value_loss(rollout):
    pvl = scoring.positive_value_loss(scoring.make_score_inputs(rollout))
    # Level 1 has no positive advantage: PVL is 0.
    np.testing.assert_allclose(pvl, [0.75, 0.0, 0.5])


def test_l1_value_loss(rollout):
    np.testing.assert_allclose(
        scoring.l1_value_loss(scoring.make_score_inputs(rollout)), [1.5, 2.5, 0.5]
    )


def test_max_mc_uses_best_of_recorded_and_rollout(rollout):
    inputs = scoring.make_score_inputs(rollout, best_return=jnp.array([-INF, -INF, 3.0]))
    # Level 0: best 2 from the rollout; level 1: nothing finished, nothing known -> -inf;
    # level 2: recorded 3 beats the rollout's 0.
    np.testing.assert_allclose(scoring.max_mc(inputs), [1.5, -INF, 2.5])
    inputs = scoring.make_score_inputs(rollout, best_return=jnp.array([10.0, 10.0, -INF]))
    np.testing.assert_allclose(scoring.max_mc(inputs), [9.5, 7.5, -0.5])


def test_learnability_known_answer(rollout):
    np.testing.assert_allclose(
        scoring.learnability(scoring.make_score_inputs(rollout)), [0.25, -INF, 0.0]
    )


def test_learnability_peaks_at_half():
    # Every step ends an episode; level i solves i of its 4 episodes.
    wins = np.arange(4)[:, None] < np.arange(5)[None, :]
    r = make_rollout(np.zeros((4, 5)), np.ones((4, 5), bool), successes=wins)
    score = np.asarray(scoring.learnability(scoring.make_score_inputs(r)))
    np.testing.assert_allclose(score, [0.0, 0.1875, 0.25, 0.1875, 0.0])
    assert score.argmax() == 2


def test_novelty_k_nearest():
    r = make_rollout(np.zeros((4, 2)), np.zeros((4, 2), bool))
    refs = jnp.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0], [1000.0, 0.0]])
    mask = jnp.array([True, True, True, False])
    x = jnp.array([[0.0, 0.0], [6.0, 8.0]])
    inputs = scoring.make_score_inputs(r, level_encoding=x, reference_encoding=refs)
    inputs = inputs.replace(reference_mask=mask)
    np.testing.assert_allclose(scoring.novelty(inputs, k=2), [2.5, 2.5], rtol=1e-6)
    np.testing.assert_allclose(scoring.novelty(inputs, k=3), [5.0, 5.0], rtol=1e-6)
    # k larger than the number of real references: the masked one is ignored.
    np.testing.assert_allclose(scoring.novelty(inputs, k=4), [5.0, 5.0], rtol=1e-6)
    # No real reference, or none at all: 0.
    no_refs = inputs.replace(reference_mask=jnp.zeros((4,), bool))
    np.testing.assert_array_equal(scoring.novelty(no_refs), [0.0, 0.0])
    empty = scoring.make_score_inputs(r, level_encoding=x)
    np.testing.assert_array_equal(scoring.novelty(empty), [0.0, 0.0])


def test_mixing_by_weight(rollout):
    inputs = scoring.make_score_inputs(rollout)
    mixed = scoring.make_score({"positive_value_loss": 1.0, "l1_value_loss": 2.0})
    np.testing.assert_allclose(mixed(inputs), [3.75, 5.0, 1.5])
    np.testing.assert_allclose(jax.jit(mixed)(inputs), [3.75, 5.0, 1.5])


@pytest.mark.parametrize("weight", [1.0, -1.0])
def test_mixing_with_neg_inf_gives_neg_inf(rollout, weight):
    inputs = scoring.make_score_inputs(rollout)
    mixed = scoring.make_score({"learnability": weight, "positive_value_loss": 1.0})
    out = np.asarray(mixed(inputs))
    assert not np.isnan(out).any()
    np.testing.assert_allclose(out, [0.25 * weight + 0.75, -INF, 0.5])


def test_zero_weight_is_dropped(rollout):
    inputs = scoring.make_score_inputs(rollout)
    mixed = scoring.make_score({"learnability": 0.0, "positive_value_loss": 1.0})
    np.testing.assert_allclose(mixed(inputs), [0.75, 0.0, 0.5])


def test_make_score_rejects_bad_weights():
    with pytest.raises(ValueError, match="known scores.*positive_value_loss"):
        scoring.make_score({"regret": 1.0})
    with pytest.raises(ValueError, match="finite"):
        scoring.make_score({"max_mc": float("nan")})
    with pytest.raises(ValueError, match="nonzero"):
        scoring.make_score({"max_mc": 0.0})


def test_registry_scores_return_float32_per_level(rollout):
    inputs = scoring.make_score_inputs(rollout)
    for name, fn in scoring.SCORES.items():
        out = jax.jit(fn)(inputs)
        assert out.shape == (3,), name
        assert out.dtype == jnp.float32, name
        assert not np.isnan(np.asarray(out)).any(), name


def test_per_episode_scores_average_each_finished_episode(rollout):
    # Level 0: episodes [0, 1] and [2, 3]; level 1: none finished (-inf, where the per-step
    # versions give 0 and 7.5); level 2: one episode of one step, the rest unfinished.
    inputs = scoring.make_score_inputs(rollout, best_return=jnp.array([-INF, 10.0, 3.0]))
    np.testing.assert_allclose(scoring.positive_value_loss_per_episode(inputs), [0.75, -INF, 0.5])
    np.testing.assert_allclose(scoring.max_mc_per_episode(inputs), [1.5, -INF, 3.0])
    assert float(scoring.max_mc(inputs)[2]) == 2.5  # per step: the unfinished steps count


def test_per_episode_weights_episodes_not_steps():
    # One level: a 1-step episode (advantage 4), then a 4-step one (advantages 1): the mean
    # of the episodes' averages is (4 + 1) / 2, the per-step mean (4 + 4) / 5.
    F, T = False, True
    one = make_rollout(
        rewards=[[0]] * 5, dones=[[T], [F], [F], [F], [T]], advantages=[[4], [1], [1], [1], [1]]
    )
    inputs = scoring.make_score_inputs(one)
    np.testing.assert_allclose(scoring.positive_value_loss_per_episode(inputs), [2.5])
    np.testing.assert_allclose(scoring.positive_value_loss(inputs), [1.6])
    mean, count = scoring.per_episode_mean(one.dones, one.advantages)
    np.testing.assert_allclose(mean, [2.5])
    np.testing.assert_array_equal(count, [2])
