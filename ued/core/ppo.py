"""Recurrent PPO: rollout (``lax.scan`` over steps, ``vmap`` over envs), GAE and the update."""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training.train_state import TrainState

from ued.core.networks import ActorCritic, log_prob_and_entropy, sample_and_log_prob
from ued.core.types import Rollout


def make_optimizer(ppo_cfg, total_updates: int) -> optax.GradientTransformation:
    steps_per_update = ppo_cfg.epochs * ppo_cfg.num_minibatches
    if ppo_cfg.anneal_lr:
        lr = optax.linear_schedule(ppo_cfg.lr, 0.0, total_updates * steps_per_update)
    else:
        lr = ppo_cfg.lr
    return optax.chain(optax.clip_by_global_norm(ppo_cfg.max_grad_norm), optax.adam(lr, eps=1e-5))


def init_student(key, network: ActorCritic, example_obs, tx) -> TrainState:
    """Initialises parameters from one example observation (no batch axes)."""
    obs = jax.tree.map(lambda x: x[None, None], example_obs)
    params = network.init(key, network.initial_carry(1), obs, jnp.zeros((1, 1), bool))
    return TrainState.create(apply_fn=network.apply, params=params, tx=tx)


@struct.dataclass
class Carried:
    """A rollout's start when its episodes continue from the previous rollout: the recurrent
    state and whether each env's previous step ended an episode (leaves (N, ...)). As a
    ``Rollout.init_carry`` it makes the loss reset the recurrent state at the first step
    only where an episode starts there."""

    carry: Any
    done: chex.Array  # (N,) bool


@struct.dataclass
class EpisodeCarry:
    """Where a curriculum's episodes stand between updates, when they continue across
    rollouts (DR's ``carry_episodes``, as JaxUED's DR): each env's last observation and
    state, the student's recurrent state and done flags (leaves (N, ...)), and whether a
    rollout has run yet (the first one starts fresh episodes on the proposed levels)."""

    obs: Any
    env_state: Any
    rnn: Any
    done: chex.Array  # (N,) bool
    started: chex.Array  # () bool


def carry_start(env, env_params, network, level, num_envs: int) -> EpisodeCarry:
    """An ``EpisodeCarry`` of the right shapes that has not started (``started`` False)."""
    levels = jax.tree.map(lambda x: jnp.broadcast_to(x, (num_envs, *jnp.shape(x))), level)
    reset = jax.vmap(env.reset_to_level, in_axes=(0, 0, None))
    obs, state = reset(jax.random.split(jax.random.PRNGKey(0), num_envs), levels, env_params)
    return EpisodeCarry(
        obs, state, network.initial_carry(num_envs), jnp.ones((num_envs,), bool),
        jnp.zeros((), bool),
    )  # fmt: skip


def collect(
    key: chex.PRNGKey,
    env,
    env_params,
    network: ActorCritic,
    params,
    obs,
    env_state,
    num_steps: int,
    next_levels=None,
    start: Carried | None = None,
) -> tuple[Rollout, Any]:
    """Rolls the student out for ``num_steps`` from ``(obs, env_state)`` (leaves (N, ...)).

    An env whose episode ends replays its level, or, with ``next_levels`` (``key -> levels``,
    leaves (N, ...)), is reset to its entry of a fresh draw: domain randomisation as minimax
    and JaxUED run it (a new level every episode), or a new level of the env's program.
    ``ued.curricula.base.restarts`` makes it from a curriculum.

    Returns the rollout (advantages and targets still zero; see ``with_gae``) and the final
    env state. The recurrent state starts at zero, as every rollout starts an episode; with
    ``start`` the episodes continue where an earlier rollout left them (its recurrent state
    and done flags), the rollout's ``init_carry`` is that ``Carried``, and the second result
    is ``(last obs, env state, Carried(last recurrent state, last done))``, the next
    rollout's start.
    """
    num_envs = jax.tree.leaves(obs)[0].shape[0]
    init_carry = network.initial_carry(num_envs) if start is None else start.carry
    first_done = jnp.ones((num_envs,), bool) if start is None else start.done
    step_env = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def resample(key, out):
        reset = jax.vmap(env.reset_to_level, in_axes=(0, 0, None))
        gen_key, reset_key = jax.random.split(key)
        levels = next_levels(gen_key)
        fresh_obs, fresh = reset(jax.random.split(reset_key, num_envs), levels, env_params)

        def pick(new, old):
            done = out.done.reshape(out.done.shape + (1,) * (new.ndim - 1))
            return jnp.where(done, new, old)

        return jax.tree.map(pick, fresh_obs, out.obs), jax.tree.map(pick, fresh, out.state)

    def step(carry, step_key):
        obs, env_state, rnn, prev_done = carry
        if next_levels is None:
            act_key, env_key = jax.random.split(step_key)
        else:
            act_key, env_key, level_key = jax.random.split(step_key, 3)
        batched = jax.tree.map(lambda x: x[None], obs)
        rnn, policy, value = network.apply(params, rnn, batched, prev_done[None])
        action, log_prob = sample_and_log_prob(act_key, policy[0], network.continuous)
        out = step_env(jax.random.split(env_key, num_envs), env_state, action, env_params)
        next_obs, next_state = out.obs, out.state
        if next_levels is not None:
            next_obs, next_state = resample(level_key, out)
        transition = (obs, action, log_prob, value[0], out.reward, out.done, out.info["success"])
        return (next_obs, next_state, rnn, out.done), transition

    (last_obs, env_state, rnn, last_done), traj = jax.lax.scan(
        step, (obs, env_state, init_carry, first_done), jax.random.split(key, num_steps)
    )
    batched = jax.tree.map(lambda x: x[None], last_obs)
    _, _, last_value = network.apply(params, rnn, batched, last_done[None])
    obs_seq, actions, log_probs, values, rewards, dones, successes = traj
    zeros = jnp.zeros_like(rewards)
    rollout = Rollout(
        obs=obs_seq,
        actions=actions,
        log_probs=log_probs,
        values=values,
        rewards=rewards.astype(jnp.float32),
        dones=dones,
        successes=successes & dones,
        last_value=last_value[0],
        advantages=zeros,
        targets=zeros,
        init_carry=init_carry if start is None else start,
    )
    if start is not None:
        return rollout, (last_obs, env_state, Carried(rnn, last_done))
    return rollout, env_state


