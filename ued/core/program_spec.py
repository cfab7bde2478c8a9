"""The specification of a program curriculum: the bounds its programs may take, when they
widen (the plateau signal), and where (a fixed ladder, or a model in the loop).

Every program dim has *current bounds* inside its *hard limits* (the space's ``Dim`` bounds).
New programs are sampled and mutated inside the current bounds; the archive keeps what it
has. Widening is decided in two steps:

**When: the student's learning plateaus** (``signal``):

- ``probe`` (default): every ``probe_every`` updates the curriculum rolls the student out on
  a fixed probe set (one level each of ``probe_levels`` programs sampled from the current
  bounds when they were set) and records its success rate. The *learning* is the change of
  that success over the last ``window`` updates, fitted by least squares through the probes
  in the window (less noisy than the two end points). When a full window's learning is at
  most ``min_improvement``, learning has plateaued and the specification widens; the probe
  set is then drawn again from the new bounds and the window starts over. A student that
  keeps improving never widens; one that stalls widens within a window of the stall (the
  known-answer tests in ``tests/ued/test_program_spec.py``).
- ``fitness``: the earlier rule, kept to reproduce earlier runs: widen when the archive's
  best fitness (learning potential aged by ``age_decay``) has not improved by more than
  ``min_improvement`` for ``window`` updates. Fitness peaks early (the age decay and the
  falling value loss both pull it down), so this rule fires about ``window`` updates after
  the start and every ``window`` updates after that: a timer more than a plateau detector.

**Where** (``mode``):

- ``stages``: the space's fixed ladder of nested bounds (``ProgramSpace.stages``): the next
  stage's bounds.
- ``model``: a model in the loop moves one bound. The candidates are every bound moved
  outwards by ``step`` x its hard range (discrete dims by whole grid steps), inside the hard
  limits, on dims that change the level at all (checked once when the run is built: a dim
  whose values never change a generated level is never widened). A surrogate
  (``ued.core.surrogate``: Bayesian linear regression on random features, fitted online to every
  (program, measured learning potential) pair the curriculum sees) predicts the mean
  learning potential of programs in the slab each candidate would open (``samples`` Monte
  Carlo points), and the candidate with the highest prediction + ``kappa`` x its posterior
  std (optimism under uncertainty, UCB) is taken. Each widening logs its prediction; the
  learning potential then measured in the opened slab is logged beside it until the next
  widening (the surrogate's calibration, ``scripts/plot.py --programs``).

Everything is jittable and of fixed shape: the decision runs inside the train step.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from ued.core.surrogate import Surrogate

SIGNALS = ("probe", "fitness")
MODES = ("stages", "model")
EFFECT_SAMPLES = 32  # programs per dim checked for an effect on the level


@struct.dataclass
class SpecState:
    low: chex.Array  # (D,) float32 current bounds
    high: chex.Array  # (D,) float32
    stage: chex.Array  # () int32 ladder stage (stages) or widenings so far (model)
    widen_events: chex.Array  # () int32 widenings so far
    last_widen: chex.Array  # () int32 update of the last widening, -1 for none
    since: chex.Array  # () int32 updates since the record improved (fitness) / widening
    record: chex.Array  # () float32 best fitness when it last improved (fitness signal)
    probe_hist: chex.Array  # (H,) float32 the window's probe successes, newest last
    probe_n: chex.Array  # () int32 probes since the bounds last changed
    learning: chex.Array  # () float32 fitted change of probe success over the window
    surrogate: Any  # SurrogateState (model) or () (stages)
    widen_dim: chex.Array  # () int32 dim of the last widening, -1 for none
    widen_side: chex.Array  # () int32 0 low bound, 1 high bound
    predicted: chex.Array  # () float32 predicted mean LP of the slab it opened
    predicted_std: chex.Array  # () float32 the surrogate's posterior std of it
    slab_low: chex.Array  # (D,) float32 the bounds right after the last widening
    slab_high: chex.Array  # (D,) float32
    slab_edge: chex.Array  # () float32 the moved bound's old value
    slab_sum: chex.Array  # () float32 LP measured in the opened slab since
    slab_n: chex.Array  # () float32 programs it was measured on


def fitted_change(hist: chex.Array) -> chex.Array:
    """Least-squares change across a series (H,) of evenly spaced points: slope x (H - 1)."""
    h = hist.shape[0]
    t = jnp.arange(h, dtype=jnp.float32) - (h - 1) / 2.0
    slope = (t * (hist - hist.mean())).sum() / jnp.maximum((t * t).sum(), 1e-9)
    return slope * (h - 1)


def probe_rule(
    hist: chex.Array, n: chex.Array, success: chex.Array, min_improvement: float
) -> tuple[chex.Array, chex.Array, chex.Array, chex.Array]:
    """One update of the probe rule. ``success`` is this update's probe success (NaN when
    no probe ran). Returns ``(hist, n, learning, stalled)``: the window (newest last), the
    probes since the bounds last changed, the fitted change over a full window (NaN until
    full) and whether it is at most ``min_improvement``."""
    probed = jnp.isfinite(success)
    shifted = jnp.concatenate([hist[1:], jnp.where(probed, success, 0.0)[None]])
    hist = jnp.where(probed, shifted, hist)
    n = n + probed.astype(n.dtype)
    full = n >= hist.shape[0]
    learning = jnp.where(full, fitted_change(hist), jnp.nan)
    return hist, n, learning, probed & full & (learning <= min_improvement)


def fitness_rule(
    record: chex.Array, since: chex.Array, best: chex.Array, window: int, min_improvement: float
) -> tuple[chex.Array, chex.Array, chex.Array]:
    """The earlier rule: ``best`` improves on ``record`` when it exceeds it by more than
    ``min_improvement`` (the record becomes ``best``, the count restarts); otherwise
    ``since`` counts one more update. Returns ``(record, since, stalled)``, stalled when the
    count reaches ``window`` (> 0)."""
    best = jnp.where(jnp.isnan(best), -jnp.inf, best)
    improved = best > record + min_improvement
    record = jnp.where(improved, best, record)
    since = jnp.where(improved, 0, since + 1)
    return record, since, (window > 0) & (since >= window)


def dims_with_effect(space, samples: int = EFFECT_SAMPLES, seed: int = 0) -> np.ndarray:
    """(D,) bool: whether changing each dim (resampled over its hard limits, the others and
    the key held) changes a generated level in any of ``samples`` tries. Host side, once."""

    def check(key):
        k_prog, k_alt, k_gen = jax.random.split(key, 3)
        programs = jax.vmap(space.snap)(
            jax.vmap(lambda k: space.sample_in(k, jnp.asarray(space.low), jnp.asarray(space.high)))(
                jax.random.split(k_prog, samples)
            )
        )
        alts = jax.vmap(
            lambda k: space.sample_in(k, jnp.asarray(space.low), jnp.asarray(space.high))
        )(jax.random.split(k_alt, samples))
        gen_keys = jax.random.split(k_gen, samples)
        base = jax.vmap(space.generate)(gen_keys, programs)

        def differs(d):
            moved = programs.at[:, d].set(alts[:, d])
            levels = jax.vmap(space.generate)(gen_keys, moved)
            diff = [
                jnp.any((a != b).reshape(samples, -1), axis=1)
                for a, b in zip(jax.tree.leaves(base), jax.tree.leaves(levels), strict=True)
            ]
            return jnp.any(jnp.stack(diff))

        return jax.lax.map(differs, jnp.arange(space.num_dims))

    return np.asarray(jax.jit(check)(jax.random.key(seed)), bool)


@dataclasses.dataclass(frozen=True)
class Specification:
    """The specification's fixed parts (built once by the curriculum); see the module doc."""

    space: Any  # envs.programs.ProgramSpace
    mode: str  # "stages" or "model"
    signal: str  # "probe" or "fitness"
    window: int  # updates of a plateau window (0: never widen)
    min_improvement: float
    probe_every: int
    start_stage: int
    step: float = 0.125  # model: a widening's size, as a fraction of the hard range
    kappa: float = 1.0  # model: optimism bonus, in posterior stds
    samples: int = 32  # model: Monte Carlo points per candidate slab
    surrogate: Surrogate | None = None  # model
    effective: np.ndarray | None = None  # (D,) bool, model: dims that change the level

    @property
    def window_probes(self) -> int:
        """Probe points in a window: one every ``probe_every`` updates, both ends included."""
        return max(-(-self.window // self.probe_every), 1) + 1

    @property
    def num_candidates(self) -> int:
        return 2 * self.space.num_dims

    def hard(self) -> tuple[np.ndarray, np.ndarray]:
        return self.space.low, self.space.high

    def stage_bounds(self, stage: chex.Array) -> tuple[chex.Array, chex.Array]:
        return self.space.bounds(stage)

    def init(self) -> SpecState:
        space = self.space
        stage = min(self.start_stage, space.num_stages - 1)
        low, high = space.stage_bounds()
        low, high = jnp.asarray(low[stage]), jnp.asarray(high[stage])
        d = space.num_dims
        zero = jnp.zeros((), jnp.float32)
        return SpecState(
            low=low,
            high=high,
            stage=jnp.asarray(stage, jnp.int32),
            widen_events=jnp.zeros((), jnp.int32),
            last_widen=jnp.asarray(-1, jnp.int32),
            since=jnp.zeros((), jnp.int32),
            record=jnp.asarray(-jnp.inf, jnp.float32),
            probe_hist=jnp.zeros((self.window_probes,), jnp.float32),
            probe_n=jnp.zeros((), jnp.int32),
            learning=jnp.asarray(jnp.nan, jnp.float32),
            surrogate=self.surrogate.init() if self.mode == "model" else (),
            widen_dim=jnp.asarray(-1, jnp.int32),
            widen_side=jnp.zeros((), jnp.int32),
            predicted=jnp.asarray(jnp.nan, jnp.float32),
            predicted_std=jnp.asarray(jnp.nan, jnp.float32),
            slab_low=jnp.zeros((d,), jnp.float32),
            slab_high=jnp.zeros((d,), jnp.float32),
            slab_edge=zero,
            slab_sum=zero,
            slab_n=zero,
        )

    # --- the model in the loop -----------------------------------------------------------
    def candidates(self, low: chex.Array, high: chex.Array):
        """Every bound moved outwards by one step: ``(new_low (C, D), new_high (C, D),
        valid (C,))``, candidate ``2 d`` the low bound of dim d, ``2 d + 1`` its high one.
        Invalid: already at the hard limit, or a dim without effect on the level."""
        space = self.space
        hard_low, hard_high = (jnp.asarray(x) for x in self.hard())
        grid = jnp.asarray(space.steps)
        size = self.step * (hard_high - hard_low)
        size = jnp.where(
            jnp.asarray(space.discrete), grid * jnp.maximum(jnp.ceil(size / grid - 1e-6), 1.0), size
        )
        moved_low = jnp.maximum(low - size, hard_low)
        moved_high = jnp.minimum(high + size, hard_high)
        d = space.num_dims
        eye = jnp.eye(d, dtype=bool)
        new_low = jnp.where(eye, moved_low[None], low[None])  # (D, D): row d moves dim d
        new_high = jnp.where(eye, moved_high[None], high[None])
        new_low = jnp.stack([new_low, jnp.broadcast_to(low, (d, d))], 1).reshape(2 * d, d)
        new_high = jnp.stack([jnp.broadcast_to(high, (d, d)), new_high], 1).reshape(2 * d, d)
        effective = jnp.asarray(self.effective if self.effective is not None else np.ones(d, bool))
        opens = jnp.stack([moved_low < low - 1e-6, moved_high > high + 1e-6], 1).reshape(2 * d)
        return new_low, new_high, opens & jnp.repeat(effective, 2)

    def slab_samples(self, key, low, high, new_low, new_high) -> chex.Array:
        """(C, S, D) programs in the slab each candidate opens: the current bounds on every
        dim but the moved one, which lies strictly beyond its old bound (discrete dims on the
        grid values there)."""
        space = self.space
        c, s, d = self.num_candidates, self.samples, space.num_dims
        k_in, k_slab = jax.random.split(key)
        inside = jax.vmap(lambda k: space.sample_in(k, low, high))(jax.random.split(k_in, c * s))
        inside = inside.reshape(c, s, d)
        dim = jnp.arange(c) // 2
        high_side = (jnp.arange(c) % 2) == 1
        old = jnp.where(high_side, high[dim], low[dim])
        new = jnp.where(high_side, new_high[jnp.arange(c), dim], new_low[jnp.arange(c), dim])
        sign = jnp.where(high_side, 1.0, -1.0)
        width = jnp.abs(new - old)
        grid = jnp.asarray(space.steps)[dim]
        u = jax.random.uniform(k_slab, (c, s), minval=1e-6, maxval=1.0)
        values = jnp.maximum(jnp.round(width / grid), 1.0)  # grid values in the slab
        discrete = jnp.asarray(space.discrete)[dim]
        offset = jnp.where(
            discrete[:, None],
            grid[:, None] * (jnp.floor(u * values[:, None]) + 1.0),
            u * width[:, None],
        )
        offset = jnp.minimum(offset, width[:, None])
        x = old[:, None] + sign[:, None] * offset
        onehot = jax.nn.one_hot(dim, d, dtype=bool)[:, None, :]
        return jnp.where(onehot, x[..., None], inside)

    def choose(self, key, state: SpecState):
        """The model's widening: ``(index, new_low, new_high, predicted mean (C,), predicted
        std (C,), valid (C,))`` with ``index`` the best valid candidate (see the module doc)."""
        new_low, new_high, valid = self.candidates(state.low, state.high)
        points = self.slab_samples(key, state.low, state.high, new_low, new_high)
        mean, std = self.surrogate.predict(state.surrogate, points)
        mean, std = mean.mean(-1), std.mean(-1)
        score = jnp.where(valid, mean + self.kappa * std, -jnp.inf)
        return jnp.argmax(score), new_low, new_high, mean, std, valid

    # --- one update ----------------------------------------------------------------------
    def update(
        self,
        key,
        state: SpecState,
        programs: chex.Array,
        lp: chex.Array,
        evidence: chex.Array,
        best_fitness: chex.Array,
        probe_success: chex.Array,
        count: chex.Array,
    ) -> tuple[SpecState, chex.Array]:
        """Folds one step's programs (P, D) and their LP (P,) (``evidence`` (P,) bool where
        measured) into the surrogate and the slab measurement, applies the plateau rule and
        widens where it fires. Returns the state and () bool: widened on this update."""
        has = evidence
        if self.mode == "model":
            surrogate = self.surrogate.observe(state.surrogate, programs, lp, has)
            state = state.replace(surrogate=surrogate)
        # The slab the last widening opened: LP measured there since.
        inside = jnp.all((programs >= state.slab_low) & (programs <= state.slab_high), -1)
        d = jnp.clip(state.widen_dim, 0, self.space.num_dims - 1)
        coord = programs[:, d]
        beyond = jnp.where(state.widen_side == 1, coord > state.slab_edge, coord < state.slab_edge)
        in_slab = has & inside & beyond & (state.widen_dim >= 0)
        state = state.replace(
            slab_sum=state.slab_sum + jnp.where(in_slab, lp, 0.0).sum(),
            slab_n=state.slab_n + in_slab.sum(),
        )
        # When: the plateau signal.
        if self.signal == "probe":
            hist, n, learning, stalled = probe_rule(
                state.probe_hist, state.probe_n, probe_success, self.min_improvement
            )
            state = state.replace(probe_hist=hist, probe_n=n, learning=learning)
            stalled = stalled & (self.window > 0)
            since = state.since + 1
            record = state.record
        else:
            record, since, stalled = fitness_rule(
                state.record, state.since, best_fitness, self.window, self.min_improvement
            )
        # Where: the ladder or the model.
        if self.mode == "stages":
            can = state.stage < self.space.num_stages - 1
            widen = stalled & can
            low, high = self.stage_bounds(state.stage + 1)
            new_low = jnp.where(widen, low, state.low)
            new_high = jnp.where(widen, high, state.high)
            widen_dim = jnp.where(widen, -1, state.widen_dim)
            pred = pred_std = jnp.float32(jnp.nan)
            side = state.widen_side
            edge = state.slab_edge
        else:
            index, cand_low, cand_high, mean, std, valid = self.choose(key, state)
            widen = stalled & valid.any()
            new_low = jnp.where(widen, cand_low[index], state.low)
            new_high = jnp.where(widen, cand_high[index], state.high)
            widen_dim = jnp.where(widen, index // 2, state.widen_dim)
            side = jnp.where(widen, index % 2, state.widen_side)
            edge = jnp.where(
                widen,
                jnp.where(index % 2 == 1, state.high[index // 2], state.low[index // 2]),
                state.slab_edge,
            )
            pred, pred_std = mean[index], std[index]
        state = state.replace(
            low=new_low,
            high=new_high,
            stage=state.stage + widen.astype(jnp.int32),
            widen_events=state.widen_events + widen.astype(jnp.int32),
            last_widen=jnp.where(widen, count, state.last_widen),
            since=jnp.where(widen, 0, since),
            record=jnp.where(
                widen, jnp.where(jnp.isnan(best_fitness), -jnp.inf, best_fitness), record
            ),
            probe_n=jnp.where(widen, 0, state.probe_n),
            learning=jnp.where(widen, jnp.nan, state.learning),
            widen_dim=widen_dim,
            widen_side=side,
            predicted=jnp.where(widen, pred, state.predicted),
            predicted_std=jnp.where(widen, pred_std, state.predicted_std),
            slab_low=jnp.where(widen, new_low, state.slab_low),
            slab_high=jnp.where(widen, new_high, state.slab_high),
            slab_edge=edge,
            slab_sum=jnp.where(widen, 0.0, state.slab_sum),
            slab_n=jnp.where(widen, 0.0, state.slab_n),
        )
        return state, widen
