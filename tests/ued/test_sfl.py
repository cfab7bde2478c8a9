"""Sampling For Learnability: scores, the top-K buffer, the batch mix and the jitted refresh
(tiny mazes)."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from tests.counting import count_runs
from tests.ued.test_scoring import make_rollout
from ued.api import load_config
from ued.config.config import ConfigError
from ued.core import scoring
from ued.curricula.sfl import SFL, top_k
from ued.host.train import train
from ued.step.experiment import build

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "maze_sfl.yaml"
TINY = [
    "env.options={max_size: 5, view_size: 3, max_steps: 8}",
    "env.generator_options={num_walls: 4}",
    "network.lstm_size=16",
    "network.head_size=8",
    "network.conv_channels=4",
    "ppo.num_envs=8",
    "ppo.num_steps=16",
    "ppo.epochs=1",
    "eval.levels=none",
    "run.total_env_steps=1000",
    "run.progress=false",
    "run.compile_cache=",
    "curriculum.options.num_samples=48",
    "curriculum.options.samples_per_batch=16",
    "curriculum.options.rollout_steps=24",
    "curriculum.options.buffer_size=6",
    "curriculum.options.buffer_fraction=0.375",
    "curriculum.options.refresh_every=2",
]
STEPS = 5


def make(*overrides):
    return build(load_config(EXPERIMENT, [*TINY, *overrides]))


# --- learnability and top-K ------------------------------------------------------------------


def test_learnability_is_highest_for_levels_solved_half_the_time():
    # 8 steps, each ends an episode; level i solves 2 i of its 8 episodes (p = 0 .. 1), and
    # level 5 finishes no episode at all.
    wins = np.arange(8)[:, None] < 2 * np.arange(6)[None, :]
    dones = np.ones((8, 6), bool)
    dones[:, 5] = False
    rollout = make_rollout(np.zeros((8, 6)), dones, successes=wins & dones)
    score = np.asarray(scoring.learnability(scoring.make_score_inputs(rollout)))
    np.testing.assert_allclose(score[:5], [0.0, 0.1875, 0.25, 0.1875, 0.0])
    assert score[5] == -np.inf
    top = np.asarray(top_k(score, 3))
    assert top[0] == 2 and set(top[1:]) == {1, 3}
    assert 5 not in np.asarray(top_k(score, 5))


def test_top_k_matches_a_sort():
    scores = np.array(jax.random.uniform(jax.random.key(0), (50,)))
    scores[[3, 9]] = -np.inf
    scores[4] = np.nan  # treated as no evidence
    top = np.asarray(top_k(scores, 10))
    expected = np.argsort(-np.where(np.isnan(scores), -np.inf, scores), kind="stable")[:10]
    np.testing.assert_array_equal(top, expected)


# --- the curriculum in the train step ---------------------------------------------------------


@pytest.fixture(scope="module")
def sfl_run():
    exp = make()
    state = exp.init(jax.random.PRNGKey(0))
    new_state, metrics = jax.jit(lambda s: exp.run_chunk(s, STEPS))(state)
    return exp, state, new_state, jax.device_get(metrics)


def test_sfl_runs_from_its_experiment_file(sfl_run):
    exp, before, state, metrics = sfl_run
    assert exp.cfg.curriculum.name == "sfl" and int(state.updates) == STEPS
    nan_ok = {"sfl/sampled_learnability"}  # NaN on steps without a refresh
    for key, value in metrics.items():
        assert value.shape == (STEPS,), key
        if key not in nan_ok:
            assert np.all(np.isfinite(value)), key
    # Refreshes on updates 0, 2, 4; their env steps are counted apart.
    np.testing.assert_array_equal(metrics["sfl/refresh"], [1, 0, 1, 0, 1])
    np.testing.assert_array_equal(metrics["curriculum/buffer"], [3 / 8] * 5)  # 0.375 of 8 envs
    np.testing.assert_array_equal(
        metrics["env_steps/curriculum_eval"], [48 * 24, 0, 48 * 24, 0, 48 * 24]
    )
    assert np.all(np.isfinite(metrics["sfl/sampled_learnability"][::2]))
    assert np.all(np.isnan(metrics["sfl/sampled_learnability"][1::2]))
    np.testing.assert_array_equal(metrics["sfl/buffer_envs"], 3)
    assert np.all(metrics["trained_envs"] == 8)
    assert any(
        not np.array_equal(a, b)
        for a, b in zip(
            jax.tree.leaves(before.student.params),
            jax.tree.leaves(state.student.params),
            strict=True,
        )
    )
    # The buffer is the top of a refresh: learnability sorted.
    learn = np.asarray(state.curriculum.learnability)
    assert np.all(np.diff(learn) <= 0)


def test_vmapped_seeds_refresh_every_l_updates_and_count_what_ran(tmp_path, monkeypatch):
    # The refresh reads the schedule's unbatched update count: with 2 vmapped seeds it still
    # runs on updates 0, 2, 4 only (once for both seeds), not on every update, and each
    # row's running totals count exactly the env steps that ran.
    calls = count_runs(monkeypatch, SFL, "refresh")
    per_update = 8 * 16  # ppo.num_envs x ppo.num_steps
    overrides = [
        f"run.total_env_steps={5 * per_update}",
        "run.chunk_updates=2",  # chunks of 2, 2, 1: the count crosses chunk boundaries
        "run.num_seeds=2",
        "run.seed_mode=vmap",
        f"run.dir={tmp_path}",
    ]
    result = train(load_config(EXPERIMENT, [*TINY, *overrides]), verbose=False)
    jax.effects_barrier()
    assert result["seed_mode"] == "vmap"
    assert len(calls) == 3
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [(r["updates"], r["seed"]) for r in rows] == [(u, s) for u in (2, 4, 5) for s in (0, 1)]
    for row in rows:
        updates = row["updates"]
        refreshes = (updates + 1) // 2  # on updates 0, 2, 4
        assert row["env_steps/student"] == updates * per_update
        assert row["env_steps/curriculum_eval"] == refreshes * 48 * 24
        assert row["env_steps/all"] == updates * per_update + refreshes * 48 * 24


@pytest.fixture(scope="module")
def refreshed(sfl_run):
    exp, _, state, _ = sfl_run
    cur = exp.curriculum

    def both(key, cstate, params):
        return cur.sample_and_score(key, params), cur.refresh(key, cstate, params)

    key = jax.random.PRNGKey(3)
    return jax.jit(both)(key, state.curriculum, state.student.params)


def test_refresh_keeps_the_top_k_by_learnability(sfl_run, refreshed):
    exp, _, _, _ = sfl_run
    (levels, learn, success), cstate = refreshed
    learn, success = np.asarray(learn), np.asarray(success)
    assert learn.shape == (48,)
    k = 6
    kept = np.asarray(cstate.learnability)
    np.testing.assert_array_equal(kept, np.sort(learn)[::-1][:k])
    # Every kept level is a sampled level with that score, and nothing left out beats it.
    top = np.asarray(top_k(learn, k))
    for leaf_all, leaf_kept in zip(
        jax.tree.leaves(levels), jax.tree.leaves(cstate.levels), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(leaf_all)[top], np.asarray(leaf_kept))
    rest = np.delete(learn, top)
    assert rest.max() <= kept.min()
    np.testing.assert_allclose(np.asarray(cstate.success_rate), success[top])
    np.testing.assert_allclose(kept, success[top] * (1 - success[top]), atol=1e-6)
    mean_walls = np.asarray(cstate.levels.wall_map).sum(axis=(1, 2)).mean()
    np.testing.assert_allclose(float(cstate.level_stats["num_walls"]), mean_walls, rtol=1e-6)


def test_batch_mixes_buffer_and_generated_levels_by_the_fraction(sfl_run, refreshed):
    exp, _, _, _ = sfl_run
    _, cstate = refreshed
    draws = 100
    compose = jax.jit(jax.vmap(exp.curriculum.compose, in_axes=(0, None)))
    levels, plan, slots = compose(jax.random.split(jax.random.key(1), draws), cstate)
    idx = np.asarray(slots)  # (draws, 8)
    # round(0.375 * 8) = 3 envs from the buffer, the first three; 5 fresh; all trained on.
    assert np.all(idx[:, :3] >= 0) and np.all(idx[:, 3:] == -1)
    assert (idx >= 0).mean() == 3 / 8
    assert np.all(np.asarray(plan.train_mask))
    # Uniform over the buffer: every slot is drawn.
    assert set(idx[:, :3].ravel().tolist()) == set(range(6))
    for leaf, buf in zip(jax.tree.leaves(levels), jax.tree.leaves(cstate.levels), strict=True):
        np.testing.assert_array_equal(np.asarray(leaf)[:, :3], np.asarray(buf)[idx[:, :3]])
    flat = jax.tree.map(lambda x: x.reshape((-1, *x.shape[2:])), levels)
    valid = jax.jit(jax.vmap(lambda level: exp.family.is_valid(exp.env, level)))
    assert np.all(np.asarray(valid(flat)))
    # Fresh levels differ from draw to draw.
    walls = np.asarray(levels.wall_map)[:, 3:]
    assert len({w.tobytes() for w in walls.reshape(-1, 25)}) > draws


@pytest.mark.parametrize(
    "override, match",
    [
        ("curriculum.options.bogus=1", r"curriculum\.options\.bogus.*allowed keys.*buffer_size"),
        ("curriculum.options.buffer_fraction=1.5", r"curriculum\.options\.buffer_fraction"),
        ("curriculum.options.buffer_size=49", r"curriculum\.options\.buffer_size"),
        ("curriculum.options.samples_per_batch=5", r"curriculum\.options\.samples_per_batch"),
        ("curriculum.options.refresh_every=0", r"curriculum\.options\.refresh_every"),
    ],
)
def test_bad_options_name_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        make(override)


def test_default_rollout_length_is_twice_the_horizon():
    exp = make("curriculum.options.rollout_steps=0")
    assert exp.curriculum.rollout_steps == 16
