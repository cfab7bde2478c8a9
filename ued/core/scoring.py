"""Score functions: how much a student can still learn on each level of a rollout.

A score maps ``ScoreInputs`` (a (T, N) rollout plus per-level context) to (N,) float32, one
number per level, higher = more worth replaying. ``-inf`` means "no evidence" (e.g. no
episode finished) and ranks lowest in the buffer. Adding a score is one function plus one
``SCORES`` entry; ``make_score`` mixes registered scores by weight.

Episode statistics assume each rollout starts at the start of an episode on every level (the
levels are reset when proposed), so returns are the undiscounted reward sums between dones;
reward after the last done belongs to an unfinished episode and is not counted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import chex
import jax
import jax.numpy as jnp

from ued.core.types import Rollout, ScoreInputs

ScoreFn = Callable[[ScoreInputs], chex.Array]

NOVELTY_K = 4  # nearest references averaged by ``novelty``


# --- episode statistics -----------------------------------------------------------------------


def episode_stats(rollout: Rollout) -> dict[str, chex.Array]:
    """Per-level statistics of the episodes that finished inside the rollout.

    Returns:
        A dict of (N,) arrays:
        ``num_episodes`` int32, finished episodes;
        ``mean_return`` float32, mean episodic return (0 where none finished);
        ``max_return`` float32, best episodic return (-inf where none finished);
        ``success_rate`` float32, fraction of finished episodes that solved the level
        (0 where none finished).
    """
    rewards = rollout.rewards.astype(jnp.float32)
    dones = rollout.dones.astype(bool)
    wins = dones & rollout.successes.astype(bool)
    n = rewards.shape[1]

    def step(carry, x):
        running, total, count, best, solved = carry
        reward, done, win = x
        running = running + reward
        total = total + jnp.where(done, running, 0.0)
        best = jnp.where(done, jnp.maximum(best, running), best)
        carry = (
            jnp.where(done, 0.0, running),
            total,
            count + done.astype(jnp.int32),
            best,
            solved + win.astype(jnp.int32),
        )
        return carry, None

    zeros = jnp.zeros((n,), jnp.float32)
    init = (zeros, zeros, jnp.zeros((n,), jnp.int32), zeros - jnp.inf, jnp.zeros((n,), jnp.int32))
    (_, total, count, best, solved), _ = jax.lax.scan(step, init, (rewards, dones, wins))
    denom = jnp.maximum(count, 1).astype(jnp.float32)
    return {
        "num_episodes": count,
        "mean_return": total / denom,
        "max_return": best,
        "success_rate": solved / denom,
    }


def best_return_update(old_best: chex.Array, rollout: Rollout) -> chex.Array:
    """(N,) float32: ``max(old_best, best episodic return finished in the rollout)``."""
    return jnp.maximum(old_best.astype(jnp.float32), episode_stats(rollout)["max_return"])


def make_score_inputs(
    rollout: Rollout,
    best_return: chex.Array | None = None,
    level_encoding: chex.Array | None = None,
    reference_encoding: chex.Array | None = None,
    reference_mask: chex.Array | None = None,
) -> ScoreInputs:
    """``ScoreInputs`` with neutral defaults for the context a curriculum does not track.

    Defaults: ``best_return`` -inf (nothing known beyond the rollout); encodings (N, 1) zeros;
    no references (M = 0, so ``novelty`` is 0); ``reference_mask`` all True.
    """
    n = rollout.rewards.shape[1]
    if best_return is None:
        best_return = jnp.full((n,), -jnp.inf, jnp.float32)
    if level_encoding is None:
        level_encoding = jnp.zeros((n, 1), jnp.float32)
    if reference_encoding is None:
        reference_encoding = jnp.zeros((0, level_encoding.shape[1]), jnp.float32)
    if reference_mask is None:
        reference_mask = jnp.ones((reference_encoding.shape[0],), bool)
    return ScoreInputs(rollout, best_return, level_encoding, reference_encoding, reference_mask)


def per_episode_mean(dones: chex.Array, per_step: chex.Array) -> tuple[chex.Array, chex.Array]:
    """Mean over the finished episodes of each episode's time-average of ``per_step``.

    ``dones``/``per_step`` are (T, N); steps after the last done of a level belong to an
    unfinished episode and are ignored. Returns the (N,) float32 mean (0 where no episode
    finished) and the (N,) int32 number of finished episodes.
    """
    per_step = per_step.astype(jnp.float32)
    dones = dones.astype(bool)

    def step(carry, x):
        running, length, total, count = carry
        value, done = x
        running, length = running + value, length + 1
        total = total + jnp.where(done, running / length, 0.0)
        keep = ~done
        return (running * keep, length * keep, total, count + done.astype(jnp.int32)), None

    n = per_step.shape[1]
    zeros = jnp.zeros((n,), jnp.float32)
    init = (zeros, jnp.zeros((n,), jnp.int32), zeros, jnp.zeros((n,), jnp.int32))
    (_, _, total, count), _ = jax.lax.scan(step, init, (per_step, dones))
    return total / jnp.maximum(count, 1), count


# --- scores -----------------------------------------------------------------------------------


def positive_value_loss(inputs: ScoreInputs) -> chex.Array:
    """PVL: mean over the T steps of ``max(GAE advantage, 0)``; 0 when no advantage is > 0."""
    adv = inputs.rollout.advantages.astype(jnp.float32)
    return jnp.maximum(adv, 0.0).mean(axis=0)


def l1_value_loss(inputs: ScoreInputs) -> chex.Array:
    """Mean over the T steps of ``|GAE advantage|``."""
    return jnp.abs(inputs.rollout.advantages.astype(jnp.float32)).mean(axis=0)


def max_mc(inputs: ScoreInputs) -> chex.Array:
    """MaxMC: mean over the T steps of ``best_return - V(o_t)``.

    ``best_return`` is the max of ``inputs.best_return`` and the best episode finished in this
    rollout, so it is -inf (and so is the score) only for a level with no finished episode and
    no recorded return.
    """
    rollout = inputs.rollout
    best = jnp.maximum(inputs.best_return.astype(jnp.float32), episode_stats(rollout)["max_return"])
    gap = (jnp.where(jnp.isfinite(best), best, 0.0)[None] - rollout.values).mean(axis=0)
    return jnp.where(best == -jnp.inf, -jnp.inf, gap).astype(jnp.float32)


# The papers' and the JAX peers' regret estimates average each finished episode over its own
# steps, then average episodes (minimax src/minimax/util/rl/ued_scores.py, which JaxUED's
# src/jaxued/utils.py adapts: positive_value_loss and max_mc with time_average=True). A level
# with no finished episode in the rollout scores -inf there (JaxUED's incomplete_value
# default), so it ranks last in the buffer.


def positive_value_loss_per_episode(inputs: ScoreInputs) -> chex.Array:
    """PVL as the papers compute it: per finished episode, the mean over its steps of
    ``max(GAE advantage, 0)``; the mean over finished episodes; -inf if none finished."""
    rollout = inputs.rollout
    adv = jnp.maximum(rollout.advantages.astype(jnp.float32), 0.0)
    mean, count = per_episode_mean(rollout.dones, adv)
    return jnp.where(count > 0, mean, -jnp.inf).astype(jnp.float32)


def max_mc_per_episode(inputs: ScoreInputs) -> chex.Array:
    """MaxMC as the papers compute it: per finished episode, the mean over its steps of
    ``best_return - V(o_t)``; the mean over finished episodes; -inf if none finished.
    ``best_return`` is as in ``max_mc``."""
    rollout = inputs.rollout
    best = jnp.maximum(inputs.best_return.astype(jnp.float32), episode_stats(rollout)["max_return"])
    gap = jnp.where(jnp.isfinite(best), best, 0.0)[None] - rollout.values.astype(jnp.float32)
    mean, count = per_episode_mean(rollout.dones, gap)
    return jnp.where(count > 0, mean, -jnp.inf).astype(jnp.float32)


def learnability(inputs: ScoreInputs) -> chex.Array:
    """``p (1 - p)`` with p the success rate of the finished episodes; -inf if none finished.

    Highest (0.25) at p = 0.5: levels solved sometimes but not always.
    """
    stats = episode_stats(inputs.rollout)
    p = stats["success_rate"]
    return jnp.where(stats["num_episodes"] > 0, p * (1.0 - p), -jnp.inf).astype(jnp.float32)


def novelty(inputs: ScoreInputs, k: int = NOVELTY_K) -> chex.Array:
    """Mean Euclidean distance from each level's encoding to its k nearest real references.

    Uses ``level_encoding`` (N, D) against the rows of ``reference_encoding`` (M, D) where
    ``reference_mask`` is True; averages over fewer than k if fewer are real, and is 0 when
    there are none. A reference equal to the level itself counts (distance 0), so pass
    references that exclude the scored levels if that is not wanted.
    """
    x = inputs.level_encoding.astype(jnp.float32)
    refs = inputs.reference_encoding.astype(jnp.float32)
    n, m = x.shape[0], refs.shape[0]
    if m == 0 or k < 1:
        return jnp.zeros((n,), jnp.float32)
    cross = jnp.matmul(x, refs.T, precision=jax.lax.Precision.HIGHEST)
    sq = (x * x).sum(1)[:, None] + (refs * refs).sum(1)[None, :] - 2.0 * cross
    dist = jnp.where(inputs.reference_mask[None, :], jnp.sqrt(jnp.maximum(sq, 0.0)), jnp.inf)
    nearest = -jax.lax.top_k(-dist, min(k, m))[0]  # (N, k) ascending, inf = missing
    real = jnp.isfinite(nearest)
    count = real.sum(axis=1)
    mean = jnp.where(real, nearest, 0.0).sum(axis=1) / jnp.maximum(count, 1)
    return jnp.where(count > 0, mean, 0.0).astype(jnp.float32)


SCORES: dict[str, ScoreFn] = {
    "positive_value_loss": positive_value_loss,
    "max_mc": max_mc,
    "positive_value_loss_per_episode": positive_value_loss_per_episode,
    "max_mc_per_episode": max_mc_per_episode,
    "l1_value_loss": l1_value_loss,
    "learnability": learnability,
    "novelty": novelty,
}


# How an options dataclass declares a score mixture (``check=weights_ok, allowed=...``).
WEIGHTS_ALLOWED = f"a mapping of score names from {sorted(SCORES)} to numbers"


def weights_ok(weights: Mapping) -> bool:
    """Whether ``weights`` maps registered score names to numbers (not booleans)."""
    return all(
        name in SCORES and isinstance(w, (int, float)) and not isinstance(w, bool)
        for name, w in weights.items()
    )


def make_score(weights: Mapping[str, float]) -> ScoreFn:
    """A score that is the weighted sum of registered scores, e.g. ``{"max_mc": 1.0}``.

    Zero weights are dropped (so ``0 * -inf`` never occurs). A level gets -inf if any term
    with a nonzero weight is -inf for it (never NaN, whatever the weights' signs).

    Raises:
        ValueError: for an unknown name (listing the known ones), a non-finite weight or no
            nonzero weight.
    """
    unknown = sorted(set(weights) - set(SCORES))
    if unknown:
        raise ValueError(f"unknown score(s) {unknown}; known scores: {sorted(SCORES)}")
    terms = []
    for name, weight in weights.items():
        w = float(weight)
        if not jnp.isfinite(w):
            raise ValueError(f"score weight {name}={weight!r}; must be finite")
        if w != 0.0:
            terms.append((SCORES[name], w))
    if not terms:
        raise ValueError(f"score weights {dict(weights)!r} need at least one nonzero weight")

    def score(inputs: ScoreInputs) -> chex.Array:
        total = 0.0
        missing = False
        for fn, w in terms:
            s = fn(inputs).astype(jnp.float32)
            bad = jnp.isnan(s) | (s == -jnp.inf)
            missing = missing | bad
            total = total + w * jnp.where(bad, 0.0, s)
        return jnp.where(missing, -jnp.inf, total).astype(jnp.float32)

    return score
