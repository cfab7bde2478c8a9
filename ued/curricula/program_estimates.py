"""How the program curriculum values its archive: constraint violation, fitness with its
constraint handling, grid cells and the selection weights of archive programs.

``Estimates`` holds only what these need (the options, the program space, the grid's
descriptors and the constraint's bounds), so the curriculum, its metrics and its view read
the same numbers.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import chex
import jax.numpy as jnp
import numpy as np

from ued.core import program_archive as arc
from ued.curricula.program_options import ProgramsOptions


@dataclasses.dataclass(frozen=True)
class Estimates:
    """The archive's estimates under ``options`` (see the module docstring)."""

    options: ProgramsOptions
    space: Any  # envs.programs.ProgramSpace
    grid: tuple[int, ...]  # descriptor indices spanning the grid
    bounds: np.ndarray  # (E, 2) descriptor bounds of the constraint (-inf/inf: none)

    @property
    def num_cells(self) -> int:
        return self.options.grid_resolution ** len(self.grid)

    def violation(self, descriptor: chex.Array, solvable: chex.Array) -> chex.Array:
        """(...,) constraint violation >= 0: solvable shortfall plus descriptor excess as
        fractions of the descriptor ranges."""
        o, space = self.options, self.space
        span = jnp.maximum(
            jnp.asarray(space.descriptor_high) - jnp.asarray(space.descriptor_low), 1e-9
        )
        lo, hi = jnp.asarray(self.bounds[:, 0]), jnp.asarray(self.bounds[:, 1])
        excess = (jnp.maximum(lo - descriptor, 0) + jnp.maximum(descriptor - hi, 0)) / span
        return jnp.maximum(o.min_solvable - solvable, 0.0) + excess.sum(-1)

    def fitness_params(self) -> arc.FitnessParams:
        o = self.options
        penalty = jnp.inf if o.constraint_mode == "filter" else o.constraint_penalty
        return arc.FitnessParams(o.age_decay, o.spread_weight, penalty)

    def archive_view(self, cstate):
        """``(fitness, cell, normalised descriptors)`` of every archive slot (with classic
        MAP-Elites insertion a slot's cell is its index)."""
        a = cstate.archive
        viol = self.violation(a.descriptor, a.solvable)
        fit = arc.fitness(a, viol, cstate.count, self.fitness_params())
        norm = self.space.normalise_descriptors(a.descriptor)
        if self.options.insertion == "elites":
            return fit, jnp.arange(a.capacity, dtype=jnp.int32), norm
        return fit, arc.cells(norm, self.options.grid_resolution, self.grid), norm

    def weights(self, cstate) -> chex.Array:
        o = self.options
        fit, _, norm = self.archive_view(cstate)
        nov = arc.novelty(norm, cstate.archive.filled)
        return arc.selection_weights(
            cstate.archive, fit, nov, cstate.count, o.temperature, o.staleness_coef,
            o.novelty_weight,
        )  # fmt: skip
