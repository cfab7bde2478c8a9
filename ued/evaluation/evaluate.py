"""Jitted evaluation of a student on sets of levels: solve rate, return, episode length.

``evaluate`` is the pure function (vmapped over levels and episodes); ``LevelEvaluator``
runs any number of levels through it in batches of one fixed size, so a thousand levels
compile once and never hold more than one batch of episodes in memory. Level sets come from
a family's named levels, text files (``Family.levels_from_file``) or a generator.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from ued.config.eval_setup import eval_env, load_level_sets
from ued.core.networks import ActorCritic, distribution

METRICS = ("solve_rate", "mean_return", "mean_length")
CVAR_FRACTIONS = {"cvar_1": 0.01, "cvar_10": 0.10}
# Per-level solve rates from a second, independent set of episodes (optional in a result).
INDEPENDENT = "solve_rate_independent"


def evaluate(
    key: chex.PRNGKey,
    env,
    env_params,
    network: ActorCritic,
    params,
    levels,
    episodes: int,
    max_steps: int,
) -> dict[str, chex.Array]:
    """Runs ``episodes`` stochastic-policy episodes on each of L levels (vmapped over both).

    Returns (L,) float32 arrays: ``solve_rate``, ``mean_return``, ``mean_length``. Each
    episode runs until its first ``done`` or ``max_steps``; the loop stops early once every
    episode has ended.
    """
    num_levels = jax.tree.leaves(levels)[0].shape[0]
    batch = num_levels * episodes
    tiled = jax.tree.map(lambda x: jnp.repeat(x, episodes, axis=0), levels)
    reset_key, run_key = jax.random.split(key)
    reset = jax.vmap(env.reset_to_level, in_axes=(0, 0, None))
    obs, state = reset(jax.random.split(reset_key, batch), tiled, env_params)
    step_env = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def step(carry):
        t, obs, state, rnn, finished, ret, length, solved = carry
        act_key, env_key = jax.random.split(jax.random.fold_in(run_key, t))
        batched = jax.tree.map(lambda x: x[None], obs)
        rnn, policy, _ = network.apply(params, rnn, batched, jnp.zeros((1, batch), bool))
        action = distribution(policy[0], network.continuous).sample(seed=act_key)
        out = step_env(jax.random.split(env_key, batch), state, action, env_params)
        active = ~finished
        ret = ret + jnp.where(active, out.reward, 0.0)
        length = length + active.astype(jnp.int32)
        solved = solved | (active & out.done & out.info["success"])
        finished = finished | out.done
        return (t + 1, out.obs, out.state, rnn, finished, ret, length, solved)

    def running(carry):
        return (carry[0] < max_steps) & ~carry[4].all()

    init = (
        jnp.zeros((), jnp.int32),
        obs,
        state,
        network.initial_carry(batch),
        jnp.zeros((batch,), bool),
        jnp.zeros((batch,), jnp.float32),
        jnp.zeros((batch,), jnp.int32),
        jnp.zeros((batch,), bool),
    )
    *_, ret, length, solved = jax.lax.while_loop(running, step, init)

    def per_level(x):
        return x.astype(jnp.float32).reshape(num_levels, episodes).mean(axis=1)

    return {
        "solve_rate": per_level(solved),
        "mean_return": per_level(ret),
        "mean_length": per_level(length),
    }


def cvar(values: chex.Array, fraction: float) -> chex.Array:
    """Mean of the worst ``fraction`` of values (at least one), e.g. CVaR of solve rates."""
    values = jnp.sort(jnp.ravel(values))
    k = max(1, int(round(fraction * values.shape[0])))
    return values[:k].mean()


def unbiased_cvar(rank_by: np.ndarray, measure: np.ndarray, fraction: float) -> float:
    """CVaR as SFL reports it (Rutherford et al. 2024): the worst ``fraction`` of levels by
    ``rank_by`` (one set of episodes), scored by their mean ``measure`` on an independent set.

    Named for removing the same-play estimator's bias (ranking and measuring on the same
    episodes favours the unlucky levels and biases it low, about -0.05 at 10 episodes and
    solve rates near 0.9), it is not unbiased either: ranking on a noisy play picks some
    levels that are not among the truly worst, so it is biased *high* for the true worst
    fraction, by about as much (``ued.evaluation.stats.cvar_independent``;
    ``tests/ued/test_stats.py`` measures both)."""
    rank_by, measure = np.ravel(rank_by), np.ravel(measure)
    k = max(1, int(round(fraction * rank_by.shape[0])))
    return float(measure[np.argsort(rank_by, kind="stable")[:k]].mean())


def summarize(result: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Means of the per-level metrics and the CVaR of solve rate at 1% and 10% over the same
    episodes (``cvar_*``, biased low); with ``INDEPENDENT`` solve rates in ``result``, also
    the independent-play CVaR (``cvar_*_unbiased``: levels ranked on the first episodes,
    measured on the independent ones; biased high, see ``unbiased_cvar``)."""
    out = {m: float(np.mean(result[m])) for m in METRICS}
    for name, fraction in CVAR_FRACTIONS.items():
        out[name] = float(cvar(jnp.asarray(result["solve_rate"]), fraction))
        if INDEPENDENT in result:
            out[f"{name}_unbiased"] = unbiased_cvar(
                result["solve_rate"], result[INDEPENDENT], fraction
            )
    return out


