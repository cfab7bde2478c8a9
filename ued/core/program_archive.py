"""The archive of generator programs: pure, jittable functions over a fixed-capacity pytree.

Each slot holds a program vector, its learning-potential estimate (an exponential moving
average of its levels' scores and of their squares, so a mean and a spread), its descriptor
estimate, its solvable fraction, the update it was last rolled out on and one sample level.

- **Fitness** (``fitness``): the LP mean, aged by staleness (``age_decay ** age``), plus
  ``spread_weight`` x its spread, minus the constraint penalty (or -inf when constraints
  filter and the program violates one).
- **Selection** (``selection_weights``): PLR's rank prioritisation over fitness plus a
  novelty bonus, mixed with PLR's staleness distribution (Jiang et al. 2021, "Prioritized
  Level Replay"; as ``ued.core.buffer.replay_weights``).
- **Insertion**, two rules over a grid of descriptor cells:

  - ``insert`` (the curriculum's ``insertion: hybrid``, default): a *capacity-bounded
    population with a grid bonus*, a hybrid of a fitness-ranked population and MAP-Elites.
    The archive has ``capacity`` slots whatever the grid's size; several programs may share
    a cell and a cell may be empty while others hold several. A new program competes with
    the slot *least worth keeping anywhere in the archive* (not with its own cell's elite):
    a slot is worth its fitness, plus ``grid_weight`` when it alone covers its cell; a new
    program its fitness, plus ``grid_weight`` when it opens an empty cell. ``grid_weight``
    0 keeps the fittest programs; a large one keeps a program in every cell reached while
    slots last, then the fittest per cell.
  - ``insert_elites`` (``insertion: elites``): classic MAP-Elites (Mouret & Clune 2015):
    one slot per cell (the capacity is the number of cells) holding the cell's elite; a new
    program goes to its own cell and replaces the elite there only when it is fitter (an
    empty cell takes it). A slot's descriptor is the one measured when it entered, so it
    stays in its cell.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
from flax import struct

from ued.core.level_sets import stack_like

NOVELTY_K = 4  # nearest archive neighbours averaged by the novelty term


@struct.dataclass
class Archive:
    """Programs with their estimates; the capacity C is the leading axis of every leaf."""

    programs: chex.Array  # (C, D) float32 program vectors
    filled: chex.Array  # (C,) bool
    lp: chex.Array  # (C,) float32 EMA of the scores of its levels
    lp_sq: chex.Array  # (C,) float32 EMA of their squares (spread = sqrt(lp_sq - lp^2))
    descriptor: chex.Array  # (C, E) float32 EMA of its levels' descriptors
    solvable: chex.Array  # (C,) float32 EMA of the solvable fraction of its levels
    last_seen: chex.Array  # (C,) int32 update it was last rolled out on
    born: chex.Array  # (C,) int32 update it entered the archive
    levels: Any  # leaves (C, ...): one level it generated (for galleries)

    @property
    def capacity(self) -> int:
        return self.lp.shape[0]


class Candidates(NamedTuple):
    """Per-program results of one step (leading axis P), as ``insert`` and ``refresh`` take."""

    programs: chex.Array  # (P, D) float32
    lp: chex.Array  # (P,) float32 mean score of its levels this step
    lp_sq: chex.Array  # (P,) float32 mean squared score
    evidence: chex.Array  # (P,) int32 levels with a finite score
    descriptor: chex.Array  # (P, E) float32 mean descriptor of its levels
    solvable: chex.Array  # (P,) float32 solvable fraction of its levels
    levels: Any  # leaves (P, ...): one of its levels


class FitnessParams(NamedTuple):
    age_decay: float
    spread_weight: float
    penalty: float  # weight of the constraint violation; inf = filter (fitness -inf)


def init(example_level: Any, capacity: int, num_dims: int, num_descriptors: int) -> Archive:
    zeros = jnp.zeros((capacity,), jnp.float32)
    return Archive(
        programs=jnp.zeros((capacity, num_dims), jnp.float32),
        filled=jnp.zeros((capacity,), bool),
        lp=zeros,
        lp_sq=zeros,
        descriptor=jnp.zeros((capacity, num_descriptors), jnp.float32),
        solvable=zeros,
        last_seen=jnp.zeros((capacity,), jnp.int32),
        born=jnp.zeros((capacity,), jnp.int32),
        levels=stack_like(example_level, capacity),
    )


def spread(lp: chex.Array, lp_sq: chex.Array) -> chex.Array:
    return jnp.sqrt(jnp.maximum(lp_sq - lp * lp, 0.0))


def fitness(
    archive: Archive, violation: chex.Array, count: chex.Array, params: FitnessParams
) -> chex.Array:
    """(C,) float32 what selection ranks and insertion compares; -inf in empty slots."""
    age = jnp.maximum(count - archive.last_seen, 0).astype(jnp.float32)
    value = archive.lp * params.age_decay**age + params.spread_weight * spread(
        archive.lp, archive.lp_sq
    )
    value = value - jnp.where(violation > 0, params.penalty * violation, 0.0)
    value = jnp.where(jnp.isnan(value), -jnp.inf, value)
    return jnp.where(archive.filled, value, -jnp.inf)


def cells(norm: chex.Array, resolution: int, grid: tuple[int, ...]) -> chex.Array:
    """(...,) int32 flat grid cell of normalised descriptors ``norm`` (..., E), over the
    descriptor indices ``grid`` with ``resolution`` bins each."""
    bins = jnp.clip(jnp.floor(norm[..., list(grid)] * resolution), 0, resolution - 1)
    weights = resolution ** jnp.arange(len(grid) - 1, -1, -1)
    return (bins.astype(jnp.int32) * weights).sum(-1).astype(jnp.int32)


def occupancy(cell: chex.Array, filled: chex.Array, num_cells: int) -> chex.Array:
    """(num_cells,) int32 filled slots per cell."""
    return jnp.zeros((num_cells,), jnp.int32).at[cell].add(filled.astype(jnp.int32))


def novelty(norm: chex.Array, filled: chex.Array, k: int = NOVELTY_K) -> chex.Array:
    """(C,) mean distance from each slot's normalised descriptor to its k nearest other
    filled slots (novelty search, Lehman & Stanley 2011); 0 with no other filled slot."""
    diff = norm[:, None, :] - norm[None, :, :]
    dist = jnp.sqrt((diff * diff).sum(-1))
    c = norm.shape[0]
    other = filled[None, :] & ~jnp.eye(c, dtype=bool)
    dist = jnp.where(other, dist, jnp.inf)
    nearest = -jax.lax.top_k(-dist, min(k, c))[0]
    real = jnp.isfinite(nearest)
    mean = jnp.where(real, nearest, 0.0).sum(-1) / jnp.maximum(real.sum(-1), 1)
    return jnp.where(filled, mean, 0.0)


def selection_weights(
    archive: Archive,
    fit: chex.Array,
    nov: chex.Array,
    count: chex.Array,
    temperature: float,
    staleness_coef: float,
    novelty_weight: float,
) -> chex.Array:
    """(C,) float32 sampling distribution over filled slots whose fitness is finite (all
    zero when there is none): PLR's ``(1 - s) P_rank + s P_staleness``."""
    ok = archive.filled & jnp.isfinite(fit)
    value = jnp.where(ok, fit + novelty_weight * nov, -jnp.inf)
    c = value.shape[0]
    order = jnp.lexsort((jnp.arange(c), -value, ~ok))
    rank = jnp.zeros((c,), jnp.float32).at[order].set(jnp.arange(1, c + 1, dtype=jnp.float32))
    p_rank = jnp.where(ok, rank ** (-1.0 / temperature), 0.0)
    stale = jnp.where(ok, jnp.maximum(count - archive.last_seen, 0).astype(jnp.float32), 0.0)

    def norm(w):
        total = w.sum()
        uniform = ok / jnp.maximum(ok.sum(), 1)
        return jnp.where(total > 0, w / jnp.where(total > 0, total, 1.0), uniform)

    return (1.0 - staleness_coef) * norm(p_rank) + staleness_coef * norm(stale)


