"""The hand-written kernels compute what the plain formulations compute: the patch
convolution (against flax's ``nn.Conv``), the LSTM's hand-written backward pass (against an
autodiff LSTM) and the dense layer's weight gradient."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ued.core.kernels import PatchConv, dense, lstm, lstm_recurrence


@pytest.mark.parametrize("shape", [(7, 5, 5, 3), (3, 4, 5, 5, 3), (2, 13, 13, 3)])
def test_patch_conv_equals_flax_conv(shape):
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    flat = x.reshape((-1,) + shape[-3:])
    conv = nn.Conv(6, (3, 3), padding="VALID", name="conv")
    patch = PatchConv(6, name="conv")
    params = conv.init(jax.random.PRNGKey(1), flat)
    assert jax.tree.all(
        jax.tree.map(np.array_equal, params, patch.init(jax.random.PRNGKey(1), x))
    )  # same names, shapes and initial values
    params = jax.tree.map(lambda p: p + 0.1, params)  # a nonzero bias too
    want = conv.apply(params, flat).reshape(shape[:-3] + (shape[-3] - 2, shape[-2] - 2, 6))
    np.testing.assert_allclose(patch.apply(params, x), want, atol=1e-5)


@pytest.mark.parametrize("dense_backward", [False, True])
@pytest.mark.parametrize(
    "shape, padding",
    [
        ((7, 5, 5, 3), "VALID"),
        ((3, 4, 5, 5, 3), "VALID"),
        ((7, 5, 5, 3), "SAME"),
        ((3, 4, 5, 5, 3), "SAME"),
        ((2, 13, 13, 3), "SAME"),
        ((4, 2, 3, 3), "SAME"),  # a 2x3 image: too small for "VALID"
    ],
)
def test_patch_conv_options_equal_flax_conv(shape, padding, dense_backward):
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    flat = x.reshape((-1,) + shape[-3:])
    conv = nn.Conv(6, (3, 3), padding=padding, name="conv")
    patch = PatchConv(6, padding=padding, dense_backward=dense_backward, name="conv")
    params = conv.init(jax.random.PRNGKey(1), flat)
    assert jax.tree.all(jax.tree.map(np.array_equal, params, patch.init(jax.random.PRNGKey(1), x)))
    params = jax.tree.map(lambda p: p + 0.1, params)
    want = conv.apply(params, flat)
    want = want.reshape(shape[:-3] + want.shape[-3:])
    np.testing.assert_allclose(patch.apply(params, x), want, atol=1e-5)
    cotangent = jax.random.normal(jax.random.PRNGKey(2), want.shape)
    got = jax.grad(lambda p, x: (patch.apply(p, x) * cotangent).sum(), argnums=(0, 1))(params, x)
    ref = jax.grad(
        lambda p, x: (conv.apply(p, x.reshape(flat.shape)).reshape(want.shape) * cotangent).sum(),
        argnums=(0, 1),
    )(params, x)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def test_patch_conv_rejects_unknown_padding():
    x = jnp.zeros((2, 5, 5, 3))
    with pytest.raises(ValueError, match="padding"):
        PatchConv(6, padding="CIRCULAR").init(jax.random.PRNGKey(1), x)


def reference_lstm(params, x, keep, carry):
    """Autodiff-able LSTM as a plain scan (the formulation the fast one replaces)."""
    w_x, b, w_h = params

    def cell(state, inputs):
        c, h = state
        xt, k = inputs
        c, h = c * k[:, None], h * k[:, None]
        i, f, g, o = jnp.split(xt @ w_x + b + h @ w_h, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h

    return jax.lax.scan(cell, carry, (x, keep))


@pytest.fixture(scope="module")
def lstm_case():
    t, n, d, h = 12, 5, 7, 8
    ks = jax.random.split(jax.random.PRNGKey(3), 8)
    params = (
        jax.random.normal(ks[0], (d, 4 * h)) * 0.4,
        jax.random.normal(ks[1], (4 * h,)) * 0.4,
        jax.random.normal(ks[2], (h, 4 * h)) * 0.4,
    )
    x = jax.random.normal(ks[3], (t, n, d))
    keep = (jax.random.uniform(ks[4], (t, n)) > 0.25).astype(jnp.float32)
    carry = (jax.random.normal(ks[5], (n, h)), jax.random.normal(ks[6], (n, h)))
    weights = jax.random.normal(ks[7], (t, n, h))
    return params, x, keep, carry, weights


def _wide(params, x, keep, carry):
    """The wide-input path: the input projection by ``dense`` (own backward pass), then the
    recurrence."""
    w_x, b, w_h = params
    return lstm_recurrence(w_h, dense(x, w_x, b), keep, carry)


@pytest.mark.parametrize("fn", [lstm, _wide], ids=["lstm", "dense+recurrence"])
def test_lstm_forward_and_gradients_match_autodiff(lstm_case, fn):
    params, x, keep, carry, weights = lstm_case

    def loss(fn):
        def f(params, x, carry):
            (c, h), hs = fn(params, x, keep, carry)
            return (hs * weights).sum() + (c**2).sum() + (3 * h).sum()

        return f

    np.testing.assert_allclose(
        loss(fn)(params, x, carry), loss(reference_lstm)(params, x, carry), rtol=1e-5
    )
    got = jax.grad(loss(fn), argnums=(0, 1, 2))(params, x, carry)
    want = jax.grad(loss(reference_lstm), argnums=(0, 1, 2))(params, x, carry)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    one = fn(params, x[:1], keep[:1], carry)  # the rollout's loop-free path
    ref = reference_lstm(params, x[:1], keep[:1], carry)
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_lstm_single_step_and_vmap(lstm_case):
    params, x, keep, carry, _ = lstm_case
    one = lstm(params, x[:1], keep[:1], carry)  # the rollout's loop-free path
    ref = reference_lstm(params, x[:1], keep[:1], carry)
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Seeds vmap the custom backward pass: per-seed gradients equal separate ones.
    stacked = jax.tree.map(lambda p: jnp.stack([p, 0.5 * p]), params)

    def loss(p):
        return lstm(p, x, keep, carry)[1].sum()

    batched = jax.vmap(jax.grad(loss))(stacked)
    second = jax.grad(loss)(jax.tree.map(lambda p: 0.5 * p, params))
    for g, w in zip(jax.tree.leaves(batched), jax.tree.leaves(second), strict=True):
        np.testing.assert_allclose(g[1], w, rtol=1e-5, atol=1e-6)