def set_result(per_level: Mapping[str, np.ndarray], names: Sequence[str] | None) -> dict:
    """JSON-ready result of one level set: ``num_levels``, ``summary`` and per-level values.

    With ``names`` the per-level values are ``levels: {name: {metric: value}}`` (shown in
    tables); without, ``per_level: {metric: [values]}`` (large random sets).
    """
    n = len(per_level["solve_rate"])
    out: dict[str, Any] = {"num_levels": n, "summary": summarize(per_level)}
    if names is not None:
        out["levels"] = {
            name: {m: float(per_level[m][i]) for m in METRICS} for i, name in enumerate(names)
        }
    else:
        out["per_level"] = {m: [float(v) for v in per_level[m]] for m in METRICS}
    return out


def seeds_result(per_seed: Sequence[Mapping[str, np.ndarray]], names: Sequence[str] | None):
    """``set_result`` over several seeds' per-level values of one level set.

    ``summary`` is the mean over seeds of each seed's summary (so ``cvar_*`` is the mean of
    per-seed CVaRs, not the CVaR of averaged levels), ``summary_std`` their standard
    deviation (ddof 1), ``seeds`` the per-seed summaries, and per-level values are means over
    seeds. One seed gives plain ``set_result``.
    """
    if len(per_seed) == 1:
        return set_result(per_seed[0], names)
    mean = {m: np.mean([p[m] for p in per_seed], axis=0) for m in METRICS}
    out = set_result(mean, names)
    summaries = [summarize(p) for p in per_seed]
    out["summary"] = {k: float(np.mean([s[k] for s in summaries])) for k in summaries[0]}
    out["summary_std"] = {k: float(np.std([s[k] for s in summaries], ddof=1)) for k in summaries[0]}
    out["num_seeds"] = len(per_seed)
    out["seeds"] = summaries
    return out


class LevelEvaluator:
    """Evaluates level sets of any size in batches of one fixed size: one compiled function.

    Args:
        env, env_params, network: as in the experiment.
        episodes: episodes per level.
        max_steps: episode horizon.
        batch_levels: levels per batch; a set is split into batches of this many levels,
            the last one filled up by wrapping around to the set's first levels (results dropped).
            Memory grows with ``batch_levels * episodes``.
    """

    def __init__(self, env, env_params, network, episodes: int, max_steps: int, batch_levels):
        self.episodes = int(episodes)
        self.max_steps = int(max_steps)
        self.batch_levels = max(1, int(batch_levels))
        self._fn = jax.jit(
            lambda key, params, levels: evaluate(
                key, env, env_params, network, params, levels, self.episodes, self.max_steps
            )
        )

    def __call__(self, key: chex.PRNGKey, params, levels) -> dict[str, np.ndarray]:
        """Per-level (L,) float32 ``solve_rate``, ``mean_return``, ``mean_length``."""
        n = int(jax.tree.leaves(levels)[0].shape[0])
        size = self.batch_levels
        parts = []
        for i, start in enumerate(range(0, n, size)):
            idx = np.arange(start, start + size) % n
            batch = jax.tree.map(lambda x, idx=idx: x[idx], levels)
            parts.append(self._fn(jax.random.fold_in(key, i), params, batch))  # async dispatch
        parts = jax.device_get(parts)
        return {m: np.concatenate([p[m] for p in parts])[:n] for m in METRICS}


class NamedEvaluator:
    """Jitted evaluation of the student on the sets of ``eval.levels`` (one seed's params),
    at the horizon ``eval.max_steps`` (0: the env's)."""

    def __init__(self, exp):
        env, env_params = eval_env(exp, max_steps=exp.cfg.eval.max_steps or None)
        sets = load_level_sets(exp.family, env, exp.cfg.eval.levels)
        named, members = {}, {}
        for label, levels in sets.items():
            for name, level in levels.items():
                name = f"{label}/{name}" if name in named else name  # the same name twice
                named[name] = level
                members.setdefault(label, []).append(name)
        self.names = list(named)
        # Set means beside the overall mean only when there are several sets.
        self.sets = members if len(members) > 1 else {}
        self.levels = exp.family.stack(list(named.values())) if named else None
        max_steps = env.max_episode_steps(env_params)
        episodes = exp.cfg.eval.episodes
        self._eval = LevelEvaluator(
            env, env_params, exp.network, episodes, max_steps, max(1, len(self.names))
        )

    def __call__(self, key, params) -> dict[str, np.ndarray]:
        """Per-level (L,) values of each metric; empty without named levels."""
        if self.levels is None:
            return {}
        return self._eval(key, params, self.levels)

    def entries(self, per_level: Mapping[str, np.ndarray]) -> dict[str, float]:
        """``eval/<level>/<metric>`` for each level and ``eval/<metric>`` means, to log."""
        out = {}
        for i, name in enumerate(self.names):
            for metric, values in per_level.items():
                out[f"eval/{name}/{metric}"] = float(values[i])
        for metric, values in per_level.items():
            out[f"eval/{metric}"] = float(np.mean(values))
        index = {name: i for i, name in enumerate(self.names)}
        for label, names in self.sets.items():
            rows = [index[name] for name in names]
            for metric, values in per_level.items():
                out[f"eval/set:{label}/{metric}"] = float(np.mean(np.asarray(values)[rows]))
        return out


