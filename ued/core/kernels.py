"""Hand-written kernels for XLA:CPU behind the students' layers: a 3x3 convolution as one
patch product, an LSTM with a hand-written backward pass, and a dense layer whose weight
gradient is one plain product.

Each computes what its plain formulation computes (``tests/ued/test_kernels.py`` checks the
values and gradients against flax's ``nn.Conv``, an autodiff LSTM and ``x @ w + b``); they
exist because XLA:CPU runs the plain ones slowly for the student's small shapes. The model
(``ued.core.networks``) uses them; nothing here knows about observations or policies.
"""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

Carry = tuple[chex.Array, chex.Array]  # (c, h), each (N, H) float32


class PatchConv(nn.Module):
    """A 3x3 convolution computed as one matrix product over extracted patches.

    Same parameters (``kernel`` (3, 3, C, F), ``bias`` (F,)), initialisation and result as
    ``nn.Conv(F, (3, 3), padding=padding)``, ``padding`` "VALID" (the default: (..., H, W, C)
    -> (..., H-2, W-2, F)) or "SAME" (zero padding, (..., H, W, F)). XLA's CPU convolution
    (and above all its weight gradient) is slow for these tiny images; the patch product's
    forward and backward passes are plain, fast matrix products.
    """

    features: int
    padding: str = "VALID"
    # True: the product's backward pass by ``dense`` (its weight gradient as one plain
    # product over merged leading axes); same result. The student keeps the default.
    dense_backward: bool = False

    @nn.compact
    def __call__(self, x: chex.Array) -> chex.Array:
        if self.padding not in ("VALID", "SAME"):
            raise ValueError(f"PatchConv padding must be 'VALID' or 'SAME', not {self.padding!r}")
        channels = x.shape[-1]
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (3, 3, channels, self.features)
        )
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        if self.padding == "SAME":
            x = jnp.pad(x, [(0, 0)] * (x.ndim - 3) + [(1, 1), (1, 1), (0, 0)])
        height, width = x.shape[-3:-1]
        rows, cols = height - 2, width - 2
        patches = jnp.concatenate(
            [x[..., i : i + rows, j : j + cols, :] for i in range(3) for j in range(3)], axis=-1
        )  # (..., rows, cols, 9C) ordered (kernel row, kernel col, channel) like the kernel
        kernel = kernel.reshape(9 * channels, self.features)
        if self.dense_backward:
            return dense(patches, kernel, bias)
        return patches @ kernel + bias


# --- the LSTM, with a hand-written backward pass ------------------------------------------
#
# Over T steps, with gates [i, f, g, o] along the last axis of w_x, b and w_h (4H columns):
#   z_t = x_t w_x + b + (keep_t h_{t-1}) w_h
#   c_t = sigmoid(z_f) * keep_t c_{t-1} + sigmoid(z_i) * tanh(z_g),  h_t = sigmoid(z_o) * tanh(c_t)
# Each gate is computed as its own (N, H) array with its own (H, H) recurrent product: on
# XLA:CPU, slicing gates out of one (N, 4H) array in every step costs more than the
# products themselves.


def _gate_split(w: chex.Array) -> tuple[chex.Array, ...]:
    """(..., 4H) -> four (..., H) arrays, gates i, f, g, o."""
    size = w.shape[-1] // 4
    return tuple(w[..., j * size : (j + 1) * size] for j in range(4))


def _cell(w_h, carry: Carry, xs, keep: chex.Array):
    """One step from the gates' input projections ``xs`` (4 x (N, H), bias included);
    returns the carry and the gate activations."""
    c, h = carry
    k = keep[:, None]
    h = h * k
    zi, zf, zg, zo = (x + h @ w for x, w in zip(xs, w_h, strict=True))
    i, f, g, o = jax.nn.sigmoid(zi), jax.nn.sigmoid(zf), jnp.tanh(zg), jax.nn.sigmoid(zo)
    c = f * (c * k) + i * g
    return (c, o * jnp.tanh(c)), (i, f, g, o)


def _with_ones(x: chex.Array) -> chex.Array:
    """(T, N, D) -> (T, N, D + 1) with a last column of ones, so that ``[x, 1] @ [w_x; b]``
    adds the bias inside the product and ``[x, 1]^T dz`` yields the bias gradient too."""
    return jnp.concatenate([x, jnp.ones(x.shape[:-1] + (1,), x.dtype)], axis=-1)


