"""The control program space: a program is a box over the physical parameters.

For every parameter ``p`` of the task a program holds ``p`` (the box's centre, in the env's
training range) and ``p_width`` (its width, as a fraction of that range); a level draws each
parameter uniformly from its box, clipped to the training range, so levels are valid by
construction. The descriptors are the level's parameters themselves.

The widening schedule grows the space from the middle of the training ranges: stage 0 allows
centres in the middle half and widths up to half the range, stage 1 three quarters, stage 2
everything. The held-out ``test`` ranges of the named levels stay outside it.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from envs.control import spec
from envs.control.env import ControlEnv
from envs.control.generators import training_ranges
from envs.programs import Dim, ProgramSpace

STAGE_FRACTIONS = (0.5, 0.75, 1.0)  # share of each training range a stage opens


def make_programs(env: ControlEnv) -> ProgramSpace:
    """The box program space of ``env`` (over its training ranges, ``env.ranges``)."""
    task = env.task
    low, high = training_ranges(env)
    span = high - low
    mid = 0.5 * (low + high)
    dims, stages = [], [{} for _ in STAGE_FRACTIONS]
    for i, name in enumerate(task.names):
        dims += [
            Dim(name, "continuous", float(low[i]), float(high[i])),
            Dim(f"{name}_width", "continuous", 0.0, 1.0),
        ]
        for stage, frac in zip(stages, STAGE_FRACTIONS, strict=True):
            if frac < 1.0:
                half = 0.5 * frac * float(span[i])
                stage[name] = (float(mid[i]) - half, float(mid[i]) + half)
                stage[f"{name}_width"] = (0.0, frac)
    lo, hi = jnp.asarray(low), jnp.asarray(high)

    def generate(key: chex.PRNGKey, program: chex.Array):
        centre, width = program[0::2], program[1::2] * (hi - lo)
        u = jax.random.uniform(key, centre.shape)
        values = jnp.clip(centre + (u - 0.5) * width, lo, hi)
        return spec.from_vector(task, values)

    def describe(level) -> chex.Array:
        return spec.to_vector(task, level)

    return ProgramSpace(
        dims=tuple(dims),
        generate=generate,
        describe=describe,
        descriptor_names=task.names,
        descriptor_low=tuple(float(x) for x in low),
        descriptor_high=tuple(float(x) for x in high),
        stages=tuple(stages),
    )
