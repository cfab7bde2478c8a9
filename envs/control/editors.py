"""Control level editors: ``make_<name>(env) -> EditSpec(edit, feasible)``.

Each edit changes one parameter, keeps dtypes and validity (values stay inside the training
range, or where they already were outside it), and is a no-op when ``feasible`` is False.
``envs.editing.menu``/``repeat`` combine them as for any family.
"""

from __future__ import annotations

from collections.abc import Callable

import chex
import jax
import jax.numpy as jnp

from envs.control import spec
from envs.control.env import ControlEnv
from envs.control.generators import training_ranges
from envs.control.spec import Level
from envs.core import EditSpec

PERTURB_SCALE = 0.2  # a perturbation moves a parameter by up to this fraction of its range


def pick_index(key: chex.PRNGKey, mask: chex.Array) -> chex.Array:
    """A uniformly random True index of ``mask`` (P,) bool; arbitrary when none is True."""
    noise = jax.random.uniform(key, mask.shape)
    return jnp.argmax(jnp.where(mask, noise, -1.0))


def make_perturb_param(env: ControlEnv, scale: float = PERTURB_SCALE) -> EditSpec:
    """Moves one random parameter by a uniform step in ``+-scale * (high - low)`` of its
    training range, clipped to the range (a value already outside it is not pushed further
    out). Parameters whose range is a single value are never picked.

    Options (``curriculum.options.editors.perturb_param: {weight: w, scale: s}``): ``scale``
    in (0, 1], the largest step as a fraction of the range.
    """
    if not 0.0 < scale <= 1.0:
        raise ValueError(f"scale={scale!r}; must be a number in (0, 1]")
    task = env.task
    low, high = (jnp.asarray(v) for v in training_ranges(env))
    movable = high > low

    def edit(key: chex.PRNGKey, level: Level) -> Level:
        pick_key, step_key = jax.random.split(key)
        x = spec.to_vector(task, level)
        i = pick_index(pick_key, movable)
        step = jax.random.uniform(step_key, (), jnp.float32, -1.0, 1.0)
        moved = x[i] + step * scale * (high[i] - low[i])
        lo, hi = jnp.minimum(low[i], x[i]), jnp.maximum(high[i], x[i])
        new = x.at[i].set(jnp.clip(moved, lo, hi))
        return spec.from_vector(task, jnp.where(movable.any(), new, x))

    return EditSpec(edit=edit, feasible=lambda level: movable.any())


def make_reset_param(env: ControlEnv) -> EditSpec:
    """Sets one random parameter that differs from its default back to the default."""
    task = env.task
    default = jnp.asarray(spec.vector_of(task, "default"))

    def feasible(level: Level) -> chex.Array:
        return jnp.any(spec.to_vector(task, level) != default)

    def edit(key: chex.PRNGKey, level: Level) -> Level:
        x = spec.to_vector(task, level)
        i = pick_index(key, x != default)
        # With nothing to reset, x[i] already equals its default: a no-op.
        return spec.from_vector(task, x.at[i].set(default[i]))

    return EditSpec(edit=edit, feasible=feasible)


editors: dict[str, Callable[[ControlEnv], EditSpec]] = {
    "perturb_param": make_perturb_param,
    "reset_param": make_reset_param,
}
