"""Each curriculum plugs into the one train step; checked on the toy corridor family."""

import jax
import numpy as np
import pytest

from tests.toy_family import REPLAY_CURRICULUM, toy_config, with_curriculum
from ued.curricula.base import ResetsEpisodes, full_plan, restarts
from ued.curricula.plr import REPLAY
from ued.step.experiment import build

BASE = toy_config(
    env={"options": {"max_length": 8}},
    ppo={"num_envs": 7, "num_steps": 16, "epochs": 1},
    run={"total_env_steps": 10000},
    curriculum=REPLAY_CURRICULUM,
)

CURRICULA = ["dr", "plr", "robust_plr", "accel", "plr_parallel", "accel_parallel"]


def make(name, **options):
    return build(with_curriculum(BASE, name, **options))


@pytest.fixture(scope="module", params=CURRICULA)
def run8(request):
    exp = make(request.param)
    state = exp.init(jax.random.PRNGKey(0))
    state, metrics = jax.jit(lambda s: exp.run_chunk(s, 8))(state)
    return exp, state, jax.device_get(metrics)


def test_runs_with_finite_metrics(run8):
    exp, state, metrics = run8
    assert int(state.updates) == 8
    for key in ("mean_return", "solve_rate", "levels/distance"):
        assert np.all(np.isfinite(metrics[key])), key
    if exp.cfg.curriculum.name != "dr":
        buffer = state.curriculum.buffer
        assert 0 < int(buffer.size) <= buffer.capacity
        assert np.all(np.isfinite(metrics["buffer/size"]))
        # Stored level metrics describe the stored levels.
        dist = np.abs(np.asarray(buffer.levels.goal) - np.asarray(buffer.levels.start))
        filled = np.asarray(buffer.filled)
        np.testing.assert_allclose(
            np.asarray(state.curriculum.level_stats["distance"])[filled], dist[filled]
        )


def test_replay_happens_and_buffer_fills(run8):
    exp, state, metrics = run8
    if exp.cfg.curriculum.name == "dr":
        pytest.skip("no buffer")
    assert metrics["curriculum/replay"].sum() >= 1
    if exp.cfg.curriculum.name == "accel":
        replayed, edited = metrics["curriculum/replay"], metrics["curriculum/edit"]
        # Sequential: a step is one group; the step after a replay step edits.
        np.testing.assert_array_equal(replayed + edited + metrics["curriculum/new"], 1.0)
        assert np.all(edited[1:][replayed[:-1] == 1.0] == 1.0), (replayed, edited)
    if exp.cfg.curriculum.name == "accel_parallel":
        # Once something was replayed, every step edits a third of the envs (7 // 3 = 2).
        edited = metrics["curriculum/edit"]
        np.testing.assert_allclose(edited[edited > 0], 2 / 7)
        assert (edited > 0).sum() >= 1


def test_plan_groups_label_each_env():
    """The parallel plan says per env which group it belongs to; a replay group that has no
    ready buffer yet holds fresh levels and is labelled new."""
    exp = make("accel_parallel", buffer={"capacity": 16, "min_fill_ratio": 1.0})
    assert exp.curriculum.groups == ("new", "replay", "edit")
    state = exp.init(jax.random.PRNGKey(0))
    _, _, plan = jax.jit(exp.curriculum.propose)(jax.random.PRNGKey(1), state.curriculum, None)
    np.testing.assert_array_equal(plan.group, np.zeros(7))  # nothing ready, nothing replayed
    np.testing.assert_array_equal(plan.train_mask, np.zeros(7, bool))  # robust: replay only
    ready = make("accel_parallel", buffer={"capacity": 16, "min_fill_ratio": 0.0})
    state = ready.init(jax.random.PRNGKey(0))
    step = jax.jit(ready.step)
    state, _ = step(state)  # fills the buffer with fresh levels
    cstate, _, plan = jax.jit(ready.curriculum.propose)(
        jax.random.PRNGKey(2), state.curriculum, None
    )
    np.testing.assert_array_equal(plan.group, [0, 0, 0, 1, 1, 0, 0])  # nothing replayed yet
    np.testing.assert_array_equal(plan.train_mask, plan.group == REPLAY)
    slots = np.asarray(cstate.env_slots)  # where each env's level came from: the curriculum's
    assert np.all(slots[3:5] >= 0) and np.all(slots[:3] == -1) and np.all(slots[5:] == -1)


