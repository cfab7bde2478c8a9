"""The ``programs`` curriculum: known answers on the toy corridor's program space (the archive
finds the best region, which only the widened space holds; the grid keeps it diverse; the
widening fires exactly when the plateau rule says; constraints filter), grounding levels,
options, a real maze run, and a toy run's events, gallery and plot."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.scripts_loader import load_script
from tests.toy_family import CorridorLevel, toy_config
from ued import config as config_lib
from ued import program_archive as arc
from ued.chunk_records import chunk_events
from ued.config import ConfigError
from ued.curricula import parse_options
from ued.curricula.programs import GROUNDING, make_programs
from ued.experiment import build
from ued.train import train

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
        cstate, _ = cur.absorb(cstate, per)
        fit, _, _ = cur.archive_view(cstate.replace(count=cstate.count - 1))
        return cstate, (cstate.stage, fit.max())

    run = jax.jit(lambda s, k: jax.lax.scan(step, s, jax.random.split(k, steps)))
    return jax.device_get(run(cur.init(jax.random.key(seed)), jax.random.key(seed + 1)))


def peaked(programs):
    return 1.0 - jnp.abs(programs[:, 1] - BEST_DISTANCE) / BEST_DISTANCE


# --- known answers ------------------------------------------------------------------------------


def test_archive_finds_the_best_region_after_widening_to_it():
    # Stage 0 only allows distances 1-2 and stage 1 up to 3: the peak at 4 needs stage 2.
    window = 5
    cur = curriculum(plateau_window=window, grid_weight=0.0, novelty_weight=0.0)
    state, (stages, bests) = synthetic_run(cur, 80, peaked)
    a = state.archive
    assert int(state.stage) == 2 and int(state.widen_events) == 2
    best = int(np.argmax(np.where(a.filled, a.lp, -np.inf)))
    assert a.programs[best, 1] == BEST_DISTANCE
    # Selection concentrates there: most of the sampling mass is on the best distance.
    w = np.asarray(jax.jit(cur.weights)(state))
    assert w[a.programs[:, 1] == BEST_DISTANCE].sum() > 0.5
    # Without a grid bonus the archive keeps the fittest: the early short distances are gone.
    assert set(a.programs[a.filled, 1].tolist()) <= {3.0, 4.0, 5.0}
    # The widenings fired exactly where the plateau rule puts them on the best fitness seen.
    record, since, stage = jnp.float32(-jnp.inf), jnp.int32(0), jnp.int32(0)
    expected = []
    for u, b in enumerate(bests):
        record, since, stage, widened = arc.plateau(record, since, stage, b, window, 3, 0.0)
        if widened:
            expected.append(u)
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


def test_plateau_rule_widens_exactly_after_window_updates_without_improvement():
    bests = [1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 1.05]
    record, since, stage = jnp.float32(-jnp.inf), jnp.int32(0), jnp.int32(0)
    fired = []
    for u, best in enumerate(bests):
        record, since, stage, widened = arc.plateau(record, since, stage, best, 3, 3, 0.1)
        if widened:
            fired.append(u)
    # u0 sets the record; u1-u3 stall -> widen at u3; u4 improves; u5-u7 stall -> widen at
    # u7; then the last stage is reached and nothing fires (1.05 is not a 0.1 improvement).
    assert fired == [3, 7] and int(stage) == 2
    _, _, _, widened = arc.plateau(jnp.float32(1.0), jnp.int32(3), jnp.int32(0), 5.0, 0, 3, 0.0)
    assert not widened  # window 0: never


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
    assert int(state.grounding_filled.sum()) == 2  # the start == goal level is refused
    assert state.grounding.start[:2].tolist() == [0, 1] and int(state.grounding_next) == 2
    six = stacked(*(corridor(s, (s + 1) % 6) for s in range(6)))
    state = add(state, six, jax.random.key(2))
    assert bool(state.grounding_filled.all())
    assert sorted(np.asarray(state.grounding.start).tolist()) == [2, 3, 4, 5]  # the last four
    assert int(state.grounding_next) == 2


def test_grounding_file_levels_fill_their_share_of_the_batch(tmp_path):
    path = tmp_path / "ground.txt"
    path.write_text("A....G\n\nG....A\n")
    cur = curriculum(grounding_file=str(path), grounding_fraction=0.25, grounding_capacity=4)
    state = cur.init(jax.random.key(0))
    state, levels, plan = jax.jit(lambda s, k: cur.propose(k, s, None))(state, jax.random.key(3))
    assert plan.group[-2:].tolist() == [GROUNDING, GROUNDING]
    assert plan.buffer_idx[-2:].tolist() == [-1, -1]
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
    cfg = config_lib.load(EXPERIMENTS / request.param, [*TINY[request.param], *COMMON])
    exp = build(cfg)
    state = exp.init(jax.random.key(0))
    state, metrics = jax.jit(lambda s: exp.run_chunk(s, 4))(state)
    return exp, jax.device_get(state), jax.device_get(metrics)


def test_real_runs_fill_the_archive_with_finite_metrics(real_run):
    exp, state, metrics = real_run
    space = exp.curriculum.space
    for name in ("size", "coverage", "best_lp", "mean_lp", "stage", "widen_events"):
        assert np.isfinite(metrics[f"programs/{name}"]).all(), name
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
    assert np.all(programs >= low[-1]) and np.all(programs <= high[-1])
    assert int(state.curriculum.count) == 4


# --- logs, gallery and plot of a real (toy) run -------------------------------------------------


def test_chunk_events_give_exact_update_numbers():
    metrics = {"events/widen": np.array([0.0, 1.0, 0.0, 1.0]), "programs/size": np.ones(4)}
    assert chunk_events(metrics, 10, 3) == [{"updates": 12, "event": "widen"}]


def test_toy_run_logs_widenings_and_draws_the_archive(tmp_path):
    # plateau_window=1: every update that does not improve the record widens the space.
    cfg = toy_config(
        curriculum={"name": "programs", "options": {"archive_programs": 2, "new_programs": 2,
                                                    "plateau_window": 1}},
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