def _project(w_x, b, x_ones):
    w = jnp.concatenate([w_x, b[None]], axis=0)
    return tuple(x_ones @ w_g for w_g in _gate_split(w))  # 4 x (T, N, H)


def _single_step(zx: chex.Array, w_h: chex.Array, keep: chex.Array, carry: Carry):
    """One step from the input projection ``zx`` (N, 4H) with whole-matrix products;
    returns ``(carry, hs)`` with hs (1, N, H)."""
    c, h = carry
    k = keep[:, None]
    zi, zf, zg, zo = _gate_split(zx + (h * k) @ w_h)
    c = jax.nn.sigmoid(zf) * (c * k) + jax.nn.sigmoid(zi) * jnp.tanh(zg)
    h = jax.nn.sigmoid(zo) * jnp.tanh(c)
    return (c, h), h[None]


@jax.custom_vjp
def lstm(params, x: chex.Array, keep: chex.Array, carry: Carry):
    """Runs the LSTM over time.

    Args:
        params: ``(w_x (D, 4H), b (4H,), w_h (H, 4H))``, gates i, f, g, o.
        x: (T, N, D) inputs.
        keep: (T, N) float32; 0 zeroes the carry before step t (an episode starts).
        carry: ``(c, h)``, each (N, H), the state before step 0.

    Returns:
        ``(carry, hs)``: the state after step T-1 and the hidden states (T, N, H).

    The input projection of all T*N inputs is done before the loop; only ``h @ w_h`` stays
    in it. The custom backward pass runs the (N, H) x (H, H) products of one step per loop
    iteration and computes all weight gradients after the loop as (., T*N) x (T*N, H)
    products, instead of autodiff's rank-N update of an (H, 4H) gradient carried through
    the loop.
    """
    w_x, b, w_h = params
    if x.shape[0] == 1:  # the rollout's single step: no loop, whole-matrix products
        return _single_step(x[0] @ w_x + b, w_h, keep[0], carry)
    return _forward_scan(w_h, _project(w_x, b, _with_ones(x)), keep, carry, residuals=False)


def _forward_scan(w_h, zx: tuple, keep, carry, residuals: bool):
    """The forward loop shared by ``lstm`` and ``lstm_recurrence`` over the gates' input
    projections ``zx`` (4 x (T, N, H)). Returns ``(carry, hs)``, or with ``residuals``
    ``(carry, (cs, hs, gate activations))`` for the backward pass."""
    w_h = _gate_split(w_h)

    def step(carry, inputs):
        carry, acts = _cell(w_h, carry, *inputs)
        return carry, ((carry[0], carry[1], acts) if residuals else carry[1])

    return jax.lax.scan(step, carry, (zx, keep))


def _lstm_fwd(params, x, keep, carry):
    w_x, b, w_h = params
    x_ones = _with_ones(x)
    last, (cs, hs, acts) = _forward_scan(w_h, _project(w_x, b, x_ones), keep, carry, True)
    return (last, hs), (params, x_ones, keep, carry, cs, hs, acts)


def _lstm_bwd(residuals, cotangents):
    (w_x, _, w_h), x_ones, keep, carry, cs, hs, acts = residuals
    dcarry, dz, dw_h = _backward_scan(w_h, keep, carry, cs, hs, acts, cotangents)
    dw_xb = jnp.concatenate([jnp.einsum("tnd,tnh->dh", x_ones, d) for d in dz], axis=1)
    dx = sum(d @ w.T for d, w in zip(dz, _gate_split(w_x), strict=True))
    return (dw_xb[:-1], dw_xb[-1], dw_h), dx, jnp.zeros_like(keep), dcarry