# --- level sets -------------------------------------------------------------------------------


def solvable_check(family, env):
    """``level -> () bool`` from the family's ``solvable`` level metric (the maze's BFS);
    None for a family without one (every level counts)."""
    example = family.example_level(env)
    if "solvable" not in jax.eval_shape(lambda lv: family.level_metrics(env, lv), example):
        return None
    return lambda level: family.level_metrics(env, level)["solvable"] > 0


def random_levels(key: chex.PRNGKey, generator, n: int, accept=None, max_rounds: int = 50) -> Any:
    """``n`` levels from a ``key -> level`` generator, as one batched level.

    With ``accept`` (``level -> () bool``, e.g. solvable by BFS), only accepted levels are
    kept: batches of ``n`` are drawn until ``n`` are accepted, at most ``max_rounds``.

    Raises:
        ValueError: fewer than ``n`` accepted levels in ``max_rounds * n`` draws.
    """
    draw = jax.jit(jax.vmap(generator))
    if accept is None:
        return draw(jax.random.split(key, n))
    check = jax.jit(jax.vmap(accept))
    kept, found = [], 0
    for r in range(max_rounds):
        batch = draw(jax.random.split(jax.random.fold_in(key, r), n))
        ok = np.flatnonzero(np.asarray(check(batch)))
        kept.append(jax.tree.map(lambda x, ok=ok: x[ok], batch))
        found += ok.size
        if found >= n:
            levels = jax.tree.map(lambda *xs: jnp.concatenate(xs), *kept)
            return jax.tree.map(lambda x: x[:n], levels)
    raise ValueError(f"only {found} of {max_rounds * n} generated levels were accepted")


def format_table(sets: Mapping[str, Mapping[str, Any]], max_level_rows: int | None = None) -> str:
    """A text table of evaluation results (see ``scripts/evaluate.py`` for the layout); a set
    of more than ``max_level_rows`` levels shows its summary row only."""
    rows = [f"{'level':<32} {'solve':>6} {'return':>8} {'length':>8} {'cvar1%':>7} {'cvar10%':>7}"]
    for set_name, result in sets.items():
        levels = result.get("levels", {})
        if max_level_rows is not None and len(levels) > max_level_rows:
            levels = {}
        for name, row in levels.items():
            rows.append(
                f"{name:<32} {row['solve_rate']:>6.2f} {row['mean_return']:>8.3f} "
                f"{row['mean_length']:>8.1f}"
            )
        s = result["summary"]
        label = f"{set_name} ({result['num_levels']} levels)"
        rows.append(
            f"{label:<32} {s['solve_rate']:>6.2f} {s['mean_return']:>8.3f} "
            f"{s['mean_length']:>8.1f} {s['cvar_1']:>7.2f} {s['cvar_10']:>7.2f}"
        )
    return "\n".join(rows)


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int = 40) -> str:
    """``values`` as one line of block characters scaled to their range (at most ``width``
    of them, evenly picked); NaNs are spaces."""
    values = np.asarray(values, np.float64)
    if values.size > width:
        values = values[np.linspace(0, values.size - 1, width).round().astype(int)]
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return " " * values.size
    low, high = finite.min(), finite.max()
    scale = (len(SPARK) - 1) / (high - low) if high > low else 0.0
    return "".join(SPARK[int(round((v - low) * scale))] if np.isfinite(v) else " " for v in values)


def before_after(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """A table of each level set's solve rate and return before and after training."""
    rows = [f"{'level set':<32} {'solve rate':>16} {'return':>18}"]
    for name, result in after.items():
        if name not in before:
            continue
        b, a = before[name]["summary"], result["summary"]
        rows.append(
            f"{name:<32} {b['solve_rate']:>7.2f} -> {a['solve_rate']:<5.2f} "
            f"{b['mean_return']:>8.3f} -> {a['mean_return']:<6.3f}"
        )
    return "\n".join(rows)