def refresh(
    archive: Archive,
    slots: chex.Array,
    new: Candidates,
    rate,
    count,
    descriptors: bool = True,
) -> Archive:
    """EMA update of the slots rolled out this step (``slots`` (P,), -1 for none): LP where
    a program had evidence, solvable fraction always, descriptor unless ``descriptors`` is
    False (classic MAP-Elites keeps the descriptor a slot entered with)."""
    c = archive.capacity
    ok = slots >= 0
    s = jnp.where(ok, slots, c)  # out of bounds: dropped
    has = ok & (new.evidence > 0)
    s_lp = jnp.where(has, slots, c)

    def ema(old, value, target):
        cur = old[jnp.clip(target, 0, c - 1)]
        return old.at[target].set((1 - rate) * cur + rate * value, mode="drop")

    return archive.replace(
        lp=ema(archive.lp, new.lp, s_lp),
        lp_sq=ema(archive.lp_sq, new.lp_sq, s_lp),
        descriptor=ema(archive.descriptor, new.descriptor, s)
        if descriptors
        else archive.descriptor,
        solvable=ema(archive.solvable, new.solvable, s),
        last_seen=archive.last_seen.at[s].set(count, mode="drop"),
        levels=jax.tree.map(lambda x, v: x.at[s].set(v, mode="drop"), archive.levels, new.levels),
    )


