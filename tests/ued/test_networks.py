"""The student model: its encoder is chosen from the observation space, its fast paths
(wide LSTM input, categorical sampling) compute what the plain ones compute, and its
parameters keep their names. The kernels themselves are tested in ``test_kernels.py``."""

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces

from envs.core import ObsPart, observation_parts
from ued.config.config import NetworkConfig
from ued.core.networks import (
    ActorCritic,
    Encoder,
    log_prob_and_entropy,
    make_network,
    sample_and_log_prob,
)

SMALL = NetworkConfig(lstm_size=8, head_size=4, conv_channels=2)


def test_actor_critic_wide_input_has_the_same_parameters_and_results():
    x = jax.random.normal(jax.random.PRNGKey(0), (6, 3, 40))
    resets = jnp.zeros((6, 3), bool).at[0].set(True).at[3, 1].set(True)
    default = ActorCritic(action_dim=5, lstm_size=8, head_size=4)
    wide = ActorCritic(action_dim=5, lstm_size=8, head_size=4, wide_input=True)
    carry = default.initial_carry(3)
    params = default.init(jax.random.PRNGKey(1), carry, x, resets)
    assert jax.tree.all(
        jax.tree.map(np.array_equal, params, wide.init(jax.random.PRNGKey(1), carry, x, resets))
    )

    def loss(net):
        def f(params, x):
            (c, h), policy, values = net.apply(params, carry, x, resets)
            return (policy**2).sum() + values.sum() + c.sum() + h.sum()

        return f

    np.testing.assert_allclose(loss(wide)(params, x), loss(default)(params, x), rtol=1e-5)
    step = (carry, x[:1], resets[:1])  # a rollout step (T = 1): its own path
    for a, b in zip(
        jax.tree.leaves(wide.apply(params, *step)),
        jax.tree.leaves(default.apply(params, *step)),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    got = jax.grad(loss(wide), argnums=(0, 1))(params, x)
    want = jax.grad(loss(default), argnums=(0, 1))(params, x)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def _init(net, obs):
    """The parameter shapes of ``net`` on one observation (leaves get (T, N) = (1, 1))."""
    obs = jax.tree.map(lambda x: jnp.asarray(x)[None, None], obs)
    params = net.init(jax.random.PRNGKey(0), net.initial_carry(1), obs, jnp.zeros((1, 1), bool))
    return jax.tree.map(jnp.shape, params["params"])


def test_actor_critic_parameters_keep_their_names_and_shapes():
    space = spaces.Dict(
        {"image": spaces.Box(0, 1, (5, 5, 3), jnp.uint8), "direction": spaces.Discrete(4)}
    )
    net = make_network(SMALL, space, spaces.Discrete(3))
    obs = {"image": jnp.zeros((5, 5, 3), jnp.uint8), "direction": jnp.zeros((), jnp.int32)}
    shapes = _init(net, obs)
    assert shapes["encoder"]["conv"] == {"kernel": (3, 3, 3, 2), "bias": (2,)}
    assert shapes["encoder"]["direction"] == {"kernel": (4, 5), "bias": (5,)}
    assert shapes["lstm_input"] == {"kernel": (3 * 3 * 2 + 5, 32), "bias": (32,)}
    assert shapes["lstm_recurrent"] == (8, 32)


def test_observation_parts_follow_the_space_types_not_the_key_names():
    space = spaces.Dict(
        {
            "extra": spaces.Box(-1.0, 1.0, (2,), jnp.float32),
            "heading": spaces.Discrete(6),
            "pixels": spaces.Box(0, 1, (4, 6, 3), jnp.uint8),
        }
    )
    assert observation_parts(space) == (
        ObsPart("pixels", "image", (4, 6, 3), 0),
        ObsPart("heading", "discrete", (), 6),
        ObsPart("extra", "vector", (2,), 0),
    )
    assert observation_parts(spaces.Box(0.0, 1.0, (7,), jnp.float32)) == (
        ObsPart(None, "vector", (7,), 0),
    )
    with pytest.raises(ValueError, match="'grid'"):
        observation_parts(spaces.Dict({"grid": spaces.Box(0, 1, (5, 5), jnp.uint8)}))


def test_encoder_reads_every_part_in_order():
    space = spaces.Dict(
        {
            "extra": spaces.Box(-1.0, 1.0, (2,), jnp.float32),
            "heading": spaces.Discrete(6),
            "pixels": spaces.Box(0, 1, (4, 6, 3), jnp.uint8),
        }
    )
    obs = {
        "extra": jnp.array([[0.25, -0.5]]),
        "heading": jnp.array([5]),
        "pixels": jnp.ones((1, 4, 6, 3), jnp.uint8),
    }
    encoder = Encoder(observation_parts(space), conv_channels=2, direction_embedding=3)
    params = encoder.init(jax.random.PRNGKey(0), obs)
    shapes = jax.tree.map(jnp.shape, params["params"])
    assert shapes == {
        "conv": {"kernel": (3, 3, 3, 2), "bias": (2,)},
        "heading": {"kernel": (6, 3), "bias": (3,)},
    }
    features = encoder.apply(params, obs)
    assert features.shape == (1, 2 * 4 * 2 + 3 + 2)  # conv (2, 4, 2), embedding, vector
    np.testing.assert_array_equal(features[0, -2:], [0.25, -0.5])
    one_hot_row = params["params"]["heading"]["kernel"][5] + params["params"]["heading"]["bias"]
    np.testing.assert_allclose(features[0, 16:19], one_hot_row, rtol=1e-6)


def test_several_images_get_a_conv_each_and_flat_observations_none():
    image = spaces.Box(0, 1, (3, 3, 1), jnp.uint8)
    net = make_network(SMALL, spaces.Dict({"a": image, "b": image}), spaces.Discrete(2))
    obs = {"a": jnp.zeros((3, 3, 1), jnp.uint8), "b": jnp.zeros((3, 3, 1), jnp.uint8)}
    assert set(_init(net, obs)["encoder"]) == {"conv_a", "conv_b"}
    flat = make_network(SMALL, spaces.Box(0.0, 1.0, (7,), jnp.float32), spaces.Discrete(2))
    shapes = _init(flat, jnp.zeros((7,)))
    assert "encoder" not in shapes and shapes["lstm_input"]["kernel"] == (7, 32)


def test_categorical_fast_path_equals_distrax():
    for seed in range(5):
        logit_key, sample_key = jax.random.split(jax.random.PRNGKey(seed))
        logits = 3 * jax.random.normal(logit_key, (6, 4, 3))
        dist = distrax.Categorical(logits=logits)
        want_actions, want_log_prob = dist.sample_and_log_prob(seed=sample_key)
        actions, log_prob = sample_and_log_prob(sample_key, logits, False)
        np.testing.assert_array_equal(actions, want_actions)  # the same draws
        np.testing.assert_array_equal(log_prob, want_log_prob)
        log_prob, entropy = log_prob_and_entropy(logits, actions, False)
        np.testing.assert_array_equal(log_prob, dist.log_prob(actions))
        np.testing.assert_allclose(entropy, dist.entropy(), rtol=1e-6)
