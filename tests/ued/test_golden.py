"""Golden metrics: a few updates of every shipped experiment, fixed seed, small sizes.

Recorded before the curriculum-contract redesign; any refactor of the train step, the
curricula, the config or the envs must reproduce them. XLA may reorder float sums when a
program's structure changes, so values match to ``RTOL``/``ATOL`` rather than bit for bit.
The default suite checks one experiment per kind of step (``FAST``); every shipped
experiment is checked with ``UED_GOLDEN_ALL=1`` (about 3 minutes on 2 cores). Record again
(only on purpose, and say why in the commit) with::

    UED_RECORD_GOLDEN=1 python -m pytest -q tests/ued/test_golden.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import jax
import numpy as np
import pytest

from ued import config as config_lib
from ued.experiment import build

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden" / "metrics.json"
EXPERIMENTS = sorted(p.name for p in (ROOT / "experiments").glob("*.yaml"))
UPDATES = 4
RTOL, ATOL = 1e-4, 1e-6
RECORD = os.environ.get("UED_RECORD_GOLDEN") == "1"
ALL = RECORD or os.environ.get("UED_GOLDEN_ALL") == "1"
# One per kind of step: DR; sequential PLR with ACCEL's edit branch; the parallel groups; the
# control family with an editor menu; SFL's refresh.
FAST = {
    "maze_dr.yaml",
    "maze_accel.yaml",
    "maze_plr_parallel.yaml",
    "cartpole_accel.yaml",
    "maze_sfl.yaml",
}

SMALL = [
    "ppo.num_envs=24",
    "ppo.num_steps=16",
    "ppo.epochs=1",
    "run.total_env_steps=3840",
]
# Per curriculum: the same small sizes for every experiment that uses it.
CURRICULUM_SMALL = {
    "plr": ["curriculum.buffer.capacity=8", "curriculum.buffer.min_fill_ratio=0.25"],
    "sfl": [
        "curriculum.options.num_samples=12",
        "curriculum.options.samples_per_batch=6",
        "curriculum.options.rollout_steps=16",
        "curriculum.options.buffer_size=4",
        "curriculum.options.refresh_every=2",
    ],
    "paired": [
        "curriculum.options.adversary_conv_channels=8",
        "curriculum.options.adversary_lstm_size=16",
    ],
}
CURRICULUM_SMALL["robust_plr"] = CURRICULUM_SMALL["accel"] = CURRICULUM_SMALL["plr"]


def overrides(cfg) -> list[str]:
    return SMALL + CURRICULUM_SMALL.get(cfg.curriculum.name, [])


def run(name: str) -> dict:
    path = ROOT / "experiments" / name
    cfg = config_lib.load(path, overrides(config_lib.load(path)))
    exp = build(cfg)
    state = exp.init(jax.random.PRNGKey(0))
    state, metrics = jax.jit(lambda s: exp.run_chunk(s, UPDATES))(state)
    leaves = [np.asarray(x, np.float64) for x in jax.tree.leaves(state.student.params)]
    out = {k: np.asarray(v, np.float64).tolist() for k, v in jax.device_get(metrics).items()}
    out["params/sum"] = [float(sum(x.sum() for x in leaves))]
    out["params/sumsq"] = [float(sum((x * x).sum() for x in leaves))]
    return out


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_golden(name):
    if not ALL and name not in FAST:
        pytest.skip("set UED_GOLDEN_ALL=1 to check every shipped experiment")
    result = run(name)
    if RECORD:
        data = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
        data[name] = result
        GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True))
        return
    expected = json.loads(GOLDEN.read_text())[name]
    # Renamed metrics are listed in RENAMED; nothing may disappear silently.
    missing = sorted(set(expected) - set(result))
    assert not missing, f"{name}: metrics no longer logged: {missing}"
    for key, want in expected.items():
        np.testing.assert_allclose(
            np.asarray(result[key]), np.asarray(want), rtol=RTOL, atol=ATOL, err_msg=f"{name} {key}"
        )