def gae(rewards, values, dones, last_value, gamma: float, lam: float):
    """Generalised advantage estimation over time-major (T, N) arrays; cut at episode ends."""

    def backward(carry, inputs):
        next_adv, next_value = carry
        reward, value, done = inputs
        not_done = 1.0 - done.astype(jnp.float32)
        delta = reward + gamma * next_value * not_done - value
        adv = delta + gamma * lam * not_done * next_adv
        return (adv, value), adv

    init = (jnp.zeros_like(last_value), last_value)
    _, advantages = jax.lax.scan(backward, init, (rewards, values, dones), reverse=True)
    return advantages, advantages + values


def with_gae(rollout: Rollout, gamma: float, lam: float) -> Rollout:
    adv, targets = gae(
        rollout.rewards, rollout.values, rollout.dones, rollout.last_value, gamma, lam
    )
    return rollout.replace(advantages=adv, targets=targets)


def _masked_mean(x, weight):
    return (x * weight).sum() / jnp.maximum(weight.sum(), 1.0)


def loss_fn(params, network: ActorCritic, batch: Rollout, weight, ppo_cfg):
    """Clipped PPO loss over a (T, n) batch; ``weight`` (T, n) masks out untrained envs."""
    init, first = batch.init_carry, jnp.ones_like(batch.dones[:1])
    if isinstance(init, Carried):  # episodes continued from the previous rollout
        init, first = init.carry, init.done[None]
    resets = jnp.concatenate([first, batch.dones[:-1]], axis=0)
    _, policy, values = network.apply(params, init, batch.obs, resets)
    log_prob, entropy = log_prob_and_entropy(policy, batch.actions, network.continuous)
    adv = batch.advantages
    if ppo_cfg.normalize_advantages:
        mean = _masked_mean(adv, weight)
        std = jnp.sqrt(_masked_mean((adv - mean) ** 2, weight))
        adv = (adv - mean) / (std + 1e-8)
    ratio = jnp.exp(log_prob - batch.log_probs)
    clipped = jnp.clip(ratio, 1.0 - ppo_cfg.clip_eps, 1.0 + ppo_cfg.clip_eps)
    policy_loss = -_masked_mean(jnp.minimum(ratio * adv, clipped * adv), weight)
    value_err = (values - batch.targets) ** 2
    if ppo_cfg.clip_value:
        v_clipped = batch.values + jnp.clip(
            values - batch.values, -ppo_cfg.clip_eps, ppo_cfg.clip_eps
        )
        value_err = jnp.maximum(value_err, (v_clipped - batch.targets) ** 2)
    value_loss = 0.5 * _masked_mean(value_err, weight)
    entropy = _masked_mean(entropy, weight)
    total = policy_loss + ppo_cfg.vf_coef * value_loss - ppo_cfg.ent_coef * entropy
    approx_kl = _masked_mean((ratio - 1.0) - jnp.log(ratio), weight)
    return total, {
        "loss/policy": policy_loss,
        "loss/value": value_loss,
        "loss/entropy": entropy,
        "loss/approx_kl": approx_kl,
    }


def update(
    key: chex.PRNGKey,
    student: TrainState,
    network: ActorCritic,
    rollout: Rollout,
    train_mask: chex.Array,
    ppo_cfg,
) -> tuple[TrainState, dict[str, chex.Array]]:
    """PPO epochs over env-wise minibatches; envs with ``train_mask`` False get no gradient."""
    num_envs = rollout.rewards.shape[1]
    num_mb = ppo_cfg.num_minibatches
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def take(perm):
        # Leaves with a time axis are (T, N, ...); last_value and init_carry are (N, ...).
        per_env = (rollout.last_value, rollout.init_carry)
        batch = jax.tree.map(lambda x: x[:, perm], rollout.replace(last_value=(), init_carry=()))
        last_value, carry = jax.tree.map(lambda x: x[perm], per_env)
        return batch.replace(last_value=last_value, init_carry=carry), train_mask[perm]

    def minibatch_step(student, perm):
        batch, mask = (rollout, train_mask) if perm is None else take(perm)
        weight = jnp.broadcast_to(mask[None, :], batch.rewards.shape).astype(jnp.float32)
        (_, stats), grads = grad_fn(student.params, network, batch, weight, ppo_cfg)
        stats["grad_norm"] = optax.tree_utils.tree_norm(grads)
        return student.apply_gradients(grads=grads), stats

    def epoch(student, epoch_key):
        if num_mb == 1:
            # One minibatch holds every env: shuffling them changes no gradient (the loss is
            # a mean over envs), only the order of a sum, so skip the gather of the rollout.
            student, stats = minibatch_step(student, None)
            return student, jax.tree.map(lambda s: s[None], stats)
        perm = jax.random.permutation(epoch_key, num_envs).reshape(num_mb, -1)
        return jax.lax.scan(minibatch_step, student, perm)

    student, stats = jax.lax.scan(epoch, student, jax.random.split(key, ppo_cfg.epochs))
    return student, jax.tree.map(jnp.mean, stats)
