"""Control level generators: ``make_<name>(env, **options) -> (key -> Level)``.

Pure, jittable, vmappable over keys, valid by construction (the training ranges lie inside
the physical bounds).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

from envs.control import spec
from envs.control.env import ControlEnv
from envs.control.spec import Level

Generator = Callable[[chex.PRNGKey], Level]

GRID_BITS = 12
GRID = 2**GRID_BITS  # uniform draws take one of GRID + 1 evenly spaced values per range


def training_ranges(env: ControlEnv) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)``, each (P,) float32: the env's training range of every parameter."""
    low = np.array([env.ranges[n][0] for n in env.task.names], np.float32)
    high = np.array([env.ranges[n][1] for n in env.task.names], np.float32)
    return low, high


def grid_step(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """(P,) float32 ``(high - low) / GRID`` rounded down to ``GRID_BITS`` significant bits.

    ``k * step`` is then exact in float32 for integers ``0 <= k <= GRID``, so ``low + k *
    step`` rounds once whether or not XLA fuses it into a multiply-add: generated levels are
    bit-identical eagerly and under jit/vmap.
    """
    mantissa, exponent = np.frexp((high.astype(np.float64) - low) / GRID)
    truncated = np.floor(mantissa * 2.0**GRID_BITS) / 2.0**GRID_BITS
    return np.ldexp(truncated, exponent).astype(np.float32)


def make_uniform(env: ControlEnv, randomize: Sequence[str] | None = None) -> Generator:
    """Domain randomisation: parameters drawn independently and uniformly in their ranges
    (on a grid of ``GRID + 1`` = 4097 evenly spaced values, see ``grid_step``).

    Args:
        env: the control env (its ``ranges``, by default each parameter's ``train`` range).
        randomize: names of the parameters to draw; the others stay at their defaults.
            Default: all of them.

    Raises:
        ValueError: naming an unknown parameter.
    """
    task = env.task
    names = list(task.names) if randomize is None else list(randomize)
    for name in names:
        if name not in task.names:
            raise ValueError(
                f"generator option randomize: unknown parameter {name!r} of {task.name}; "
                f"allowed: {list(task.names)}"
            )
    mask = np.array([n in names for n in task.names])
    low, high = training_ranges(env)
    default = spec.vector_of(task, "default")

    step = grid_step(low, high)

    def generate(key: chex.PRNGKey) -> Level:
        k = jax.random.randint(key, (len(task.names),), 0, GRID + 1).astype(jnp.float32)
        drawn = jnp.clip(low + k * step, low, high)
        return spec.from_vector(task, jnp.where(mask, drawn, default))

    return generate


generators: dict[str, Callable[..., Generator]] = {
    "uniform": make_uniform,
}
