"""Known answers for the suite's statistics, each computed independently in the test.

The coverage tests simulate whole suites: levels with a difficulty (logits), seeds with a
shared effect on every level (the seed's training luck), episodes as binomial draws. The
seed-level interval must cover the true mean in at least 90% of 500 simulated experiments;
the per-level stratified bootstrap (``rliable``'s, for separately trained tasks) does not.
"""

import itertools

import numpy as np
import pytest
from scipy.special import expit

from ued.evaluation import stats

GH_X, GH_W = np.polynomial.hermite_e.hermegauss(60)
GH_W = GH_W / GH_W.sum()  # E[f(Z)], Z ~ N(0, 1), by Gauss-Hermite quadrature


def expected(f):
    return float(sum(w * f(x) for x, w in zip(GH_X, GH_W, strict=True)))


def simulate(rng, logits, seeds, episodes, seed_sd):
    """(seeds, levels) solve rates: each seed shifts every level's logit by one draw."""
    shift = rng.normal(0.0, seed_sd, (seeds, 1))
    return rng.binomial(episodes, expit(logits[None] + shift)) / episodes


def mean_stat(m):
    return m.mean(axis=(1, 2))


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


def test_the_old_per_level_interval_is_a_stratified_bootstrap():
    rng = np.random.default_rng(0)
    x = rng.beta(2, 3, size=(6, 4))
    reps = 20000
    # Each resample draws 6 runs with replacement for each task separately.
    rows = rng.integers(0, 6, size=(reps, 6, 4))
    draws = x[rows, np.arange(4)].mean(axis=(1, 2))
    expected = np.percentile(draws, [2.5, 97.5])
    low, high = stats.stratified_bootstrap_ci(lambda m: m.mean(axis=(-2, -1)), [x], resamples=reps)
    assert low == pytest.approx(expected[0], abs=0.01)
    assert high == pytest.approx(expected[1], abs=0.01)
    assert low < x.mean() < high


def test_seed_interval_covers_with_a_shared_seed_effect_and_the_per_level_method_does_not():
    # The audit's setting: 100 fixed levels, 3 seeds, 10 episodes, seed effect sd 0.6 logits.
    rng = np.random.default_rng(2021)
    logits = rng.normal(1.5, 1.2, 100)
    truth = expected(lambda z: expit(logits + 0.6 * z).mean())
    new, old, widths = 0, 0, ([], [])
    for i in range(500):
        x = simulate(rng, logits, 3, 10, 0.6)
        low, high = stats.seed_interval(mean_stat, [x], resamples=400, seed=i)
        new += low <= truth <= high
        widths[0].append(high - low)
        if i < 100:  # scipy's per-column bootstrap is slow: 100 experiments show it
            low, high = stats.stratified_bootstrap_ci(
                lambda m: m.mean(axis=(-2, -1)), [x], resamples=400, seed=i
            )
            old += low <= truth <= high
            widths[1].append(high - low)
    assert new / 500 >= 0.90  # measured: 0.93
    assert old / 100 <= 0.5  # measured: about 0.2; the intervals are 10x too narrow
    assert np.mean(widths[0]) > 5 * np.mean(widths[1])


def test_two_level_interval_covers_the_level_population_mean():
    # Random levels drawn afresh in each experiment: the target is the generator's mean.
    rng = np.random.default_rng(7)
    truth = expected(lambda z: expit(1.5 + np.hypot(0.6, 1.2) * z))
    covered = 0
    for i in range(500):
        x = simulate(rng, rng.normal(1.5, 1.2, 100), 3, 10, 0.6)
        low, high = stats.seed_interval(mean_stat, [x], levels=True, resamples=400, seed=i)
        covered += low <= truth <= high
    assert covered / 500 >= 0.90  # measured: 0.98 (conservative)