def _backward_scan(w_h, keep, carry, cs, hs, acts, cotangents):
    """The backward loop shared by ``lstm`` and ``lstm_recurrence``: returns the carry's
    gradient, the gates' pre-activation gradients (4 x (T, N, H)) and the recurrent
    weights' gradient (H, 4H).

    Weight gradients are contractions over (T, N) without merging the axes: a sharded N
    stays sharded and XLA adds the partial sums of each device."""
    c0, h0 = carry
    (dc_last, dh_last), dhs = cotangents
    k = keep[..., None]
    c_prev = jnp.concatenate([c0[None], cs[:-1]]) * k  # (T, N, H) carries after the reset
    h_prev = jnp.concatenate([h0[None], hs[:-1]]) * k
    w_h_t = tuple(w.T for w in _gate_split(w_h))

    def step(carry, inputs):
        dc, dh = carry
        dh_out, keep_t, c_prev_t, c_t, (i, f, g, o) = inputs
        tanh_c = jnp.tanh(c_t)
        dh = dh + dh_out
        dc = dc + dh * o * (1.0 - tanh_c * tanh_c)
        dz = (
            dc * g * i * (1.0 - i),
            dc * c_prev_t * f * (1.0 - f),
            dc * i * (1.0 - g * g),
            dh * tanh_c * o * (1.0 - o),
        )
        dh_prev = sum(d @ w for d, w in zip(dz, w_h_t, strict=True))
        k_t = keep_t[:, None]
        return ((dc * f) * k_t, dh_prev * k_t), dz

    inputs = (dhs, keep, c_prev, cs, acts)
    dcarry, dz = jax.lax.scan(step, (dc_last, dh_last), inputs, reverse=True)
    dw_h = jnp.concatenate([jnp.einsum("tnd,tnh->dh", h_prev, d) for d in dz], axis=1)
    return dcarry, dz, dw_h


lstm.defvjp(_lstm_fwd, _lstm_bwd)


# --- wide inputs: a dense layer, and the LSTM from precomputed input projections ----------


@jax.custom_vjp
def dense(x: chex.Array, w: chex.Array, b: chex.Array) -> chex.Array:
    """``x @ w + b`` for x (T, N, ..., D) (or (M, D)), w (D, F), b (F,).

    The backward pass computes the weight gradient from the inputs and output gradients
    with their leading axes merged batch-major ((T, N) -> (N * T): a sharded batch axis N
    stays sharded): one plain product, ~1.4x faster on XLA:CPU for wide inputs (PAIRED's
    adversary, D = 15548) than autodiff's contraction over (T, N).
    """
    return x @ w + b


def _dense_fwd(x, w, b):
    return x @ w + b, (x, w)


def _rows(a: chex.Array) -> chex.Array:
    """(T, N, ..., F) -> (N * T * ..., F), batch-major; (M, F) as is."""
    if a.ndim >= 3:
        a = jnp.swapaxes(a, 0, 1)
    return a.reshape(-1, a.shape[-1])


def _dense_bwd(residuals, dy):
    x, w = residuals
    db = dy.sum(tuple(range(dy.ndim - 1)))
    return dy @ w.T, _rows(x).T @ _rows(dy), db


dense.defvjp(_dense_fwd, _dense_bwd)


@jax.custom_vjp
def lstm_recurrence(w_h: chex.Array, zx: chex.Array, keep: chex.Array, carry: Carry):
    """``lstm`` with its input projection done by the caller.

    Args:
        w_h: (H, 4H) recurrent weights, gates i, f, g, o.
        zx: (T, N, 4H) input projections ``x_t w_x + b``.
        keep, carry: as for ``lstm``.

    Returns ``(carry, hs)`` as ``lstm`` does, and the same hand-written backward pass (the
    gradient of ``zx`` is the gates' pre-activation gradient). With an input much wider than
    4H, ``lstm_recurrence(w_h, dense(x, w_x, b), ...)`` does the input projection's forward
    and backward passes as three large products instead of ``lstm``'s twelve per-gate ones.
    """
    if zx.shape[0] == 1:  # the rollout's single step: no loop, whole-matrix products
        return _single_step(zx[0], w_h, keep[0], carry)
    return _forward_scan(w_h, _gate_split(zx), keep, carry, residuals=False)


def _recurrence_fwd(w_h, zx, keep, carry):
    last, (cs, hs, acts) = _forward_scan(w_h, _gate_split(zx), keep, carry, True)
    return (last, hs), (w_h, keep, carry, cs, hs, acts)


def _recurrence_bwd(residuals, cotangents):
    w_h, keep, carry, cs, hs, acts = residuals
    dcarry, dz, dw_h = _backward_scan(w_h, keep, carry, cs, hs, acts, cotangents)
    return dw_h, jnp.concatenate(dz, axis=-1), jnp.zeros_like(keep), dcarry


lstm_recurrence.defvjp(_recurrence_fwd, _recurrence_bwd)