def insert(
    archive: Archive,
    new: Candidates,
    new_fit: chex.Array,
    feasible: chex.Array,
    fit: chex.Array,
    cell: chex.Array,
    new_cell: chex.Array,
    num_cells: int,
    grid_weight: float,
    count: chex.Array,
) -> tuple[Archive, chex.Array]:
    """Inserts the feasible candidates one after another by the hybrid rule (see the module
    docstring). ``fit``/``cell`` (C,) describe the archive, ``new_fit``/``new_cell``/
    ``feasible`` (P,) the candidates. Returns the archive and (P,) bool inserted."""
    p = new_fit.shape[0]

    def body(j, carry):
        arch, fit, cell, inserted = carry
        occ = occupancy(cell, arch.filled, num_cells)
        # Losing a slot costs its fitness, plus grid_weight if it alone covers a cell other
        # than the candidate's; the candidate brings its fitness, plus grid_weight if its
        # cell is empty.
        opens = occ[new_cell[j]] == 0
        alone = arch.filled & (occ[cell] == 1) & (cell != new_cell[j])
        loss = jnp.where(arch.filled, fit + grid_weight * alone, jnp.inf)
        empty = ~arch.filled
        victim = jnp.where(empty.any(), jnp.argmax(empty), jnp.argmin(loss))
        value = new_fit[j] + jnp.where(opens, grid_weight, 0.0)
        accept = feasible[j] & (empty.any() | (value > loss[victim]))
        target = jnp.where(accept, victim, arch.capacity)
        put = lambda x, v: x.at[target].set(v, mode="drop")  # noqa: E731
        arch = _put(arch, target, new, j, count)
        fit, cell = put(fit, new_fit[j]), put(cell, new_cell[j])
        return arch, fit, cell, inserted.at[j].set(accept)

    init = (archive, fit, cell, jnp.zeros((p,), bool))
    archive, _, _, inserted = jax.lax.fori_loop(0, p, body, init)
    return archive, inserted


def _put(arch: Archive, target: chex.Array, new: Candidates, j, count) -> Archive:
    """Candidate ``j`` written into slot ``target`` (out of range: nothing written)."""
    put = lambda x, v: x.at[target].set(v, mode="drop")  # noqa: E731
    return arch.replace(
        programs=put(arch.programs, new.programs[j]),
        filled=put(arch.filled, True),
        lp=put(arch.lp, new.lp[j]),
        lp_sq=put(arch.lp_sq, new.lp_sq[j]),
        descriptor=put(arch.descriptor, new.descriptor[j]),
        solvable=put(arch.solvable, new.solvable[j]),
        last_seen=put(arch.last_seen, count),
        born=put(arch.born, count),
        levels=jax.tree.map(lambda x, v: put(x, v[j]), arch.levels, new.levels),
    )


def insert_elites(
    archive: Archive,
    new: Candidates,
    new_fit: chex.Array,
    feasible: chex.Array,
    fit: chex.Array,
    new_cell: chex.Array,
    count: chex.Array,
) -> tuple[Archive, chex.Array]:
    """Classic MAP-Elites insertion: slot ``c`` is cell ``c``'s elite (the capacity is the
    number of cells). Candidates in turn: a feasible one enters its cell's slot when it is
    empty or the candidate's fitness ``new_fit`` beats the elite's ``fit``. Returns the
    archive and (P,) bool inserted."""
    p = new_fit.shape[0]

    def body(j, carry):
        arch, fit, inserted = carry
        slot = new_cell[j]
        accept = feasible[j] & (~arch.filled[slot] | (new_fit[j] > fit[slot]))
        target = jnp.where(accept, slot, arch.capacity)
        arch = _put(arch, target, new, j, count)
        fit = fit.at[target].set(new_fit[j], mode="drop")
        return arch, fit, inserted.at[j].set(accept)

    archive, _, inserted = jax.lax.fori_loop(0, p, body, (archive, fit, jnp.zeros((p,), bool)))
    return archive, inserted