def test_seed_interval_of_the_mean_is_students_t_over_the_seed_means():
    x = np.array([[0.2, 0.4, 0.9], [0.5, 0.5, 0.8], [0.1, 0.3, 0.2], [0.6, 0.9, 1.0]])
    seed_means = x.mean(axis=1)
    half = 3.182446305 * seed_means.std(ddof=1) / 2  # t(3) 97.5%, sqrt(4) = 2
    low, high = stats.seed_interval(mean_stat, [x], resamples=20000)
    assert low == pytest.approx(x.mean() - half, abs=0.01)
    assert high == pytest.approx(x.mean() + half, abs=0.01)
    agg = stats.aggregate(x, resamples=2000)
    assert agg["runs"] == 4 and agg["seed_means"] == pytest.approx(seed_means.tolist())
    assert np.isnan(stats.aggregate(x[:1])["mean_ci"]).all()  # one seed: no interval
    assert stats.aggregate(np.full((3, 2), 0.25))["iqm_ci"] == pytest.approx([0.25, 0.25])
    assert stats.aggregate(np.ones((3, 4)) - 1e-3 * np.eye(3, 4), bounds=(0, 1))["mean_ci"][1] <= 1


def test_seed_bootstrap_resamples_whole_rows_jointly():
    # Anti-correlated across levels, every seed's mean is 0.5: resampling whole rows keeps it
    # (the stratified bootstrap of the same matrix spans [0, 1]).
    x = np.array([[0.0, 1.0], [1.0, 0.0]])
    reps = stats.bootstrap_replicates(mean_stat, [x], resamples=500)
    assert np.all(reps == 0.5)
    assert stats.stratified_bootstrap_ci(
        lambda m: m.mean(axis=(-2, -1)), [x], resamples=4000
    ) == pytest.approx((0.0, 1.0))
    # Two matrices of one experiment share their rows; the two-level bootstrap their columns.
    a = np.arange(6.0).reshape(2, 3)
    reps = stats.bootstrap_replicates(
        lambda p, q: (p == q - 10).all(axis=(1, 2)).astype(float), [a, a + 10], levels=True
    )
    assert np.all(reps == 1.0)


def test_probability_of_improvement_over_seed_pairs():
    x, y = [0.9, 0.8, 0.7], [0.75, 0.6]
    # pairs: .9>.75 .9>.6 .8>.75 .8>.6 .7<.75 .7>.6: 5 of 6
    poi = stats.probability_of_improvement_seeds(x, y)
    assert poi["value"] == pytest.approx(5 / 6) and poi["pairs"] == 6
    separated = stats.probability_of_improvement_seeds([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])
    assert separated["value"] == 0.0 and separated["p_value"] == pytest.approx(2 / 252)
    assert stats.probability_of_improvement_seeds([1, 1], [1, 1])["value"] == 0.5


def test_difference_is_welch_over_the_seed_means():
    rng = np.random.default_rng(3)
    x, y = rng.uniform(size=(5, 20)), rng.uniform(size=(4, 20)) + 0.2
    mx, my = x.mean(axis=1), y.mean(axis=1)
    welch = stats.difference(x, y)
    ref = __import__("scipy").stats.ttest_ind(mx, my, equal_var=False)
    low, high = ref.confidence_interval(0.95)
    assert welch["value"] == pytest.approx(x.mean() - y.mean())
    assert welch["ci"] == pytest.approx([low, high])
    sampled = stats.difference(x, y, levels=True, resamples=1000)
    assert sampled["ci"][1] - sampled["ci"][0] > 0


def test_cvar_estimators_are_biased_in_opposite_directions():
    # 100 levels at solve rates near 0.9, 10 episodes a play: the same-play CVaR picks the
    # unlucky levels (low), the independent-play one ranks on noise (high); about 0.05 each.
    rng = np.random.default_rng(5)
    same, independent = [], []
    for _ in range(400):
        p = expit(rng.normal(3.0, 1.5, 100))
        a, b = rng.binomial(10, p) / 10, rng.binomial(10, p) / 10
        truth = np.sort(p)[:10].mean()
        same.append(stats.cvar(a, 0.1) - truth)
        independent.append(float(stats.cvar_independent(a, b, 0.1)) - truth)
    assert -0.08 < np.mean(same) < -0.03
    assert 0.03 < np.mean(independent) < 0.08
    # Per seed, then over seeds: the worst level of each row by the first play.
    rank = np.array([[0.1, 0.5, 0.9], [0.9, 0.2, 0.4]])
    measure = np.array([[0.3, 0.0, 0.0], [0.0, 0.6, 0.0]])
    agg = stats.cvar_aggregate(rank, measure, 0.1, resamples=200)
    assert agg["seeds"] == [0.3, 0.6] and agg["mean"] == pytest.approx(0.45)
