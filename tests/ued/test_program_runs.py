"""The program curriculum in real runs: the shipped experiments, toy runs that widen (with the
fixed ladder and with the model in the loop), and vmapped seeds' probe counts."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from tests.counting import count_runs
from tests.scripts_loader import load_script
from tests.toy_family import toy_config
from ued.api import load_config
from ued.curricula.program_probe import Probe
from ued.host.chunk_records import chunk_events
from ued.host.train import train
from ued.step.experiment import build

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
