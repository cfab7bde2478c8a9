"""Known answers for the suite's statistics, each computed independently in the test."""

import itertools

import numpy as np
import pytest

from ued import stats


def test_iqm_is_the_mean_of_the_middle_half():
    scores = np.array([[3.0, 1.0, 4.0, 1.0], [5.0, 9.0, 2.0, 6.0]])
    # Sorted: 1 1 2 3 4 5 6 9; cutting 2 from each end leaves 2 3 4 5.
    assert stats.iqm(scores) == pytest.approx(3.5)
    ten = np.arange(10.0)[::-1]  # floor(10 / 4) = 2 cut from each end: 2..7
    assert stats.iqm(ten) == pytest.approx(np.mean([2, 3, 4, 5, 6, 7]))
    batch = np.stack([scores.ravel(), scores.ravel() * 2])
    np.testing.assert_allclose(stats.iqm(batch, axis=-1), [3.5, 7.0])


def test_probability_of_improvement_by_pair_counting():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 4, size=(5, 3)).astype(float)  # small integers: ties happen
    y = rng.integers(0, 4, size=(4, 3)).astype(float)
    per_task = []
    for t in range(3):
        wins = sum(
            1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(x[:, t], y[:, t])
        )
        per_task.append(wins / (5 * 4))
    assert stats.probability_of_improvement(x, y) == pytest.approx(np.mean(per_task))
    assert stats.probability_of_improvement(y, x) == pytest.approx(1 - np.mean(per_task))
    assert stats.probability_of_improvement(x, x) == pytest.approx(0.5)


def test_cvar_and_performance_profile():
    values = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 1.0])
    assert stats.cvar(values, 0.1) == pytest.approx(0.1)  # the worst one
    assert stats.cvar(values, 0.3) == pytest.approx((0.1 + 0.2 + 0.3) / 3)
    assert stats.cvar(values[:3], 0.1) == pytest.approx(0.1)  # at least one value
    profile = stats.performance_profile(values, [0.0, 0.45, 1.0])
    np.testing.assert_allclose(profile, [1.0, 0.6, 0.0])


def test_stratified_bootstrap_resamples_each_task_on_its_own():
    # Runs are anti-correlated across the two tasks: every run's mean is 0.5, so resampling
    # whole runs would give [0.5, 0.5]. Resampling each task's column on its own gives task
    # means in {0, 0.5, 1} (1/4, 1/2, 1/4) independently, so the mean is 0 or 1 with
    # probability 1/16 each, more than the 2.5% tails: the interval is [0, 1].
    x = np.array([[0.0, 1.0], [1.0, 0.0]])
    agg = stats.aggregate(x, resamples=4000)
    assert agg["mean"] == pytest.approx(0.5)
    assert agg["mean_ci"] == pytest.approx([0.0, 1.0])


def test_bootstrap_interval_matches_a_brute_force_stratified_bootstrap():
    rng = np.random.default_rng(0)
    x = rng.beta(2, 3, size=(6, 4))
    reps = 20000
    # Each resample draws 6 runs with replacement for each task separately.
    rows = rng.integers(0, 6, size=(reps, 6, 4))
    draws = x[rows, np.arange(4)].mean(axis=(1, 2))
    expected = np.percentile(draws, [2.5, 97.5])
    low, high = stats.aggregate(x, resamples=reps)["mean_ci"]
    assert low == pytest.approx(expected[0], abs=0.01)
    assert high == pytest.approx(expected[1], abs=0.01)
    assert low < x.mean() < high


def test_improvement_interval_and_degenerate_inputs():
    rng = np.random.default_rng(1)
    better = rng.normal(1.0, 0.3, size=(5, 10))
    worse = rng.normal(0.0, 0.3, size=(5, 10))
    result = stats.improvement(better, worse)
    assert result["value"] > 0.95 and result["ci"][0] > 0.8
    same = stats.improvement(better, better)
    assert same["value"] == pytest.approx(0.5)
    assert same["ci"][0] < 0.5 < same["ci"][1]
    one_seed = stats.aggregate(better[:1])
    assert np.isnan(one_seed["mean_ci"]).all() and one_seed["mean"] == pytest.approx(
        better[0].mean()
    )
    constant = stats.aggregate(np.full((3, 2), 0.25))
    assert constant["iqm_ci"] == pytest.approx([0.25, 0.25])
    with pytest.raises(ValueError, match="same tasks"):
        stats.probability_of_improvement(better, worse[:, :3])
