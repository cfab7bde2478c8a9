"""Actor-critic students: the model. Its fast CPU kernels are in ``ued.core.kernels``.

``ActorCritic`` runs over a whole time-major sequence ``(T, N, ...)``: the observation
encoder and the LSTM's input projection are applied to all T*N inputs in one large matrix
product, and only the recurrent product ``h @ W_h`` stays inside the ``lax.scan``. The rollout
calls it with T = 1; the PPO update calls it once over the full sequence.

The encoder is chosen from the env's observation space (``make_network``), following the
contract of ``envs.core.observation_parts``.
"""

from __future__ import annotations

from collections.abc import Sequence

import chex
import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from envs.core import ObsPart, observation_parts
from ued.core.kernels import Carry, PatchConv, dense, lstm, lstm_recurrence

__all__ = [
    "ActorCritic",
    "Encoder",
    "PatchConv",
    "dense",
    "distribution",
    "log_prob_and_entropy",
    "lstm",
    "lstm_recurrence",
    "make_network",
    "sample_and_log_prob",
]


class Encoder(nn.Module):
    """Observation -> feature vector, one encoder per part of the observation space.

    Images go through a 3x3 conv (``conv``, or ``conv_<key>`` when there are several), a
    ``Discrete(n)`` entry through a learned embedding of its one-hot (named after its key),
    vectors as they are; the features are concatenated in the parts' order. Without parts,
    the observation is taken to be a feature vector already (PAIRED's adversary encodes its
    own observations and hands the features on).
    """

    parts: tuple[ObsPart, ...] = ()  # from envs.core.observation_parts
    conv_channels: int = 16
    direction_embedding: int = 5  # features of each discrete entry's embedding

    @nn.compact
    def __call__(self, obs) -> chex.Array:
        if not self.parts:
            return obs.astype(jnp.float32)
        images = sum(part.kind == "image" for part in self.parts)
        features = []
        for part in self.parts:
            x = obs if part.key is None else obs[part.key]
            if part.kind == "image":
                x = x.astype(jnp.float32)
                name = "conv" if images == 1 else f"conv_{part.key}"
                # Leading axes stay separate (no (T*N) merge), so a batch axis sharded over
                # devices stays sharded.
                y = nn.relu(PatchConv(self.conv_channels, name=name)(x))
                features.append(y.reshape(x.shape[:-3] + (-1,)))
            elif part.kind == "discrete":
                one_hot = jax.nn.one_hot(x, part.num_values, dtype=jnp.float32)
                name = part.key or "embedding"
                features.append(nn.Dense(self.direction_embedding, name=name)(one_hot))
            else:
                features.append(x.astype(jnp.float32))
        return jnp.concatenate(features, axis=-1)


class ActorCritic(nn.Module):
    """Encoder -> (LSTM | MLP torso) -> actor and critic heads.

    ``observation`` says what the encoder reads (``envs.core.observation_parts`` of the
    env's observation space); empty, the observations are feature vectors already. Call
    with ``(carry, obs, resets)``: obs leaves ``(T, N, ...)``, resets ``(T, N)`` bool (zero
    the recurrent state before step t). Returns ``(carry, policy_params, values)`` with
    policy params ``(T, N, A)`` (logits, or Gaussian means) and values ``(T, N)``.
    """

    action_dim: int
    observation: tuple[ObsPart, ...] = ()
    continuous: bool = False
    recurrent: bool = True
    lstm_size: int = 256
    head_size: int = 32
    mlp_sizes: Sequence[int] = (64, 64)
    conv_channels: int = 16
    direction_embedding: int = 5
    # True: the LSTM's input projection is one (T, N, D) x (D, 4H) product (``dense``)
    # before ``lstm_recurrence``, instead of ``lstm``'s four per-gate products. Same
    # parameters and result; faster when D is much larger than 4H (PAIRED's adversary reads
    # D = 15548 conv features). The student keeps the default.
    wide_input: bool = False

    @nn.compact
    def __call__(self, carry, obs, resets):
        encoder = Encoder(
            self.observation, self.conv_channels, self.direction_embedding, name="encoder"
        )
        x = encoder(obs)
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
        # Same parameters as nn.Dense(4 * size, name="lstm_input") followed by the cell.
        w_x, b = _DenseParams(4 * size, name="lstm_input")(x.shape[-1])
        w_h = self.param("lstm_recurrent", nn.initializers.orthogonal(), (size, 4 * size))
        keep = (~resets).astype(jnp.float32)
        if self.wide_input:
            if x.shape[0] == 1:
                # A rollout step, inside the rollout's loop: the product with the (4H, D)
                # transposed kernel is ~1.4x faster on XLA:CPU for few rows. The barrier keeps
                # XLA from folding the transpose back into the product, and lets it hoist the
                # transpose out of the loop (one copy of the kernel per rollout).
                zx = x @ jax.lax.optimization_barrier(w_x.T).T + b
            else:
                zx = dense(x, w_x, b)
            return lstm_recurrence(w_h, zx, keep, carry)
        return lstm((w_x, b, w_h), x, keep, carry)

    def initial_carry(self, batch: int) -> Carry:
        if not self.recurrent:
            return ()
        zeros = jnp.zeros((batch, self.lstm_size), jnp.float32)
        return (zeros, zeros)


