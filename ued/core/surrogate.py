"""A small, jittable surrogate of learning potential: Bayesian linear regression on random
Fourier features, trained online with forgetting.

The ``programs`` curriculum's model in the loop (``ued.core.program_spec``) asks it one question:
how much learning potential (LP) would programs in a region the specification does not yet
allow have? It is fitted to the (program, measured LP) pairs the curriculum sees every step.

Why this model (and not a small MLP ensemble or an exact Gaussian process):

- **Closed form, fixed size.** The posterior is a Gaussian over F weights; the data enter
  only through the discounted sums ``sum phi phi^T`` (F x F) and ``sum phi y`` (F), so an
  update is two matrix additions and a prediction one Cholesky solve, with state of a fixed
  shape inside the jitted, scanned and vmapped train step. No optimiser, no training loop,
  no minibatches, nothing to tune per step.
- **Calibrated uncertainty.** The predictive variance is the posterior's (Bayes' rule for a
  linear-Gaussian model, exact), plus a noise variance estimated online from the
  residuals, so the optimism bonus has a meaning (one posterior standard deviation) and the
  calibration can be measured (``within_1sd``: about 0.68 when calibrated).
- **A GP in disguise.** With M random features ``sqrt(2/M) cos(W u + b)``, ``W ~ N(0,
  1/l^2)``, the model approximates a Gaussian process with a squared-exponential kernel of
  length-scale l (Rahimi & Recht 2007) at O(M^2) cost per point instead of the GP's growing
  O(n^3); the added linear features let it extrapolate a trend one step past the data,
  which is exactly what a widening asks.
- **Non-stationary targets.** A program's LP changes as the student learns, so old pairs are
  discounted by ``forget`` per update (recursive least squares with forgetting): the model
  remembers about ``1 / (1 - forget)`` updates.

An MLP ensemble would need gradient steps inside the train step and gives uncertainty only
as ensemble disagreement (uncalibrated with few members); an exact GP would need the whole
history, a growing shape. Inputs are programs scaled to [0, 1] over the space's hard limits.
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


@struct.dataclass
class SurrogateState:
    gram: chex.Array  # (F, F) float32 discounted sum of phi phi^T
    moment: chex.Array  # (F,) float32 discounted sum of phi y
    count: chex.Array  # () float32 discounted number of observations
    noise_var: chex.Array  # () float32 EMA of squared residuals (the noise estimate)


@dataclasses.dataclass(frozen=True)
class Surrogate:
    """Bayesian linear regression on ``[1, u, rff(u)]``; see the module docstring.

    Attributes:
        low, high: (D,) hard limits that scale programs to ``u`` in [0, 1].
        freqs: (M, D) random frequencies, ``N(0, 1 / lengthscale^2)``.
        phases: (M,) random phases, uniform in [0, 2 pi).
        prior_precision: of the weights (the bias's is 100x weaker).
        noise_std: the noise floor, and the noise before any residual was seen.
        forget: per-update discount of old observations.
    """

    low: np.ndarray
    high: np.ndarray
    freqs: np.ndarray
    phases: np.ndarray
    prior_precision: float = 1.0
    noise_std: float = 0.05
    forget: float = 0.98

    @classmethod
    def make(
        cls,
        low,
        high,
        num_features: int = 64,
        lengthscale: float = 0.3,
        seed: int = 0,
        **kwargs,
    ) -> Surrogate:
        low, high = np.asarray(low, np.float32), np.asarray(high, np.float32)
        rng = np.random.default_rng(seed)
        freqs = rng.normal(0.0, 1.0 / lengthscale, (num_features, low.shape[0]))
        phases = rng.uniform(0.0, 2 * np.pi, num_features)
        return cls(low, high, freqs.astype(np.float32), phases.astype(np.float32), **kwargs)

    @property
    def num_features(self) -> int:
        return 1 + self.low.shape[0] + self.freqs.shape[0]

    def features(self, programs: chex.Array) -> chex.Array:
        """(..., F) features of programs (..., D)."""
        span = np.where(self.high > self.low, self.high - self.low, 1.0)
        u = (programs - jnp.asarray(self.low)) / jnp.asarray(span)
        m = self.freqs.shape[0]
        rff = jnp.sqrt(2.0 / m) * jnp.cos(u @ jnp.asarray(self.freqs).T + jnp.asarray(self.phases))
        one = jnp.ones(u.shape[:-1] + (1,), u.dtype)
        return jnp.concatenate([one, u, rff], axis=-1)

    def init(self) -> SurrogateState:
        f = self.num_features
        return SurrogateState(
            gram=jnp.zeros((f, f), jnp.float32),
            moment=jnp.zeros((f,), jnp.float32),
            count=jnp.zeros((), jnp.float32),
            noise_var=jnp.asarray(self.noise_std**2, jnp.float32),
        )

    def _prior(self) -> chex.Array:
        f = self.num_features
        return jnp.full((f,), self.prior_precision, jnp.float32).at[0].mul(0.01)

    def posterior(self, state: SurrogateState) -> tuple[chex.Array, chex.Array]:
        """``(mean weights (F,), covariance (F, F))`` of the posterior."""
        noise = jnp.maximum(state.noise_var, self.noise_std**2)
        precision = jnp.diag(self._prior()) + state.gram / noise
        chol = jnp.linalg.cholesky(precision)
        cov = jax.scipy.linalg.cho_solve((chol, True), jnp.eye(chol.shape[0], dtype=chol.dtype))
        return cov @ (state.moment / noise), cov

    def predict(
        self, state: SurrogateState, programs: chex.Array, post=None
    ) -> tuple[chex.Array, chex.Array]:
        """``(mean, epistemic std)``, each (...,), of the LP at programs (..., D). The
        predictive std of a new observation adds ``noise(state)`` in quadrature. ``post``
        (from ``posterior``) saves refactoring when predicting several times."""
        mean, cov = self.posterior(state) if post is None else post
        phi = self.features(programs)
        var = ((phi @ cov) * phi).sum(-1)  # phi^T cov phi: matrix products, fast on any device
        return phi @ mean, jnp.sqrt(jnp.maximum(var, 0.0))

    def noise(self, state: SurrogateState) -> chex.Array:
        return jnp.sqrt(jnp.maximum(state.noise_var, self.noise_std**2))

    def observe(
        self, state: SurrogateState, programs: chex.Array, values: chex.Array, mask: chex.Array
    ) -> SurrogateState:
        """Discounts the old observations by ``forget`` and adds the masked (P,) pairs; the
        noise estimate follows the squared residuals of the prediction made before them."""
        mean, _ = self.predict(state, programs)
        w = mask.astype(jnp.float32)
        values = jnp.where(mask, values, 0.0)
        phi = self.features(programs) * w[:, None]
        seen = w.sum()
        resid = ((values - mean) ** 2 * w).sum() / jnp.maximum(seen, 1.0)
        # The first observations' residuals measure the prior, not the noise: start the EMA
        # once the model has seen a few points.
        rate = jnp.where((state.count > 4.0) & (seen > 0), 0.05, 0.0)
        return SurrogateState(
            gram=self.forget * state.gram + phi.T @ phi,
            moment=self.forget * state.moment + phi.T @ values,
            count=self.forget * state.count + seen,
            noise_var=(1 - rate) * state.noise_var + rate * resid,
        )
