"""What the program curriculum shows (host side): its archive and its grounding set.

The archive's view has a sample level of every program (generated with a fixed key, so the
same program shows the same level), its estimates and grid cell per slot, and the search's
stage, bounds and coverage; its picture gallery is the fittest program of each occupied
grid cell. The grounding set's view is where sent levels are kept.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ued.core import program_archive as arc
from ued.curricula.base import LevelView


def compile_view(cur) -> tuple[Any, Any]:
    """``(sample, estimate)``: jitted sample levels of programs and the archive's estimates
    (``cur.estimates.archive_view``)."""
    generate = jax.vmap(cur.space.generate, in_axes=(None, 0))
    sample = jax.jit(lambda programs: generate(jax.random.PRNGKey(0), programs))
    return sample, jax.jit(cur.estimates.archive_view)


def _coords(cell: int, resolution: int, dims: int) -> list[int]:
    return [(cell // resolution**i) % resolution for i in reversed(range(dims))]


def fittest_per_cell(fit, cell, filled, resolution: int, dims: int) -> list[tuple[int, str]]:
    """``(slot, caption)`` of the fittest program of every occupied cell, best first."""
    best: dict[int, int] = {}
    for slot in np.flatnonzero(filled):
        c = int(cell[slot])
        if c not in best or fit[slot] > fit[best[c]]:
            best[c] = int(slot)
    entries = []
    for c, slot in sorted(best.items(), key=lambda kv: -fit[kv[1]]):
        coords = ",".join(str(x) for x in _coords(c, resolution, dims))
        entries.append((slot, f"({coords}) {fit[slot]:.3f}"))
    return entries


def archive_view(cur, cstate) -> LevelView:
    """The archive of one seed's state (see the module docstring)."""
    sample, estimate = cur.compiled_view
    fit, cell, _ = jax.device_get(estimate(cstate))
    a = jax.device_get(cstate.archive)
    levels = jax.device_get(sample(jnp.asarray(a.programs)))
    filled = np.asarray(a.filled, bool)
    fit = np.asarray(fit, np.float64)
    count = int(cstate.count)
    r, grid, space = cur.options.grid_resolution, cur.grid, cur.space
    names = space.descriptor_names
    capacity = filled.shape[0]
    columns = {
        "program": [space.to_dict(a.programs[s]) for s in range(capacity)],
        "fitness": fit,
        "lp": a.lp,
        "lp_spread": np.asarray(arc.spread(a.lp, a.lp_sq)),
        "solvable": a.solvable,
        "descriptors": [
            {n: a.descriptor[s, i] for i, n in enumerate(names)} for s in range(capacity)
        ],
        "cell": [_coords(int(cell[s]), r, len(grid)) for s in range(capacity)],
        "age": np.maximum(count - np.asarray(a.last_seen), 0),
        "born": a.born,
    }
    occupied = len({int(cell[i]) for i in np.flatnonzero(filled)})
    summary = {
        "stage": int(cstate.stage),
        "num_stages": space.num_stages,
        # The specification's bounds: with ``spec: model`` they leave the ladder and the
        # stage counts widenings past its end.
        "stage_bounds": cur.current_bounds(cstate),
        "widen_events": int(cstate.widen_events),
        "grid": [names[i] for i in grid],
        "grid_resolution": r,
        "occupied_cells": occupied,
        "num_cells": cur.estimates.num_cells,
        "coverage": occupied / cur.estimates.num_cells,
        "updates": count,
    }
    featured = fittest_per_cell(fit, cell, filled, r, len(grid))
    return LevelView("archive", levels, filled, fit, columns, summary, featured)


def grounding_view(cstate) -> LevelView:
    """The grounding set: the level file's levels and those sent in."""
    grounding = jax.device_get(cstate.grounding)
    return LevelView("grounding", grounding.levels, grounding.filled)
