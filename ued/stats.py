"""Robust aggregates of RL results over seeds, with stratified-bootstrap intervals.

Follows Agarwal et al. 2021, "Deep RL at the Edge of the Statistical Precipice" (the
``rliable`` library): scores form a (runs, tasks) matrix (here: seeds x evaluation levels);
the interquartile mean (IQM) is the mean of the middle 50% of all its entries; confidence
intervals come from a stratified bootstrap, which resamples the runs of each task
independently; the probability of improvement is the Mann-Whitney statistic
P(X > Y) + P(X = Y) / 2 averaged over tasks; a performance profile is the fraction of scores
above each threshold.

The bootstrap is ``scipy.stats.bootstrap`` (percentile intervals, as ``rliable``): passing
each task's column as its own sample with ``paired=False`` makes scipy resample them
independently, which is the stratified bootstrap. scipy is already installed with JAX;
``rliable`` would add arch, statsmodels, pandas and seaborn for the same computation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 2000


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


def probability_of_improvement(x, y) -> float:
    """P(X > Y) + P(X = Y) / 2 per task, averaged over tasks, for (runs, tasks) matrices
    ``x`` and ``y`` of the same tasks (their run counts may differ)."""
    x, y = _matrix(x), _matrix(y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y need the same tasks, got {x.shape[1]} and {y.shape[1]}")
    return float(_poi(x.T, y.T))


def _poi(x, y) -> np.ndarray:
    # x: (..., tasks, n), y: (..., tasks, m) -> (...,): pairwise comparisons within each task.
    greater = (x[..., :, None] > y[..., None, :]).mean(axis=(-2, -1))
    equal = (x[..., :, None] == y[..., None, :]).mean(axis=(-2, -1))
    return (greater + 0.5 * equal).mean(axis=-1)


def performance_profile(scores, thresholds) -> np.ndarray:
    """The fraction of all scores strictly above each threshold."""
    x = np.ravel(np.asarray(scores, np.float64))
    return (x[None, :] > np.asarray(thresholds, np.float64)[:, None]).mean(axis=1)


def cvar(values, fraction: float) -> float:
    """Mean of the worst ``fraction`` of ``values`` (at least one), as ``ued.evaluate.cvar``."""
    values = np.sort(np.ravel(np.asarray(values, np.float64)))
    k = max(1, int(round(fraction * values.size)))
    return float(values[:k].mean())


def stratified_bootstrap_ci(
    statistic: Callable[..., np.ndarray],
    matrices: Sequence,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile confidence interval of ``statistic(*matrices)`` under a stratified
    bootstrap: each task column of each (runs, tasks) matrix is resampled on its own.

    ``statistic`` takes the matrices, each with any leading batch axes (``(..., runs,
    tasks)``), and returns one value per batch entry. Fewer than two runs in a matrix give
    ``(nan, nan)``: one run has no spread to resample.
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


def _batched(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    # A statistic over all runs and tasks of a (..., runs, tasks) batch.
    return lambda m: fn(m.reshape(*m.shape[:-2], -1), axis=-1)


def aggregate(scores, seed: int = 0, resamples: int = RESAMPLES) -> dict[str, object]:
    """Mean and IQM of a (runs, tasks) score matrix with their stratified-bootstrap 95%
    intervals: ``{"mean", "mean_ci", "iqm", "iqm_ci", "runs", "tasks"}``."""
    x = _matrix(scores)
    out: dict[str, object] = {"runs": x.shape[0], "tasks": x.shape[1]}
    for name, fn in (("mean", mean), ("iqm", iqm)):
        out[name] = float(fn(x))
        out[f"{name}_ci"] = list(
            stratified_bootstrap_ci(_batched(fn), [x], seed=seed, resamples=resamples)
        )
    return out


def improvement(x, y, seed: int = 0, resamples: int = RESAMPLES) -> dict[str, object]:
    """Probability that ``x`` improves on ``y`` (see ``probability_of_improvement``) with
    its stratified-bootstrap 95% interval (both matrices resampled)."""
    x, y = _matrix(x), _matrix(y)
    value = probability_of_improvement(x, y)

    def statistic(a, b):  # (..., runs, tasks) -> (...,)
        return _poi(np.swapaxes(a, -1, -2), np.swapaxes(b, -1, -2))

    ci = stratified_bootstrap_ci(statistic, [x, y], seed=seed, resamples=resamples)
    return {"value": value, "ci": list(ci)}
