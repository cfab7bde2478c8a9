"""The program curriculum's episodes inside the train step: a finished episode starts a new
level of its env's program (``resample: episode``), or replays the rollout's level
(``rollout``, the earlier behaviour); each episode's success is credited to its program; the
same with seeds vmapped or one after another. Known answers on the toy corridor with a
program space whose levels differ by key (the start is the key's, the goal ``distance``
cells right of it), read back from the observations (one-hot agent cell, one-hot goal)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.programs import Dim, ProgramSpace
from tests.toy_family import CorridorLevel, describe_corridor, toy_config
from ued.curricula.base import restarts
from ued.curricula.programs import GROUNDING, make_programs
from ued.step import parallel
from ued.step.experiment import build

LENGTH, ENVS, STEPS = 6, 8, 48


def free_start(env) -> ProgramSpace:
    """Programs ``(distance,)``: the start is drawn from the key, the goal lies ``distance``
    cells right of it (wrapping), so one program has ``max_length`` levels."""
    n = env.max_length

    def generate(key, program):
        start = jax.random.randint(key, (), 0, n, jnp.int32)
        goal = (start + program[0].astype(jnp.int32)) % n
        return CorridorLevel(start, goal.astype(jnp.int32), jnp.int32(n))

    return ProgramSpace(
        dims=(Dim("distance", "discrete", 1, n - 1),),
        generate=generate,
        describe=describe_corridor,
        descriptor_names=("distance", "start"),
        descriptor_low=(1.0, 0.0),
        descriptor_high=(float(n), float(n)),
    )


def experiment(num_seeds: int = 1, seed_mode: str = "vmap", **options):
    """The toy run with the program curriculum over ``free_start`` (3 archive + 3 new
    programs for 8 envs: envs 0/6 and 1/7 share a program)."""
    base = {"archive_programs": 3, "new_programs": 3, "capacity": 16,
            "plateau_signal": "fitness", "score": {}, "learnability": 1.0}  # fmt: skip
    cfg = toy_config(
        curriculum={"name": "programs", "options": {**base, **options}},
        ppo={"num_envs": ENVS, "num_steps": STEPS, "epochs": 1},
        run={"num_seeds": num_seeds, "seed_mode": seed_mode, "devices": 1},
        eval={"levels": "none"},
    )
    exp = build(cfg)
    family = dataclasses.replace(exp.family, programs=free_start)
    deps = dataclasses.replace(exp.deps, family=family)
    return dataclasses.replace(exp, family=family, deps=deps,
                               curriculum=make_programs(exp.curriculum.options, deps))  # fmt: skip


def collect(exp, state):
    """What ``exp.step`` rolls out on ``state``, assembled by hand with the step's keys:
    ``(cstate, levels, plan, rollout)``."""
    _, k_propose, k_roll, _, _ = jax.random.split(state.key, 5)
    cstate, levels, plan = exp.curriculum.propose(k_propose, state.curriculum, state.student)
    restart = restarts(exp.curriculum, cstate, levels, plan)
    rollout = exp.rollout(k_roll, state.student.params, levels, next_levels=restart)
    return cstate, levels, plan, rollout


def episodes(rollout):
    """Per env, its episodes as ``(start, goal, finished, solved)``, read from the
    observations: an episode's first observation shows the agent on its level's start."""
    obs, dones = np.asarray(rollout.obs), np.asarray(rollout.dones)
    wins = np.asarray(rollout.successes)
    pos, goal = obs[..., :LENGTH].argmax(-1), obs[..., LENGTH:].argmax(-1)  # (T, N)
    out = []
    for i in range(obs.shape[1]):
        firsts = [0, *(np.flatnonzero(dones[:-1, i]) + 1)]
        ends = [*(f - 1 for f in firsts[1:]), len(dones) - 1]
        out.append([(pos[f, i], goal[f, i], dones[e, i], wins[e, i])
                    for f, e in zip(firsts, ends, strict=True)])  # fmt: skip
    return out


def collected(**options):
    exp = experiment(**options)
    state = exp.init(jax.random.key(0))
    return exp, state, jax.device_get(jax.jit(lambda s: collect(exp, s))(state))


@pytest.fixture(scope="module")
def per_episode():
    return collected()


def test_each_episode_is_a_new_level_of_its_envs_program(per_episode):
    exp, _, (cstate, levels, plan, rollout) = per_episode
    distance = np.asarray(cstate.batch_programs)[exp.curriculum.owner(), 0].astype(int)
    varied = 0
    for i, eps in enumerate(episodes(rollout)):
        assert len(eps) >= 3, (i, len(eps))  # several episodes per env (12-step horizon)
        # The first episode is the proposed level; every episode is one of the program's.
        assert (eps[0][0], eps[0][1]) == (levels.start[i], levels.goal[i])
        assert all((g - s) % LENGTH == distance[i] for s, g, _, _ in eps), (i, eps)
        varied += len({s for s, _, _, _ in eps}) > 1
    assert varied == ENVS  # the key picks the start: every env saw several levels


def test_rollout_option_replays_one_level_per_env_as_before():
    exp, state, (_, levels, plan, rollout) = collected(resample="rollout")
    for i, eps in enumerate(episodes(rollout)):
        assert len(eps) >= 3
        assert {(s, g) for s, g, _, _ in eps} == {(int(levels.start[i]), int(levels.goal[i]))}
    # No restart function at all: the rollout is the earlier one, key for key.
    assert restarts(exp.curriculum, state.curriculum, levels, plan) is None


@pytest.mark.slow
@pytest.mark.parametrize("resample", ["episode", "rollout"])
def test_the_step_rolls_out_what_the_option_says(resample):
    exp, state, (_, _, _, rollout) = collected(resample=resample)
    _, metrics = jax.jit(exp.step)(state)
    mine = exp._episode_metrics(rollout)
    assert metrics["episodes"] == float(np.asarray(rollout.dones).sum())
    for key in ("episodes", "solve_rate", "mean_return"):
        np.testing.assert_allclose(metrics[key], mine[key], rtol=1e-6, err_msg=key)
    # ... and not the other option's episodes.
    other = "rollout" if resample == "episode" else "episode"
    _, _, (_, _, _, theirs) = collected(resample=other)
    assert not np.array_equal(np.asarray(theirs.obs), np.asarray(rollout.obs))


def test_program_statistics_pool_every_episode_of_the_program(per_episode):
    exp, _, (cstate, levels, plan, rollout) = per_episode
    cur, owner = exp.curriculum, exp.curriculum.owner()
    # By hand: each finished episode counts for the program that generated its level.
    wins, eps = np.zeros(cur.num_programs), np.zeros(cur.num_programs)
    for i, env_eps in enumerate(episodes(rollout)):
        for _, _, finished, solved in env_eps:
            eps[owner[i]] += finished
            wins[owner[i]] += solved
    assert 0 < wins.sum() < eps.sum()  # some won, some lost: p (1 - p) is informative
    p = wins / eps
    want = p * (1 - p)  # learnability 1, no other score
    mask = (owner[:, None] == np.arange(cur.num_programs)).astype(np.float32)
    value, ok = jax.jit(cur.level_values)(rollout, jnp.asarray(mask))
    np.testing.assert_allclose(np.asarray(value), want[owner], rtol=1e-6)
    assert np.asarray(ok).all()
    # The update's per-group means are those of the same values.
    _, metrics = jax.jit(lambda *a: cur.update(*a))(
        jax.random.key(1), cstate, plan, levels, rollout, None
    )
    group = np.asarray(plan.group)
    assert not (group == GROUNDING).any()
    for g, name in enumerate(("archive", "fresh", "mutated")):
        hand = want[owner][group == g].mean() if (group == g).any() else np.nan
        np.testing.assert_allclose(metrics[f"programs/lp_{name}"], hand, rtol=1e-6)


def seed_runs(seed_mode: str, num_seeds: int, keys, updates: int = 2):
    exp = experiment(num_seeds=num_seeds, seed_mode=seed_mode)
    runner = parallel.make_runner(exp, exp.cfg)
    state = runner.init(keys)
    run = jax.jit(lambda s: runner.chunk(s, updates))
    return jax.device_get(run(state))


@pytest.mark.slow
def test_seeds_vmapped_or_one_after_another_draw_the_single_seed_levels():
    keys = parallel.seed_keys(3, 2)
    vmapped = seed_runs("vmap", 2, keys)
    sequential = seed_runs("sequential", 2, keys)
    for i in range(2):
        single = seed_runs("vmap", 1, keys[i])
        for key, value in single[1].items():
            np.testing.assert_array_equal(sequential[1][key][i], value, err_msg=key)
        # Episode counts are decisions (which levels, when they end) and agree exactly.
        np.testing.assert_array_equal(vmapped[1]["episodes"][i], single[1]["episodes"])
        np.testing.assert_allclose(vmapped[1]["solve_rate"][i], single[1]["solve_rate"],
                                   rtol=1e-5)  # fmt: skip
        archive = jax.tree.map(lambda x, i=i: x[i], vmapped[0].curriculum.archive)
        np.testing.assert_array_equal(archive.programs, single[0].curriculum.archive.programs)
