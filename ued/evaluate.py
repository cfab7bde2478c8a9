"""Jitted evaluation of a student on a set of levels: solve rate, return, episode length."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from ued.networks import ActorCritic, distribution


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
    episode runs until its first ``done`` or ``max_steps``.
    """
    num_levels = jax.tree.leaves(levels)[0].shape[0]
    batch = num_levels * episodes
    tiled = jax.tree.map(lambda x: jnp.repeat(x, episodes, axis=0), levels)
    reset_key, run_key = jax.random.split(key)
    reset = jax.vmap(env.reset_to_level, in_axes=(0, 0, None))
    obs, state = reset(jax.random.split(reset_key, batch), tiled, env_params)
    step_env = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def step(carry, step_key):
        obs, state, rnn, finished, ret, length, solved = carry
        act_key, env_key = jax.random.split(step_key)
        batched = jax.tree.map(lambda x: x[None], obs)
        rnn, policy, _ = network.apply(params, rnn, batched, jnp.zeros((1, batch), bool))
        action = distribution(policy[0], network.continuous).sample(seed=act_key)
        out = step_env(jax.random.split(env_key, batch), state, action, env_params)
        active = ~finished
        ret = ret + jnp.where(active, out.reward, 0.0)
        length = length + active.astype(jnp.int32)
        solved = solved | (active & out.done & out.info["success"])
        finished = finished | out.done
        return (out.obs, out.state, rnn, finished, ret, length, solved), None

    zeros_f = jnp.zeros((batch,), jnp.float32)
    init = (
        obs,
        state,
        network.initial_carry(batch),
        jnp.zeros((batch,), bool),
        zeros_f,
        jnp.zeros((batch,), jnp.int32),
        jnp.zeros((batch,), bool),
    )
    final, _ = jax.lax.scan(step, init, jax.random.split(run_key, max_steps))
    _, _, _, _, ret, length, solved = final

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
