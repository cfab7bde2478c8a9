"""Each control experiment file builds and runs a few train steps (tiny sizes)."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

from ued.api import load_config
from ued.step.experiment import build

EXPERIMENTS = Path(__file__).parents[2] / "experiments"
NAMES = [f"{task}_{cur}" for task in ("cartpole", "pendulum") for cur in ("dr", "plr", "accel")]
TINY = [
    "ppo.num_envs=4",
    "ppo.num_steps=16",
    "ppo.num_minibatches=1",
    "ppo.epochs=1",
    "run.compile_cache=",
    "run.progress=false",
]
NUM_UPDATES = 6
# These tests check that the configs run, not how fast: cheaper XLA compilation.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@pytest.mark.parametrize("name", NAMES)
def test_experiment_runs_a_few_steps(name):
    small = [] if name.endswith("_dr") else ["curriculum.options.buffer.capacity=8"]
    cfg = load_config(EXPERIMENTS / f"{name}.yaml", TINY + small)
    assert cfg.network.kind == "mlp"
    exp = build(cfg)
    state = jax.jit(exp.init)(jax.random.PRNGKey(0))
    chunk = jax.jit(lambda s: exp.run_chunk(s, NUM_UPDATES)).lower(state)
    state, metrics = chunk.compile(compiler_options=FAST_COMPILE)(state)
    metrics = jax.device_get(metrics)
    assert int(state.updates) == NUM_UPDATES
    params = [p.name for p in exp.env.task.params]
    for key in ["mean_return", *(f"levels/{p}" for p in params)]:
        assert np.isfinite(metrics[key]).all(), key
    if cfg.curriculum.name == "dr":
        return
    # The buffer's level analytics are the physical parameters of the stored levels.
    for p in params:
        assert np.isfinite(metrics[f"buffer/{p}"]).all()
    buffer = state.curriculum.buffer
    filled = np.asarray(buffer.filled)
    assert filled.any()
    for p in params:
        stored = np.asarray(getattr(buffer.levels, p))[filled]
        np.testing.assert_allclose(np.asarray(state.curriculum.level_stats[p])[filled], stored)
    if cfg.curriculum.name == "accel":
        assert metrics["curriculum/edit"].sum() >= 1  # replay starts at once, then edits
        assert float(metrics["buffer/num_edits"][-1]) > 0
