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

from ued.api import load_config
from ued.step.experiment import build

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
    "plr": [
        "curriculum.options.buffer.capacity=8",
        "curriculum.options.buffer.min_fill_ratio=0.25",
    ],
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
for _name in ("robust_plr", "accel", "robust_plr_parallel", "accel_parallel"):
    CURRICULUM_SMALL[_name] = CURRICULUM_SMALL["plr"]


# Deliberate changes since the first recording, each with its reason (entries recorded again
# later are compared in full; see the git log of tests/golden/metrics.json for why).
# ``branch`` (one scalar per step, meaning something different per curriculum) became per-env
# groups, logged as ``curriculum/<group>`` fractions; it is checked against them below.
REMOVED = {"branch"}
# Non-editing PLR has no edit group any more, so it logs no ``curriculum/edit`` (was 0).
NO_EDIT_GROUP = {"maze_plr.yaml", "maze_robust_plr.yaml", "maze_plr_parallel.yaml"}
NO_EDIT_GROUP |= {"cartpole_plr.yaml", "pendulum_plr.yaml"}
# Parallel curricula: the fraction of envs replayed / edited. It was 1 for "replay" whenever
# the replay group was ready, and 0 for "edit" although a third of the envs were edited.
CHANGED = {
    ("maze_plr_parallel.yaml", "curriculum/replay"),
    ("maze_accel_parallel.yaml", "curriculum/replay"),
    ("maze_accel_parallel.yaml", "curriculum/edit"),
}
# Env-step counts by kind share one prefix now (the driver sums them into running totals).
RENAMED = {
    "paired/antagonist_env_steps": "env_steps/antagonist",
    "paired/builder_steps": "env_steps/builder",
    "sfl/refresh_env_steps": "env_steps/curriculum_eval",
}
SEQUENTIAL_GROUPS = ("curriculum/new", "curriculum/replay", "curriculum/edit")
# The program experiments start a new level of an env's program at each episode end since
# the step calls the curriculum's next_levels; with ``resample: rollout`` they must give what
# they gave before (recorded with the code before, under "<name> resample=rollout").
PER_ROLLOUT = ("cartpole_programs.yaml", "maze_latent_programs.yaml", "maze_programs.yaml")
PER_ROLLOUT += ("maze_programs_model.yaml",)
REPLAY_OVERRIDE = "curriculum.options.resample=rollout"


def check_branch(name: str, branch: list, result: dict) -> None:
    """The old per-step ``branch`` against the new group fractions."""
    branch = np.asarray(branch)
    if name == "maze_sfl.yaml":  # branch was the refresh flag
        np.testing.assert_array_equal(branch, np.asarray(result["sfl/refresh"]))
    elif "parallel" in name:  # branch was 1 once the replay group was ready
        np.testing.assert_array_equal(branch, np.asarray(result["curriculum/replay"]) > 0)
    elif "curriculum/replay" in result:  # sequential: every env in the branch's group
        for t, b in enumerate(branch.astype(int)):
            assert result[SEQUENTIAL_GROUPS[b]][t] == 1.0, (name, t, b)
    else:  # DR, PAIRED: one group
        assert not branch.any()


def overrides(cfg) -> list[str]:
    return SMALL + CURRICULUM_SMALL.get(cfg.curriculum.name, [])


def run(name: str, extra: tuple[str, ...] = ()) -> dict:
    path = ROOT / "experiments" / name
    cfg = load_config(path, overrides(load_config(path)) + list(extra))
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
    expected = {RENAMED.get(k, k): v for k, v in expected.items()}
    gone: set[str] = set()
    changed = set()
    if "branch" in expected:  # recorded before per-env groups
        check_branch(name, expected["branch"], result)
        gone = REMOVED | ({"curriculum/edit"} if name in NO_EDIT_GROUP else set())
        changed = {key for n, key in CHANGED if n == name}
    missing = sorted(set(expected) - set(result) - gone)
    assert not missing, f"{name}: metrics no longer logged: {missing}"
    for key, want in expected.items():
        if key in gone or key in changed:
            continue
        np.testing.assert_allclose(
            np.asarray(result[key]), np.asarray(want), rtol=RTOL, atol=ATOL, err_msg=f"{name} {key}"
        )


@pytest.mark.parametrize("name", PER_ROLLOUT)
def test_golden_per_rollout_levels(name):
    if not ALL:
        pytest.skip("set UED_GOLDEN_ALL=1 to check every shipped experiment")
    result = run(name, (REPLAY_OVERRIDE,))
    entry = f"{name} {REPLAY_OVERRIDE.rpartition('.')[2]}"
    data = json.loads(GOLDEN.read_text())
    if RECORD:
        data[entry] = result
        GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=True))
        return
    expected = data[entry]
    assert sorted(expected) == sorted(result), name
    for key, want in expected.items():
        np.testing.assert_allclose(
            np.asarray(result[key]), np.asarray(want), rtol=RTOL, atol=ATOL, err_msg=f"{name} {key}"
        )
