"""The ``programs`` curriculum: known answers on the toy corridor's program space (the archive
finds the best region, which only the widened space holds; the hybrid archive's grid keeps
it diverse; classic MAP-Elites keeps one elite per cell; the widening fires exactly when the
plateau rule says; constraints filter), new levels of the same program at episode ends,
grounding levels, options, a real maze run, and a toy run's events, gallery and plot. The
plateau signal and the model in the loop have their own tests (``test_program_spec.py``)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.counting import count_runs
from tests.scripts_loader import load_script
from tests.toy_family import CorridorLevel, toy_config
from ued.api import load_config
from ued.config.config import ConfigError
from ued.core import program_archive as arc
from ued.core.program_spec import fitness_rule
from ued.curricula import parse_options
from ued.curricula.program_probe import Probe
from ued.curricula.programs import FRESH, GROUNDING, make_programs
from ued.host.chunk_records import chunk_events
from ued.host.train import train
from ued.step.experiment import build

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

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
TINY = {
    "maze_programs.yaml": [
        "env.options={max_size: 7, view_size: 3, max_steps: 8}",
        "network.lstm_size=16",
        "network.head_size=8",
        "network.conv_channels=4",
    ],
}
COMMON = [
    "ppo.num_envs=12",
    "ppo.num_steps=16",
    "ppo.epochs=1",
    "ppo.num_minibatches=1",
    "eval.levels=none",
    "run.progress=false",
    "run.compile_cache=",
    "curriculum.options.grounding_fraction=0.25",
]


@pytest.fixture(scope="module", params=sorted(TINY))
def real_run(request):
    cfg = load_config(EXPERIMENTS / request.param, [*TINY[request.param], *COMMON])
    exp = build(cfg)
    state = exp.init(jax.random.key(0))
    state, metrics = jax.jit(lambda s: exp.run_chunk(s, 4))(state)
    return exp, jax.device_get(state), jax.device_get(metrics)


def test_real_runs_fill_the_archive_with_finite_metrics(real_run):
    exp, state, metrics = real_run
    space = exp.curriculum.space
    for name in ("size", "coverage", "best_lp", "mean_lp", "stage", "widen_events"):
        assert np.isfinite(metrics[f"programs/{name}"]).all(), name
    # The probe runs on update 0 and every probe_every (10) updates: once in these 4.
    probe = metrics["programs/probe_success"]
    assert np.isfinite(probe[0]) and np.isnan(probe[1:]).all() and 0 <= probe[0] <= 1
    k, steps = exp.curriculum.options.probe_levels, exp.curriculum.probe_steps
    assert metrics["env_steps/curriculum_eval"].tolist() == [k * steps, 0, 0, 0]
    for name in space.names:
        assert np.isfinite(metrics[f"programs/{name}_mean"]).all()
    size = metrics["programs/size"]
    assert size[0] >= 1 and np.all(np.diff(size) >= 0)
    assert 0 < metrics["programs/coverage"][-1] <= 1
    # No grounding levels were given: their envs play program levels.
    assert np.all(metrics["curriculum/grounding"] == 0)
    total = sum(metrics[f"curriculum/{g}"] for g in exp.curriculum.groups)
    np.testing.assert_allclose(total, 1.0, rtol=1e-6)
    a = state.curriculum.archive
    low, high = space.stage_bounds()
    programs = a.programs[a.filled]
    assert np.all(programs >= low[0]) and np.all(programs <= high[0])  # stage 0's bounds
    for i, name in enumerate(space.names):
        assert metrics[f"programs/bound_{name}_high"].tolist() == [high[0, i]] * 4
    assert int(state.curriculum.count) == 4


# --- logs, gallery and plot of a real (toy) run -------------------------------------------------


def test_chunk_events_give_exact_update_numbers():
    metrics = {"events/widen": np.array([0.0, 1.0, 0.0, 1.0]), "programs/size": np.ones(4)}
    assert chunk_events(metrics, 10, 3) == [{"updates": 12, "event": "widen"}]


def test_toy_run_logs_widenings_and_draws_the_archive(tmp_path):
    # The fitness rule with plateau_window=1: every update that does not improve the record
    # widens the space.
    cfg = toy_config(
        curriculum={"name": "programs", "options": {"archive_programs": 2, "new_programs": 2,
                                                    "plateau_window": 1,
                                                    "plateau_signal": "fitness"}},
        ppo={"num_envs": 8, "epochs": 1},
        eval={"levels": "none", "interval": 4},
        run={"total_env_steps": 4 * 64, "chunk_updates": 4, "dir": str(tmp_path / "run")},
    )  # fmt: skip
    result = train(cfg, verbose=False)
    run_dir = tmp_path / "run"
    stage = int(result["state"].curriculum.stage)
    lines = (run_dir / "events.jsonl").read_text().splitlines() if stage else []
    events = [json.loads(line) for line in lines]
    assert len(events) == stage == int(result["state"].curriculum.widen_events) >= 1
    assert all(e["event"] == "widen" and 1 <= e["updates"] <= 4 for e in events)
    assert (run_dir / "gallery" / "programs_00000004.png").exists()
    assert (
        load_script("plot").main([str(run_dir), "--programs", "-o", str(tmp_path / "plots")]) == 0
    )
    assert (tmp_path / "plots" / "programs.png").stat().st_size > 0


def test_toy_run_with_the_model_in_the_loop_logs_bounds_and_calibration(tmp_path):
    # The fitness rule with plateau_window=1 widens often; the model moves one bound each
    # time, logged as a widen_<dim>_<side> event beside "widen", and the plot draws the
    # bounds and each widening's predicted vs measured learning potential.
    cfg = toy_config(
        curriculum={"name": "programs", "options": {"archive_programs": 2, "new_programs": 2,
                                                    "plateau_window": 1, "spec": "model",
                                                    "plateau_signal": "fitness"}},
        ppo={"num_envs": 8, "epochs": 1},
        eval={"levels": "none", "interval": 4},
        run={"total_env_steps": 8 * 64, "chunk_updates": 4, "dir": str(tmp_path / "run")},
    )  # fmt: skip
    result = train(cfg, verbose=False)
    run_dir = tmp_path / "run"
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    widen = [e["updates"] for e in events if e["event"] == "widen"]
    moved = [e for e in events if e["event"].startswith("widen_")]
    assert widen and [e["updates"] for e in moved] == widen
    assert all(e["event"] in ("widen_distance_high", "widen_start_low", "widen_start_high",
                              "widen_distance_low") for e in moved)  # fmt: skip
    state = result["state"].curriculum
    assert int(state.widen_events) == len(widen)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["programs/bound_distance_high"] == float(state.spec.high[1])
    plot = load_script("plot")
    assert plot.main([str(run_dir), "--programs", "-o", str(tmp_path / "plots")]) == 0
    assert (tmp_path / "plots" / "programs_calibration.png").stat().st_size > 0
    pairs = plot.calibration(rows, events)
    assert len(pairs) >= 1 and all(p["bound"].startswith(("distance", "start")) for p in pairs)


def test_vmapped_seeds_probe_only_on_probe_updates_and_count_what_ran(tmp_path, monkeypatch):
    # The probe reads the schedule's unbatched update count: with 2 vmapped seeds it rolls
    # out on updates 0, 2 and 4 only (once for both seeds), and every row's running totals
    # count the probe's env steps that ran.
    calls = count_runs(monkeypatch, Probe, "success")
    cfg = toy_config(
        curriculum={"name": "programs", "options": {"archive_programs": 2, "new_programs": 2,
                                                    "probe_every": 2, "probe_levels": 4}},
        ppo={"num_envs": 8, "epochs": 1},
        eval={"levels": "none"},
        run={"total_env_steps": 5 * 64, "chunk_updates": 2, "num_seeds": 2,
             "seed_mode": "vmap", "dir": str(tmp_path)},
    )  # fmt: skip
    result = train(cfg, verbose=False)
    jax.effects_barrier()
    assert result["seed_mode"] == "vmap"
    assert len(calls) == 3
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["updates"], r["seed"]) for r in rows] == [(u, s) for u in (2, 4, 5) for s in (0, 1)]
    for row in rows:
        probes = (row["updates"] + 1) // 2  # on updates 0, 2, 4
        assert row["env_steps/curriculum_eval"] == probes * 4 * 8  # probe_levels x num_steps
        assert row["programs/probe_success"] is not None