@pytest.fixture(scope="module")
def robust():
    exp = make("robust_plr", buffer={"capacity": 16, "min_fill_ratio": 1.0})
    return exp, jax.jit(exp.step)


def test_robust_plr_no_gradient_on_new_levels(robust):
    exp, step = robust
    state = exp.init(jax.random.PRNGKey(3))
    new_state, metrics = step(state)
    assert float(metrics["curriculum/new"]) == 1.0
    for a, b in zip(
        jax.tree.leaves(state.student), jax.tree.leaves(new_state.student), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    assert int(new_state.curriculum.buffer.size) > 0


def test_plr_trains_on_new_levels():
    exp = make("plr", buffer={"capacity": 16, "min_fill_ratio": 1.0})
    state = exp.init(jax.random.PRNGKey(3))
    new_state, metrics = jax.jit(exp.step)(state)
    assert float(metrics["curriculum/new"]) == 1.0
    before = jax.tree.leaves(state.student.params)
    after = jax.tree.leaves(new_state.student.params)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


def test_accel_step_after_replay_edits_the_replayed_levels():
    exp = make("accel", num_edits=1, buffer={"capacity": 16, "min_fill_ratio": 0.0})
    state = exp.init(jax.random.PRNGKey(5))
    step = jax.jit(exp.step)
    for _ in range(8):
        prev = state
        state, metrics = step(state)
        if float(metrics["curriculum/edit"]) == 1.0:
            break
    assert float(metrics["curriculum/edit"]) == 1.0
    assert np.asarray(prev.curriculum.last_idx).min() >= 0
    assert float(metrics["buffer/num_edits"]) > 0


def test_accel_edits_every_level_of_the_batch():
    exp = make("accel", num_edits=1)
    parents = jax.vmap(exp.deps.generator)(jax.random.split(jax.random.PRNGKey(0), 64))
    edited = exp.curriculum.parts.edit(jax.random.PRNGKey(1), parents)
    changed = np.asarray(edited.goal) != np.asarray(parents.goal)
    # move_goal keeps the goal with probability 1/7 per level; one shared key or an edit of
    # one level only would change far fewer, or all by the same offset.
    assert changed.sum() >= 40, changed.sum()
    offsets = (np.asarray(edited.goal) - np.asarray(parents.start)) % 8
    assert len(set(offsets.tolist())) > 3


@pytest.mark.parametrize(("resample", "fresh_goals"), [("episode", True), ("rollout", False)])
def test_dr_resamples_a_level_at_every_episode_end(resample, fresh_goals):
    """The papers' DR resets a finished episode to a new level; per-rollout DR replays."""
    exp = make("dr", resample=resample)
    state = exp.init(jax.random.PRNGKey(0))
    levels = exp.deps.generator  # the toy corridor's uniform generator
    cur = exp.curriculum
    assert isinstance(cur, ResetsEpisodes) == (resample == "episode")
    start = jax.vmap(levels)(jax.random.split(jax.random.PRNGKey(1), 7))
    restart = restarts(exp.curriculum, state.curriculum, start, full_plan(7))
    rollout = jax.jit(exp.rollout, static_argnames="next_levels")(
        jax.random.PRNGKey(2), state.student.params, start, next_levels=restart
    )
    goals = np.asarray(rollout.obs)[..., 8:].argmax(-1)  # one-hot goal cell, (T, N)
    dones = np.asarray(rollout.dones)
    assert dones[:-1].sum() >= 7  # episodes end inside the rollout (12-step horizon, T=16)
    changed = goals[1:] != goals[:-1]
    # A goal changes only right after an episode end, and (for the papers' DR) usually does.
    assert not changed[~dones[:-1]].any()
    if fresh_goals:
        assert changed[dones[:-1]].mean() > 0.5
    else:
        assert not changed.any()
