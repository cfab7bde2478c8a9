"""The ``programs`` curriculum: known answers on the toy corridor's program space (the archive
finds the best region, which only the widened space holds; the hybrid archive's grid keeps
it diverse; classic MAP-Elites keeps one elite per cell; the widening fires exactly when the
plateau rule says; constraints filter), new levels of the same program at episode ends,
grounding levels and options (real and toy runs: test_program_runs.py). The
plateau signal and the model in the loop have their own tests (``test_program_spec.py``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.toy_family import CorridorLevel, toy_config
from ued.api import load_config
from ued.config.config import ConfigError
from ued.core import program_archive as arc
from ued.core.program_spec import fitness_rule
from ued.curricula import parse_options
from ued.curricula.programs import FRESH, GROUNDING, make_programs
from ued.step.experiment import build

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
BEST_DISTANCE = 4.0  # the synthetic learning potential peaks at this goal distance


def curriculum(**options):
    base = {"archive_programs": 2, "new_programs": 4, "capacity": 16, "age_decay": 1.0}
    cfg = toy_config(
        curriculum={"name": "programs", "options": {**base, **options}},
        ppo={"num_envs": 8},
        eval={"levels": "none"},
    )
    return build(cfg).curriculum


def synthetic_run(cur, steps: int, lp_fn, seed: int = 0):
    """Drives propose + absorb for ``steps`` updates with learning potential ``lp_fn(programs)``
    in place of a rollout's scores; returns the final state and, after each update, the stage
    and the best fitness the plateau rule saw."""
    space, p = cur.space, cur.num_programs

    def step(cstate, key):
        cstate, levels, _ = cur.propose(key, cstate, None)
        programs = cstate.batch_programs
        lp = lp_fn(programs)
        per = arc.Candidates(
            programs=programs,
            lp=lp,
            lp_sq=lp * lp,
            evidence=jnp.ones((p,), jnp.int32),
            descriptor=jax.vmap(space.describe)(jax.tree.map(lambda x: x[:p], levels)),
            solvable=jnp.ones((p,), jnp.float32),
            levels=jax.tree.map(lambda x: x[:p], levels),
        )
        cstate, _ = cur.absorb(cstate, per, jnp.float32(jnp.nan), key)
        fit, _, _ = cur.estimates.archive_view(cstate.replace(count=cstate.count - 1))
        return cstate, (cstate.stage, fit.max())

    run = jax.jit(lambda s, k: jax.lax.scan(step, s, jax.random.split(k, steps)))
    return jax.device_get(run(cur.init(jax.random.key(seed)), jax.random.key(seed + 1)))


def peaked(programs):
    return 1.0 - jnp.abs(programs[:, 1] - BEST_DISTANCE) / BEST_DISTANCE


# --- known answers ------------------------------------------------------------------------------


def test_archive_finds_the_best_region_after_widening_to_it():
    # Stage 0 only allows distances 1-2 and stage 1 up to 3: the peak at 4 needs stage 2.
    # Widened by the earlier fitness rule (the probe needs a student: test_program_spec.py).
    window = 5
    cur = curriculum(
        plateau_window=window, grid_weight=0.0, novelty_weight=0.0, plateau_signal="fitness"
    )
    state, (stages, bests) = synthetic_run(cur, 80, peaked)
    a = state.archive
    assert int(state.stage) == 2 and int(state.widen_events) == 2
    best = int(np.argmax(np.where(a.filled, a.lp, -np.inf)))
    assert a.programs[best, 1] == BEST_DISTANCE
    # Selection concentrates there: most of the sampling mass is on the best distance.
    w = np.asarray(jax.jit(cur.estimates.weights)(state))
    assert w[a.programs[:, 1] == BEST_DISTANCE].sum() > 0.5
    # Without a grid bonus the archive keeps the fittest: the early short distances are gone.
    assert set(a.programs[a.filled, 1].tolist()) <= {3.0, 4.0, 5.0}
    # The widenings fired exactly where the plateau rule puts them on the best fitness seen.
    record, since, stage = jnp.float32(-jnp.inf), jnp.int32(0), 0
    expected = []
    for u, b in enumerate(bests):
        record, since, stalled = fitness_rule(record, since, b, window, 0.05)
        if stalled and stage < 2:
            expected.append(u)
            record, since, stage = jnp.float32(b), jnp.int32(0), stage + 1
    assert np.flatnonzero(np.diff(np.concatenate([[0], stages]))).tolist() == expected


def test_grid_weight_spreads_the_archive_over_cells():
    # A grid over the goal distance alone (5 cells), capacity 8, a large grid bonus: the
    # archive keeps a program in every cell, even the least learnable distance 1 (compare the
    # elite archive above).
    cur = curriculum(
        capacity=8,
        grid_weight=10.0,
        grid_descriptors=["distance"],
        grid_resolution=5,
        start_stage=2,
        plateau_window=0,
    )
    state, _ = synthetic_run(cur, 40, peaked)
    a = state.archive
    assert set(a.programs[a.filled, 1].tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert BEST_DISTANCE in a.programs[np.argmax(np.where(a.filled, a.lp, -np.inf)), 1:2]


def test_constraints_filter_programs_out_of_the_archive():
    # The peak (distance 4) lies outside the designer's bounds: the archive never holds it and
    # settles on the best allowed distance.
    cur = curriculum(
        descriptor_bounds={"distance": [1, 3]}, start_stage=2, plateau_window=0, grid_weight=0.0
    )
    state, _ = synthetic_run(cur, 30, peaked)
    a = state.archive
    distances = a.programs[a.filled, 1]
    assert distances.size and distances.max() <= 3.0
    assert a.programs[np.argmax(np.where(a.filled, a.lp, -np.inf)), 1] == 3.0


def test_fitness_rule_stalls_exactly_after_window_updates_without_improvement():
    bests = [1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 1.05]
    record, since = jnp.float32(-jnp.inf), jnp.int32(0)
    fired = []
    for u, best in enumerate(bests):
        record, since, stalled = fitness_rule(record, since, best, 3, 0.1)
        if stalled:
            fired.append(u)
            since = jnp.int32(0)  # the curriculum restarts the count when it widens
    # u0 sets the record; u1-u3 stall -> fire at u3; u4 improves; u5-u7 stall -> fire at
    # u7; u8-u10 stall -> u10 (1.05 is not a 0.1 improvement on 2.0).
    assert fired == [3, 7, 10]
    _, _, stalled = fitness_rule(jnp.float32(1.0), jnp.int32(3), 5.0, 0, 0.0)
    assert not stalled  # window 0: never


# --- the archive's two insertion rules -----------------------------------------------------------


def candidates(programs, lp, distance):
    """Candidates of the toy corridor with given learning potential and goal distance."""
    p = len(lp)
    level = corridor(0, 1)
    return arc.Candidates(
        programs=jnp.asarray(programs, jnp.float32),
        lp=jnp.asarray(lp, jnp.float32),
        lp_sq=jnp.asarray(lp, jnp.float32) ** 2,
        evidence=jnp.ones((p,), jnp.int32),
        descriptor=jnp.stack([jnp.asarray(distance, jnp.float32), jnp.zeros(p)], 1),
        solvable=jnp.ones((p,), jnp.float32),
        levels=stacked(*[level] * p),
    )


def absorb_new(cur, state, new):
    """Offers ``new`` (all of them new programs) to the archive, as a step would."""
    p = new.lp.shape[0]
    state = state.replace(
        batch_programs=new.programs,
        batch_slots=jnp.full((p,), -1, jnp.int32),
        batch_kind=jnp.full((p,), FRESH, jnp.int32),
    )
    return jax.device_get(jax.jit(cur.absorb)(state, new))


def test_elites_keep_one_program_per_cell_replaced_only_by_a_fitter_one():
    # A grid over the goal distance alone: 5 cells (distance 1..5 over [1, 6)).
    cur = curriculum(
        insertion="elites", capacity=5, archive_programs=1, new_programs=3,
        grid_descriptors=["distance"], grid_resolution=5, plateau_window=0,
    )  # fmt: skip
    state = jax.jit(cur.init)(jax.random.key(0))
    # Two candidates for distance 2's cell and one for distance 4's: the first enters cell 1,
    # the second, fitter, replaces it; distance 4 fills cell 3; the other cells stay empty.
    new = candidates([[0, 2], [1, 2], [0, 4]], [0.2, 0.5, 0.1], [2, 2, 4])
    state, info = absorb_new(cur, state, new)
    a = state.archive
    assert info["inserted"].tolist() == [True, True, True]
    assert a.filled.tolist() == [False, True, False, True, False]  # slot = cell
    assert float(a.lp[1]) == 0.5 and a.programs[1].tolist() == [1.0, 2.0]
    # A less fit candidate does not replace the elite; a fitter one does, in its own cell
    # only (the hybrid would have evicted the globally weakest slot instead).
    new = candidates([[2, 2], [3, 4], [4, 4]], [0.3, 0.05, 0.9], [2, 4, 4])
    state, info = absorb_new(cur, state, new)
    a = state.archive
    assert info["inserted"].tolist() == [False, False, True]
    assert a.lp[[1, 3]].tolist() == pytest.approx([0.5, 0.9])
    assert int(a.filled.sum()) == 2
    fit, cell, _ = jax.jit(cur.estimates.archive_view)(state)
    assert cell.tolist() == [0, 1, 2, 3, 4]


def test_the_hybrid_archive_lets_programs_share_a_cell_and_evicts_the_weakest_anywhere():
    cur = curriculum(
        capacity=2, archive_programs=1, new_programs=3, grid_weight=0.0,
        grid_descriptors=["distance"], grid_resolution=5, plateau_window=0,
    )  # fmt: skip
    state = jax.jit(cur.init)(jax.random.key(0))
    state, _ = absorb_new(cur, state, candidates([[0, 2], [1, 2]], [0.2, 0.5], [2, 2]))
    a = state.archive
    assert a.filled.all() and set(a.programs[:, 1].tolist()) == {2.0}  # one cell, two slots
    # A fitter program in another cell evicts the weakest slot, wherever it is.
    state, info = absorb_new(cur, state, candidates([[0, 4]], [0.3], [4]))
    a = state.archive
    assert info["inserted"].tolist() == [True]
    assert sorted(a.lp.tolist()) == pytest.approx([0.3, 0.5])


def test_elites_need_a_slot_per_cell():
    with pytest.raises(ConfigError, match="capacity must be the number of cells.* = 36"):
        curriculum(insertion="elites", capacity=16, grid_resolution=6)


# --- a new level of the same program at each episode end ----------------------------------------


def test_next_levels_draw_new_levels_of_each_envs_program(tmp_path):
    path = tmp_path / "ground.txt"
    path.write_text("A....G\n")
    cur = curriculum(grounding_file=str(path), grounding_fraction=0.25, grounding_capacity=4)
    state = jax.jit(cur.init)(jax.random.key(0))
    state, levels, plan = jax.jit(lambda s, k: cur.propose(k, s, None))(state, jax.random.key(3))
    draw = cur.next_levels(state, levels, plan)
    owner = cur.owner()
    for k in range(3):
        fresh = jax.device_get(jax.jit(draw)(jax.random.key(10 + k)))
        programs = np.asarray(state.batch_programs)[owner]
        ground = np.asarray(plan.group) == GROUNDING
        # Every program env plays its program (the corridor's program fixes its level).
        distance = (fresh.goal - fresh.start) % fresh.length
        np.testing.assert_array_equal(fresh.start[~ground], programs[~ground, 0])
        np.testing.assert_array_equal(distance[~ground], programs[~ground, 1])
        # A grounding env keeps its level.
        np.testing.assert_array_equal(fresh.start[ground], np.asarray(levels.start)[ground])
    assert curriculum(resample="rollout").next_levels(state, levels, plan) is None


def test_next_levels_differ_by_key_where_the_program_leaves_freedom():
    # The control box: a program is a box of physics, each level a draw from it.
    cfg = load_config(EXPERIMENTS / "cartpole_programs.yaml", ["eval.levels=none"])
    exp = build(cfg)
    cur = exp.curriculum
    state = exp.init(jax.random.key(0))
    cstate, levels, plan = jax.jit(lambda s, k: cur.propose(k, s, None))(
        state.curriculum, jax.random.key(1)
    )
    draw = jax.jit(cur.next_levels(cstate, levels, plan))
    a, b = draw(jax.random.key(1)), draw(jax.random.key(2))
    assert not np.allclose(np.asarray(jax.tree.leaves(a)[0]), np.asarray(jax.tree.leaves(b)[0]))
    # ... always inside each env's box (the program's centre +- half its width).
    space = cur.space
    programs = np.asarray(cstate.batch_programs)[cur.owner()]
    values = np.asarray(jax.vmap(space.describe)(a))
    centre, width = programs[:, 0::2], programs[:, 1::2] * (space.high[0::2] - space.low[0::2])
    assert np.all(np.abs(values - centre) <= width / 2 + 1e-4)


# --- grounding ----------------------------------------------------------------------------------


def corridor(start, goal, length=6):
    return CorridorLevel(jnp.int32(start), jnp.int32(goal), jnp.int32(length))


def stacked(*levels):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *levels)


def test_add_levels_appends_valid_levels_to_a_ring():
    cur = curriculum(grounding_capacity=4)
    add = jax.jit(cur.add_levels)
    state = cur.init(jax.random.key(0))
    state = add(state, stacked(corridor(0, 1), corridor(2, 2), corridor(1, 3)), jax.random.key(1))
    ring = state.grounding
    assert int(ring.filled.sum()) == 2  # the start == goal level is refused
    assert ring.levels.start[:2].tolist() == [0, 1] and int(ring.count) == 2
    six = stacked(*(corridor(s, (s + 1) % 6) for s in range(6)))
    state = add(state, six, jax.random.key(2))
    assert bool(state.grounding.filled.all())
    assert sorted(np.asarray(state.grounding.levels.start).tolist()) == [2, 3, 4, 5]  # last four
    assert int(state.grounding.count) % 4 == 2  # the next slot


def test_grounding_file_levels_fill_their_share_of_the_batch(tmp_path):
    path = tmp_path / "ground.txt"
    path.write_text("A....G\n\nG....A\n")
    cur = curriculum(grounding_file=str(path), grounding_fraction=0.25, grounding_capacity=4)
    state = cur.init(jax.random.key(0))
    state, levels, plan = jax.jit(lambda s, k: cur.propose(k, s, None))(state, jax.random.key(3))
    assert plan.group[-2:].tolist() == [GROUNDING, GROUNDING]
    assert set(np.asarray(levels.start[-2:]).tolist()) <= {0, 5}
    assert GROUNDING not in plan.group[:-2].tolist()


def test_options_name_the_bad_key(tmp_path):
    with pytest.raises(ConfigError, match="curriculum.options.grid_descriptors: 'size'"):
        curriculum(grid_descriptors=["size"])
    with pytest.raises(ConfigError, match="archive_programs \\+ new_programs = 12"):
        curriculum(archive_programs=6, new_programs=6)
    with pytest.raises(ConfigError, match="curriculum.options.grounding_file"):
        curriculum(grounding_file=str(tmp_path / "missing.txt"))
    with pytest.raises(ConfigError, match="curriculum.options.temperature"):
        curriculum(temperature=0)
    exp = build(toy_config(curriculum={"name": "programs"}, ppo={"num_envs": 8}))
    bare = dataclasses.replace(exp.deps.family, programs=None)
    with pytest.raises(ConfigError, match="declares none"):
        make_programs(parse_options("programs", {}), dataclasses.replace(exp.deps, family=bare))


# --- the real train step on the maze -------------------------------------------------------
