"""Aggregates of RL results over training seeds, with intervals that treat the seed as the unit.

A suite scores each trained seed on the same levels, so one experiment on one level set is a
(seeds, levels) matrix. Its rows are the independent units: the levels are played by the same
few trained agents, and a seed that trained well scores well on every level. Resampling each
level's column on its own (``rliable``'s stratified bootstrap, ``stratified_bootstrap_ci``
below, made for tasks that are separately trained runs) averages that shared seed effect
away: in a simulation with 3 seeds and 100 levels its nominal 95% interval covered the true
mean about 40% of the time (``tests/ued/test_stats.py``). Here:

- **Seed bootstrap.** Whole rows are resampled, jointly across the set's levels (and across
  every matrix of one experiment, e.g. two independent plays of the same levels).
- **Two-level bootstrap** (``levels=True``), for a set whose levels are a sample of a
  population (N random levels of a generator): seeds are resampled, then the levels (the
  same level indices for every seed and every matrix).
- **The interval.** With 3 to 5 seeds no percentile bootstrap can cover: the bootstrap
  distribution of a mean of n values has (n - 1) / n of the true variance and its
  percentiles are the few distinct resample means (with 3 seeds the percentile interval is
  at best the range of the seed means, which misses the true mean 25% of the time). The
  interval is therefore the statistic +- ``t(n - 1)`` x its bootstrap standard error,
  rescaled by sqrt(n / (n - 1)): for the mean over fixed levels this is exactly Student's
  t interval over the seeds' means; for IQM, CVaR and the two-level bootstrap it is the same
  construction with the bootstrap's standard error. Probabilities are clipped to [0, 1].
- **Probability of improvement** over seed pairs: P(X > Y) + P(X = Y) / 2 over all pairs
  of one experiment's per-seed aggregate X and another's Y, with the exact two-sided
  Mann-Whitney p-value of the seeds (n x m pairs; 5 vs 5 seeds cannot reach p < 0.008).
- **Difference of means** with a Welch interval over seeds (levels resampled in pairs for
  both experiments when they are a sample): "separates" means this interval excludes 0.

Also: the interquartile mean (IQM: the mean of the middle 50% of all (seed, level) values,
as ``rliable``), performance profiles, and CVaR (``cvar``; ``cvar_independent`` ranks the
levels on one play and measures them on another).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 2000
_CHUNK = 250  # bootstrap replicates computed at once (bounds memory for large sets)


def _matrix(scores) -> np.ndarray:
    """Scores as a float64 (runs, tasks) matrix; a vector is one task."""
    x = np.asarray(scores, np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"scores must be a non-empty (runs, tasks) matrix, got shape {x.shape}")
    return x


def mean(scores, axis=None) -> np.ndarray:
    """The mean of all scores (along ``axis`` of a stacked batch)."""
    return np.mean(scores, axis=axis)


def iqm(scores, axis=None) -> np.ndarray:
    """Interquartile mean: the mean of the scores left after cutting the lowest and the
    highest 25% (``floor(n / 4)`` each side), as ``rliable`` computes it."""
    if axis is None:
        return stats.trim_mean(np.ravel(scores), 0.25)
    return stats.trim_mean(scores, 0.25, axis=axis)


def performance_profile(scores, thresholds) -> np.ndarray:
    """The fraction of all scores strictly above each threshold."""
    x = np.ravel(np.asarray(scores, np.float64))
    return (x[None, :] > np.asarray(thresholds, np.float64)[:, None]).mean(axis=1)


def cvar(values, fraction: float) -> float:
    """Mean of the worst ``fraction`` of ``values`` (at least one), as
    ``ued.evaluation.evaluate.cvar``. Ranked and measured on the same values: biased low when
    the values are noisy estimates (the unlucky levels are picked); see ``cvar_independent``."""
    values = np.sort(np.ravel(np.asarray(values, np.float64)))
    k = max(1, int(round(fraction * values.size)))
    return float(values[:k].mean())


def cvar_independent(rank_by, measure, fraction: float, axis: int = -1) -> np.ndarray:
    """CVaR ranked on one play and measured on an independent one (SFL's estimator, as
    ``ued.evaluation.evaluate.unbiased_cvar``), along ``axis`` of any batch.

    The worst ``fraction`` of levels (at least one) by ``rank_by`` are scored by their mean
    ``measure``. Independence removes the same-play estimator's selection of unlucky
    episodes, but ranking on a noisy play also picks some levels that are not among the
    truly worst: the estimate is biased *high* for the true worst fraction (about +0.05 at
    10 episodes per level and solve rates near 0.9 in ued's simulations; the same-play one is
    about 0.05 low). More episodes per play shrink both biases.
    """
    rank_by = np.moveaxis(np.asarray(rank_by, np.float64), axis, -1)
    measure = np.moveaxis(np.asarray(measure, np.float64), axis, -1)
    k = max(1, int(round(fraction * rank_by.shape[-1])))
    order = np.argsort(rank_by, axis=-1, kind="stable")[..., :k]
    return np.take_along_axis(measure, order, axis=-1).mean(axis=-1)


# --- seed and two-level bootstrap ------------------------------------------------------------


def bootstrap_replicates(
    statistic: Callable[..., np.ndarray],
    matrices: Sequence,
    levels: bool = False,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> np.ndarray:
    """(resamples,) replicates of ``statistic(*matrices)`` under a seed bootstrap.

    Every matrix is (seeds, levels) with the same shape (e.g. two plays of the same levels
    by the same seeds): each replicate resamples whole rows with replacement, the same rows
    for every matrix; with ``levels`` it then resamples the columns (the same columns for
    every row and matrix): the two-level bootstrap. ``statistic`` takes the matrices with a
    leading batch axis, ``(B, seeds, levels)``, and returns ``(B,)``.
    """
    mats = [_matrix(m) for m in matrices]
    shape = mats[0].shape
    if any(m.shape != shape for m in mats):
        raise ValueError(f"matrices of one bootstrap need one shape, got {[m.shape for m in mats]}")
    n, num_levels = shape
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, resamples, _CHUNK):
        b = min(_CHUNK, resamples - start)
        rows = rng.integers(0, n, size=(b, n))
        cols = rng.integers(0, num_levels, size=(b, num_levels)) if levels else None
        batch = []
        for m in mats:
            r = m[rows]  # (b, n, L)
            if cols is not None:
                r = np.take_along_axis(r, cols[:, None, :].repeat(n, axis=1), axis=2)
            batch.append(r)
        out.append(np.asarray(statistic(*batch), np.float64).reshape(b))
    return np.concatenate(out)


def t_quantile(df: float, confidence: float = CONFIDENCE) -> float:
    return float(stats.t.ppf(0.5 + confidence / 2, df))


def _clip(low: float, high: float, bounds) -> tuple[float, float]:
    if bounds is None:
        return float(low), float(high)
    return float(np.clip(low, *bounds)), float(np.clip(high, *bounds))


def seed_interval(
    statistic: Callable[..., np.ndarray],
    matrices: Sequence,
    levels: bool = False,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
    bounds: tuple[float, float] | None = None,
) -> tuple[float, float]:
    """Interval of ``statistic(*matrices)`` (see ``bootstrap_replicates`` for the
    arguments): the statistic +- t(n - 1) x its seed (or two-level) bootstrap standard
    error x sqrt(n / (n - 1)), clipped to ``bounds``. One seed gives ``(nan, nan)``."""
    mats = [_matrix(m) for m in matrices]
    n = mats[0].shape[0]
    if n < 2:
        return float("nan"), float("nan")
    value = float(np.asarray(statistic(*[m[None] for m in mats])).reshape(-1)[0])
    reps = bootstrap_replicates(statistic, mats, levels, resamples, seed)
    se = float(np.std(reps, ddof=1)) * np.sqrt(n / (n - 1))
    half = t_quantile(n - 1, confidence) * se
    return _clip(value - half, value + half, bounds)


def _batched(fn: Callable) -> Callable[[np.ndarray], np.ndarray]:
    # A statistic over all seeds and levels of a (B, seeds, levels) batch.
    return lambda m: fn(m.reshape(m.shape[0], -1), axis=-1)


def aggregate(
    scores,
    seed: int = 0,
    resamples: int = RESAMPLES,
    levels: bool = False,
    bounds: tuple[float, float] | None = None,
) -> dict[str, object]:
    """Mean and IQM of a (seeds, levels) matrix with their 95% intervals (seed bootstrap;
    two-level with ``levels``): ``{"mean", "mean_ci", "iqm", "iqm_ci", "runs", "tasks",
    "seed_means"}``; ``runs`` is the number of seeds."""
    x = _matrix(scores)
    out: dict[str, object] = {"runs": x.shape[0], "tasks": x.shape[1]}
    for name, fn in (("mean", mean), ("iqm", iqm)):
        out[name] = float(fn(x))
        out[f"{name}_ci"] = list(
            seed_interval(_batched(fn), [x], levels, resamples=resamples, seed=seed, bounds=bounds)
        )
    out["seed_means"] = x.mean(axis=1).tolist()
    return out


def cvar_aggregate(
    rank_by,
    measure,
    fraction: float,
    seed: int = 0,
    resamples: int = RESAMPLES,
    levels: bool = False,
) -> dict[str, object]:
    """The mean over seeds of each seed's ``cvar_independent`` (levels ranked on
    ``rank_by``, measured on ``measure``, both (seeds, levels)), with its interval over seeds
    (two-level with ``levels``): ``{"mean", "mean_ci", "seeds", "runs"}``."""
    a, b = _matrix(rank_by), _matrix(measure)

    def statistic(ra, mb):  # (B, n, L) -> (B,)
        return cvar_independent(ra, mb, fraction).mean(axis=-1)

    per_seed = cvar_independent(a, b, fraction)
    ci = seed_interval(statistic, [a, b], levels, resamples=resamples, seed=seed, bounds=(0, 1))
    return {"mean": float(per_seed.mean()), "mean_ci": list(ci), "seeds": per_seed.tolist(),
            "runs": a.shape[0]}  # fmt: skip


# --- comparisons between two experiments -----------------------------------------------------


def probability_of_improvement_seeds(x, y) -> dict[str, object]:
    """P(X > Y) + P(X = Y) / 2 over all pairs of the per-seed aggregates ``x`` (n,) and
    ``y`` (m,) (e.g. each seed's mean solve rate on a set), with the exact two-sided
    Mann-Whitney p-value: ``{"value", "p_value", "pairs"}``."""
    x, y = np.ravel(np.asarray(x, np.float64)), np.ravel(np.asarray(y, np.float64))
    greater = (x[:, None] > y[None, :]).mean()
    equal = (x[:, None] == y[None, :]).mean()
    value = float(greater + 0.5 * equal)
    p_value = float("nan")
    if x.size and y.size and np.ptp(np.r_[x, y]) > 0:
        method = "exact" if equal == 0 else "asymptotic"  # exact assumes no ties
        p_value = float(stats.mannwhitneyu(x, y, alternative="two-sided", method=method).pvalue)
    elif x.size and y.size:
        p_value = 1.0
    return {"value": value, "p_value": p_value, "pairs": int(x.size * y.size)}


def difference(
    x,
    y,
    levels: bool = False,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, object]:
    """Mean of ``x`` minus mean of ``y`` ((seeds, levels) matrices of the same levels; the
    seed counts may differ) with a Welch interval over seeds: ``{"value", "ci", "df"}``.

    Over fixed levels the standard error is Welch's, from the per-seed means. With
    ``levels`` (a sample of levels), the seeds of each experiment are resampled on their own
    and the levels in pairs (the same levels for both, as both played them), and the
    bootstrap standard error is rescaled as in ``seed_interval``.
    """
    x, y = _matrix(x), _matrix(y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y need the same levels, got {x.shape[1]} and {y.shape[1]}")
    n, m = x.shape[0], y.shape[0]
    value = float(x.mean() - y.mean())
    if n < 2 or m < 2:
        return {"value": value, "ci": [float("nan"), float("nan")], "df": float("nan")}
    vx, vy = x.mean(axis=1).var(ddof=1) / n, y.mean(axis=1).var(ddof=1) / m
    denom = (vx**2 / (n - 1) if vx else 0.0) + (vy**2 / (m - 1) if vy else 0.0)
    df = (vx + vy) ** 2 / denom if denom > 0 else float(n + m - 2)
    if not levels:
        se = np.sqrt(vx + vy)
    else:
        rng = np.random.default_rng(seed)
        num_levels = x.shape[1]
        reps = []
        for start in range(0, resamples, _CHUNK):
            b = min(_CHUNK, resamples - start)
            cols = rng.integers(0, num_levels, size=(b, num_levels))
            rx = x[rng.integers(0, n, size=(b, n))]
            ry = y[rng.integers(0, m, size=(b, m))]
            rx = np.take_along_axis(rx, cols[:, None, :].repeat(n, axis=1), axis=2)
            ry = np.take_along_axis(ry, cols[:, None, :].repeat(m, axis=1), axis=2)
            reps.append(rx.mean(axis=(1, 2)) - ry.mean(axis=(1, 2)))
        scale = max(n / (n - 1), m / (m - 1))
        se = float(np.std(np.concatenate(reps), ddof=1)) * np.sqrt(scale)
    half = t_quantile(df, confidence) * se
    return {"value": value, "ci": [value - half, value + half], "df": float(df)}


# --- the per-level (stratified) method, for independent runs per task only ------------------


def probability_of_improvement(x, y) -> float:
    """P(X > Y) + P(X = Y) / 2 per task, averaged over tasks, for (runs, tasks) matrices
    ``x`` and ``y`` of the same tasks (their run counts may differ). ``rliable``'s
    definition for tasks trained separately; for seeds that play every level, use
    ``probability_of_improvement_seeds`` on the seeds' aggregates."""
    x, y = _matrix(x), _matrix(y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y need the same tasks, got {x.shape[1]} and {y.shape[1]}")
    x, y = x.T, y.T
    greater = (x[:, :, None] > y[:, None, :]).mean(axis=(-2, -1))
    equal = (x[:, :, None] == y[:, None, :]).mean(axis=(-2, -1))
    return float((greater + 0.5 * equal).mean())


def stratified_bootstrap_ci(
    statistic: Callable[..., np.ndarray],
    matrices: Sequence,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """``rliable``'s stratified bootstrap: percentile interval of ``statistic(*matrices)``
    with each task column of each (runs, tasks) matrix resampled on its own.

    Right when every task's runs are trained separately; wrong (far too narrow) for a suite,
    whose levels are all played by the same seeds: kept to show that (the tests) and for
    such independent data. ``statistic`` takes ``(..., runs, tasks)`` matrices and returns
    one value per batch entry. Fewer than two runs give ``(nan, nan)``.
    """
    mats = [_matrix(m) for m in matrices]
    if any(m.shape[0] < 2 for m in mats):
        return float("nan"), float("nan")
    columns = [m[:, t] for m in mats for t in range(m.shape[1])]
    bounds = np.cumsum([0] + [m.shape[1] for m in mats])

    def vectorised(*cols, axis=-1):
        cols = [np.moveaxis(c, axis, -1) for c in cols]
        regrouped = [
            np.stack(cols[a:b], axis=-1) for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        return statistic(*regrouped)

    if all(np.ptp(c) == 0 for c in columns):  # scipy refuses degenerate data; no spread
        value = float(statistic(*[m[None] for m in mats])[0])
        return value, value
    result = stats.bootstrap(
        columns,
        vectorised,
        n_resamples=resamples,
        confidence_level=confidence,
        method="percentile",
        paired=False,
        vectorized=True,
        rng=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)
