"""Actor-critic students.

``ActorCritic`` runs over a whole time-major sequence ``(T, N, ...)``: the observation
encoder and the LSTM's input projection are applied to all T*N inputs in one large matrix
product, and only the recurrent product ``h @ W_h`` stays inside the ``lax.scan``. The rollout
calls it with T = 1; the PPO update calls it once over the full sequence.
"""

from __future__ import annotations

from collections.abc import Sequence

import chex
import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Carry = tuple[chex.Array, chex.Array]  # (c, h), each (N, H) float32


class Encoder(nn.Module):
    """Observation -> feature vector. Dict observations with an ``image`` go through a 3x3
    conv; a ``direction`` entry gets a learned embedding; flat arrays go straight through."""

    conv_channels: int = 16
    direction_embedding: int = 5

    @nn.compact
    def __call__(self, obs) -> chex.Array:
        if not isinstance(obs, dict):
            return obs.astype(jnp.float32).reshape(obs.shape[:-1] + (-1,))
        parts = []
        if "image" in obs:
            image = obs["image"].astype(jnp.float32)
            lead = image.shape[:-3]
            x = image.reshape((-1,) + image.shape[-3:])
            x = nn.Conv(self.conv_channels, (3, 3), padding="VALID", name="conv")(x)
            x = nn.relu(x)
            parts.append(x.reshape(lead + (-1,)))
        if "direction" in obs:
            one_hot = jax.nn.one_hot(obs["direction"], 4, dtype=jnp.float32)
            parts.append(nn.Dense(self.direction_embedding, name="direction")(one_hot))
        if "vector" in obs:
            parts.append(obs["vector"].astype(jnp.float32))
        return jnp.concatenate(parts, axis=-1)


class ActorCritic(nn.Module):
    """Encoder -> (LSTM | MLP torso) -> actor and critic heads.

    Call with ``(carry, obs, resets)``: obs leaves ``(T, N, ...)``, resets ``(T, N)`` bool
    (zero the recurrent state before step t). Returns ``(carry, policy_params, values)`` with
    policy params ``(T, N, A)`` (logits, or Gaussian means) and values ``(T, N)``.
    """

    action_dim: int
    continuous: bool = False
    recurrent: bool = True
    lstm_size: int = 256
    head_size: int = 32
    mlp_sizes: Sequence[int] = (64, 64)
    conv_channels: int = 16
    direction_embedding: int = 5

    @nn.compact
    def __call__(self, carry, obs, resets):
        x = Encoder(self.conv_channels, self.direction_embedding, name="encoder")(obs)
        if self.recurrent:
            carry, x = self._lstm(carry, x, resets)
        else:
            for i, size in enumerate(self.mlp_sizes):
                x = nn.tanh(nn.Dense(size, kernel_init=_ortho(np.sqrt(2)), name=f"torso_{i}")(x))
        actor = nn.relu(nn.Dense(self.head_size, kernel_init=_ortho(2), name="actor_hidden")(x))
        policy = nn.Dense(self.action_dim, kernel_init=_ortho(0.01), name="actor_out")(actor)
        if self.continuous:
            log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
            policy = jnp.concatenate([policy, jnp.broadcast_to(log_std, policy.shape)], -1)
        critic = nn.relu(nn.Dense(self.head_size, kernel_init=_ortho(2), name="critic_hidden")(x))
        values = nn.Dense(1, kernel_init=_ortho(1.0), name="critic_out")(critic)[..., 0]
        return carry, policy, values

    def _lstm(self, carry: Carry, x: chex.Array, resets: chex.Array):
        size = self.lstm_size
        # Input projection for every step at once: one (T*N, D) x (D, 4H) matrix product.
        x_proj = nn.Dense(4 * size, name="lstm_input")(x)
        w_h = self.param("lstm_recurrent", nn.initializers.orthogonal(), (size, 4 * size))

        def cell(state, inputs):
            c, h = state
            xp, reset = inputs
            keep = (~reset)[:, None].astype(jnp.float32)
            c, h = c * keep, h * keep
            i, f, g, o = jnp.split(xp + h @ w_h, 4, axis=-1)
            c = nn.sigmoid(f) * c + nn.sigmoid(i) * jnp.tanh(g)
            h = nn.sigmoid(o) * jnp.tanh(c)
            return (c, h), h

        carry, hs = jax.lax.scan(cell, carry, (x_proj, resets))
        return carry, hs

    def initial_carry(self, batch: int) -> Carry:
        if not self.recurrent:
            return ()
        zeros = jnp.zeros((batch, self.lstm_size), jnp.float32)
        return (zeros, zeros)


def _ortho(scale: float):
    return nn.initializers.orthogonal(scale)


def distribution(policy: chex.Array, continuous: bool) -> distrax.Distribution:
    """The action distribution for the network's policy output."""
    if continuous:
        mean, log_std = jnp.split(policy, 2, axis=-1)
        return distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))
    return distrax.Categorical(logits=policy)


def make_network(network_cfg, action_space) -> ActorCritic:
    """Builds the student for an action space (gymnax Discrete or Box)."""
    if hasattr(action_space, "n"):
        action_dim, continuous = int(action_space.n), False
    else:
        action_dim, continuous = int(np.prod(action_space.shape)), True
    return ActorCritic(
        action_dim=action_dim,
        continuous=continuous,
        recurrent=network_cfg.kind == "conv_lstm",
        lstm_size=network_cfg.lstm_size,
        head_size=network_cfg.head_size,
        mlp_sizes=tuple(network_cfg.mlp_sizes),
        conv_channels=network_cfg.conv_channels,
        direction_embedding=network_cfg.direction_embedding,
    )
