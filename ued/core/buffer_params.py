"""The level buffer's size and hyper-parameters, declared once with ``ued.config.options.option``.

They are the ``buffer`` options of PLR-type curricula and a pytree: numeric fields are
leaves (a sweep can ``vmap`` them), static fields choose code paths or shapes.
"""

from __future__ import annotations

import dataclasses

import chex
import jax
import jax.numpy as jnp
from flax import struct

from ued.config import options
from ued.config.options import option

PRIORITISATIONS = ("rank", "power", "top_k")
REPLAY_SCHEDULES = ("fixed", "proportionate")
STALENESS_CLOCKS = ("batch", "level", "replay")


@struct.dataclass
class BufferParams:
    """The buffer's size and hyper-parameters: the ``buffer`` options of PLR-type curricula.

    Numeric fields are pytree leaves, so a sweep can ``vmap`` over them. Build with
    ``make_buffer_params`` to validate ranges on the host (every element of an array).
    """

    temperature: chex.Numeric = option(0.3, gt=0)  # () float32, lower = more peaked P_score
    staleness_coef: chex.Numeric = option(0.3, ge=0, le=1)  # () float32, weight of P_staleness
    replay_prob: chex.Numeric = option(0.5, ge=0, le=1)  # () float32, P(replay) for "fixed"
    min_fill_ratio: chex.Numeric = option(0.5, ge=0, le=1)  # () float32, no replay below it
    top_k: chex.Numeric = option(  # () int32, levels replayed under "top_k"
        100, ge=1, check=lambda v: float(v) == int(v), allowed="an integer >= 1"
    )
    # Static: these choose code paths or shapes (not numbers), so they cannot be traced or
    # vmapped; changing them recompiles.
    capacity: int = option(4000, gt=0, static=True, resume="refuse")  # levels the buffer holds
    prioritisation: str = option("rank", choices=PRIORITISATIONS, static=True)
    replay_schedule: str = option("fixed", choices=REPLAY_SCHEDULES, static=True)
    dedup: bool = option(True, static=True)
    # What advances the staleness clock: one tick per ``sample`` call ("batch"); one per
    # sampled level and per insertion attempt, sampling the batch's levels one after another
    # ("level": JaxUED's level_sampler.py, whose insert ticks the timestamp); or one per
    # sampled level only, insertions not ticking ("replay": dcd's level_sampler.py, where
    # _update_staleness runs on replay samples and a new level enters without a tick).
    staleness_clock: str = option("batch", choices=STALENESS_CLOCKS, static=True)


# Annotation -> the concrete type options are coerced to (chex.Numeric is a Union).
_NUMERIC = {"top_k": int}


def make_buffer_params(**kwargs) -> BufferParams:
    """Builds ``BufferParams``, validating every value (every element of an array) on the host.

    Raises:
        ValueError: naming the field and what it allows, for an unknown field or a bad value.
    """
    fields = {f.name: f for f in dataclasses.fields(BufferParams)}
    unknown = sorted(set(kwargs) - set(fields))
    if unknown:
        raise ValueError(f"unknown BufferParams field(s) {unknown}; known: {sorted(fields)}")
    params = BufferParams(**kwargs)
    kinds = options.field_types(BufferParams)
    for name, f in fields.items():
        value = getattr(params, name)
        if f.metadata.get("pytree_node", True):
            kind = _NUMERIC.get(name, float)
            values = jax.device_get(jnp.ravel(jnp.asarray(value, jnp.float32))).tolist()
        else:
            kind, values = kinds[name], [value]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                values = []  # wrong type: refused below
        if not values or not all(options.allows(f.metadata, v) for v in values):
            raise ValueError(
                f"BufferParams.{name}={value!r}; must be {options.describe(f.metadata, kind)}"
            )
    return as_arrays(params)


def as_arrays(params: BufferParams) -> BufferParams:
    """``params`` with its numeric fields as arrays (``top_k`` int32, the rest float32), as
    ``make_buffer_params`` returns them; no checks, so it also works inside ``jit``."""
    leaves = {
        f.name: jnp.asarray(
            getattr(params, f.name),
            jnp.int32 if _NUMERIC.get(f.name, float) is int else jnp.float32,
        )
        for f in dataclasses.fields(BufferParams)
        if f.metadata.get("pytree_node", True)
    }
    return params.replace(**leaves)