class _DenseParams(nn.Module):
    """The parameters of ``nn.Dense(features)`` (same names, shapes and initialisers)."""

    features: int

    @nn.compact
    def __call__(self, in_features: int) -> tuple[chex.Array, chex.Array]:
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (in_features, self.features))
        return kernel, self.param("bias", nn.initializers.zeros_init(), (self.features,))


def _ortho(scale: float):
    return nn.initializers.orthogonal(scale)


def distribution(policy: chex.Array, continuous: bool) -> distrax.Distribution:
    """The action distribution for the network's policy output."""
    if continuous:
        mean, log_std = jnp.split(policy, 2, axis=-1)
        return distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))
    return distrax.Categorical(logits=policy)


def sample_and_log_prob(key, policy: chex.Array, continuous: bool):
    """Samples actions from the policy output and returns ``(actions, log_probs)``.

    The same draws and values as ``distribution(policy, continuous).sample_and_log_prob``,
    without building a distrax object in every step of the rollout.
    """
    if continuous:
        return distribution(policy, continuous).sample_and_log_prob(seed=key)
    logits = jax.nn.log_softmax(policy)
    actions = jax.random.categorical(key, logits, shape=(1,) + logits.shape[:-1])[0]
    return actions, jnp.take_along_axis(logits, actions[..., None], axis=-1)[..., 0]


def log_prob_and_entropy(policy: chex.Array, actions: chex.Array, continuous: bool):
    """``(log pi(actions), entropy)`` of the policy output, as ``distribution`` computes."""
    if continuous:
        dist = distribution(policy, continuous)
        return dist.log_prob(actions), dist.entropy()
    logits = jax.nn.log_softmax(policy)
    log_prob = jnp.take_along_axis(logits, actions[..., None].astype(jnp.int32), axis=-1)
    return log_prob[..., 0], -jnp.sum(jnp.exp(logits) * logits, axis=-1)


def make_network(network_cfg, observation_space, action_space) -> ActorCritic:
    """Builds the student for the env's spaces (gymnax): its encoder reads the parts of
    ``observation_space`` (a ValueError names an entry it cannot read), its policy is
    categorical for a ``Discrete`` action space and Gaussian for a ``Box``."""
    if hasattr(action_space, "n"):
        action_dim, continuous = int(action_space.n), False
    else:
        action_dim, continuous = int(np.prod(action_space.shape)), True
    return ActorCritic(
        action_dim=action_dim,
        observation=observation_parts(observation_space),
        continuous=continuous,
        recurrent=network_cfg.kind == "conv_lstm",
        lstm_size=network_cfg.lstm_size,
        head_size=network_cfg.head_size,
        mlp_sizes=tuple(network_cfg.mlp_sizes),
        conv_channels=network_cfg.conv_channels,
        direction_embedding=network_cfg.direction_embedding,
    )
