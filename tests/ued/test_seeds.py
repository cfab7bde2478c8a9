"""``run.num_seeds``: several seeds in one program through the driver, evaluate and plot;
what a seed shares with the others (the schedule) and what it equals exactly."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scripts import evaluate as evaluate_script
from scripts import plot as plot_script
from tests.toy_family import REPLAY_CURRICULUM, toy_config, with_curriculum
from ued.config import config as config_lib
from ued.core import ppo
from ued.host.checkpoint import IncompatibleCheckpointError, load_trained
from ued.host.train import train
from ued.step import parallel
from ued.step.experiment import build

SEEDS, FIRST_SEED = 3, 5
UPDATES, CHUNK = 6, 3


def config(run_dir, **run):
    return toy_config(
        ppo={"epochs": 2},
        eval={"interval": CHUNK, "episodes": 2},
        run={
            "seed": FIRST_SEED,
            "num_seeds": SEEDS,
            "dir": str(run_dir),
            "total_env_steps": 4 * 8 * UPDATES,
            "chunk_updates": CHUNK,
            "checkpoint_every": CHUNK,
            **run,
        },
    )


def rows(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


@pytest.fixture(scope="module")
def seeded_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("seeds") / "run"
    return run_dir, train(config(run_dir), verbose=False)


def test_each_chunk_logs_one_row_per_seed(seeded_run):
    run_dir, result = seeded_run
    logged = rows(run_dir)
    assert [(r["updates"], r["seed"]) for r in logged] == [
        (u, s) for u in (CHUNK, UPDATES) for s in range(FIRST_SEED, FIRST_SEED + SEEDS)
    ]
    assert all("eval/solve_rate" in r and "loss/policy" in r for r in logged)
    returns = [r["mean_return"] for r in logged if r["updates"] == UPDATES]
    assert len(set(returns)) == SEEDS, "seeds must train on different data"
    final = result["final"]
    assert final["seeds"] == SEEDS and final["updates"] == UPDATES
    assert final["mean_return"] == pytest.approx(np.mean(returns))
    assert [r["seed"] for r in result["per_seed"]] == list(range(FIRST_SEED, FIRST_SEED + SEEDS))
    summary = json.loads((run_dir / "summary.json").read_text())
    assert len(summary["per_seed"]) == SEEDS
    assert result["eval"]["seeds"] == SEEDS
    for seed in range(FIRST_SEED, FIRST_SEED + SEEDS):
        assert list((run_dir / "gallery" / f"seed{seed}").glob("*.png"))


def test_a_seed_is_the_single_seed_run_with_that_seed(seeded_run, tmp_path):
    run_dir, result = seeded_run
    # run.seed_mode=auto runs the seeds one after another on a CPU, and says so.
    assert result["seed_mode"] == "sequential"
    assert json.loads((run_dir / "summary.json").read_text())["seed_mode"] == "sequential"
    middle = FIRST_SEED + 1
    single_dir = tmp_path / "single"
    single = train(
        config(single_dir, seed=middle, num_seeds=1, schedule_seed=FIRST_SEED), verbose=False
    )
    ours = [r for r in rows(run_dir) if r["seed"] == middle]
    theirs = rows(single_dir)
    assert "seed" not in theirs[0]
    assert len(ours) == len(theirs) == 2
    for a, b in zip(ours, theirs, strict=True):
        timings = {"sps", "checkpoint_seconds"}  # the latter only on the first seed's row
        assert set(a) - {"seed"} - timings == set(b) - timings
        for key in set(b) - timings:  # bit for bit, evaluation included
            assert a[key] == b[key] or (np.isnan(a[key]) and np.isnan(b[key])), key
    assert single["final"]["updates"] == UPDATES


def test_checkpoint_keeps_the_seed_axis_and_refuses_another_count(seeded_run):
    run_dir, result = seeded_run
    exp, state, snapshot = load_trained(run_dir)
    assert snapshot.step == UPDATES and exp.cfg.run.num_seeds == SEEDS
    for leaf in jax.tree.leaves(state):
        assert np.shape(leaf)[:1] == (SEEDS,)
    trained = jax.tree.leaves(result["state"].student.params)
    for saved, live in zip(jax.tree.leaves(state.student.params), trained, strict=True):
        np.testing.assert_array_equal(np.asarray(saved), np.asarray(live))
    with pytest.raises(IncompatibleCheckpointError, match="run.num_seeds"):
        train(config(run_dir, num_seeds=2, resume=True), verbose=False)


def test_evaluate_script_reports_each_seed(seeded_run, tmp_path):
    run_dir, _ = seeded_run
    out = tmp_path / "eval.json"
    assert evaluate_script.main([str(run_dir), "--episodes", "2", "-o", str(out)]) == 0
    report = json.loads(out.read_text())
    named = report["sets"]["named"]
    assert report["num_seeds"] == named["num_seeds"] == SEEDS
    assert len(named["seeds"]) == SEEDS
    mean = np.mean([s["solve_rate"] for s in named["seeds"]])
    assert named["summary"]["solve_rate"] == pytest.approx(mean)
    rates = [s["solve_rate"] for s in named["seeds"]]
    assert named["summary_std"]["solve_rate"] == pytest.approx(np.std(rates, ddof=1))


def test_plot_counts_a_multi_seed_run_as_its_seeds(seeded_run):
    run_dir, _ = seeded_run
    config_dict, logged = plot_script.read_run(run_dir)
    split = plot_script.split_seeds(config_dict, logged)
    assert len(split) == SEEDS
    seeds = range(FIRST_SEED, FIRST_SEED + SEEDS)
    assert [{r["seed"] for r in part} for _, part in split] == [{s} for s in seeds]
    curves = [plot_script.series(part, "mean_return") for _, part in split]
    x, mean, band = plot_script.aggregate(curves)
    np.testing.assert_allclose(mean, np.mean([c[1] for c in curves], axis=0))
    assert band is not None
    half = 4.303 * np.std([c[1] for c in curves], axis=0, ddof=1) / np.sqrt(SEEDS)  # t, 2 dof
    np.testing.assert_allclose(band[1] - mean, half, rtol=1e-6)


def test_a_resumed_multi_seed_run_continues_exactly(seeded_run, tmp_path):
    run_dir, _ = seeded_run
    half = tmp_path / "half"
    train(config(half, total_env_steps=4 * 8 * CHUNK), verbose=False)
    resumed = train(config(half, resume=True), verbose=False)
    assert resumed["resumed_from"] == CHUNK
    assert [(r["updates"], r["seed"]) for r in rows(half)] == [
        (r["updates"], r["seed"]) for r in rows(run_dir)
    ]
    for a, b in zip(rows(half), rows(run_dir), strict=True):
        for key in ("mean_return", "loss/policy", "loss/value", "eval/solve_rate"):
            assert a[key] == b[key], (key, a["updates"], a["seed"])


# --- the schedule: what seeds share, and what a seed equals -----------------------------------

ACCEL = with_curriculum(
    toy_config(env={"options": {"max_length": 8}}, ppo={"num_envs": 8, "epochs": 2},
               curriculum=REPLAY_CURRICULUM),
    "accel",
)  # fmt: skip
CHUNKS = (4, 4, 2)  # active updates per chunk of a program compiled for 4
# Per update, per seed: which levels, which gradient steps, how many env steps.
DECISIONS = ("curriculum/new", "curriculum/replay", "curriculum/edit", "trained_envs")


def run_seeds(cfg, starts):
    """For each key (set) of ``starts``, the chunks of ``CHUNKS`` from it, in one compiled
    program: host copies of the state and metrics (concatenated over chunks: leaves (S, U)
    or (U,)), and the number of PPO updates that ran (a callback inside the update)."""
    calls = []

    def counted(*args, **kwargs):
        jax.debug.callback(lambda: calls.append(1))
        return original(*args, **kwargs)

    original = ppo.update
    ppo.update = counted
    try:
        runner = parallel.make_runner(build(cfg), cfg)
        # One init trace for every start: states of one treedef, for one compiled program.
        init = jax.jit(runner.exp.init, out_shardings=runner.state_sharding())
        compiled = None
        results = []
        for keys in starts:
            state = runner.init(keys) if runner.seeded else init(keys)
            compiled = compiled or runner.compile(state, CHUNKS[0])
            before, out = len(calls), []
            for active in CHUNKS:
                state, metrics = compiled(state, jnp.int32(active))
                out.append(jax.tree.map(lambda m, a=active: np.asarray(m)[..., :a], metrics))
            jax.effects_barrier()
            metrics = {k: np.concatenate([m[k] for m in out], axis=-1) for k in out[0]}
            results.append((jax.device_get(state), metrics, len(calls) - before))
    finally:
        ppo.update = original
    return results


@pytest.fixture(scope="module")
def schedule_runs():
    """ACCEL on the toy: 3 seeds vmapped, the same 3 seeds one after another, and each seed
    alone (run.seed = FIRST_SEED + i, run.schedule_seed = FIRST_SEED); each a tuple
    ``(state, metrics, PPO updates run)``."""

    def cfg(**run):
        return config_lib.replace(ACCEL, run={"seed": FIRST_SEED, "devices": 1, **run})

    keys = parallel.seed_keys(FIRST_SEED, SEEDS)
    (vmapped,) = run_seeds(cfg(num_seeds=SEEDS, seed_mode="vmap"), [keys])
    (sequential,) = run_seeds(cfg(num_seeds=SEEDS, seed_mode="sequential"), [keys])
    single = run_seeds(cfg(num_seeds=1), [keys[i] for i in range(SEEDS)])
    return vmapped, sequential, single


def take(tree, i):
    return jax.tree.map(lambda x: np.asarray(x)[i], tree)


def assert_same(a, b, exact: bool):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        if exact or not np.issubdtype(x.dtype, np.floating):
            np.testing.assert_array_equal(x, y)
        else:
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_run_seed_mode_is_resolved_and_said():
    assert parallel.resolve_seed_mode("auto", 3, "cpu")[0] == "sequential"
    assert parallel.resolve_seed_mode("auto", 3, "gpu")[0] == "vmap"
    assert parallel.resolve_seed_mode("auto", 3, "tpu")[0] == "vmap"
    mode, why = parallel.resolve_seed_mode("vmap", 3, "cpu")
    assert (mode, why) == ("vmap", "run.seed_mode=vmap")
    cfg = config_lib.replace(ACCEL, run={"num_seeds": 3, "seed_mode": "sequential"})
    runner = parallel.make_runner(build(cfg), cfg)
    assert runner.seed_mode == "sequential" and dict(runner.mesh.shape) == {"seed": 1, "env": 1}
    assert runner.describe_seeds() == "3 seeds, sequential (run.seed_mode=sequential)"
    with pytest.raises(config_lib.ConfigError, match="run.seed_mode"):
        config_lib.replace(ACCEL, run={"seed_mode": "parallel"})


def test_sequential_seeds_equal_single_seed_runs_bit_for_bit(schedule_runs):
    _, (state, metrics, _), single = schedule_runs
    for i, (state_i, metrics_i, _) in enumerate(single):
        assert_same(take(state, i), state_i, exact=True)
        assert set(metrics) == set(metrics_i)
        for key in metrics:
            np.testing.assert_array_equal(metrics[key][i], metrics_i[key], err_msg=key)


def test_vmapped_seeds_take_the_single_seed_runs_decisions(schedule_runs):
    (state, metrics, _), _, single = schedule_runs
    for i, (state_i, metrics_i, _) in enumerate(single):
        for key in DECISIONS + tuple(k for k in metrics if k.startswith("env_steps/")):
            np.testing.assert_array_equal(metrics[key][i], metrics_i[key], err_msg=key)
        # Integer leaves exactly (the buffer's levels, slots, clock, ACCEL's edit flag); XLA
        # sums the batched PPO update in another order, so floats agree to rounding.
        assert_same(take(state, i), state_i, exact=False)
        for key in ("mean_return", "loss/policy", "loss/value"):
            np.testing.assert_allclose(metrics[key][i], metrics_i[key], rtol=1e-4, atol=1e-6)


def test_seeds_share_the_replay_draws(schedule_runs):
    (_, metrics, _), _, _ = schedule_runs
    replay, edit = metrics["curriculum/replay"], metrics["curriculum/edit"]
    # Every kind of step happens (the test covers every branch) ...
    assert replay.any() and edit.any() and metrics["curriculum/new"].any()
    # ... on the same updates for every seed: the coin is the schedule's.
    for i in range(1, SEEDS):
        np.testing.assert_array_equal(replay[i], replay[0])
        np.testing.assert_array_equal(edit[i], edit[0])


def test_vmapped_branches_run_only_when_a_seed_takes_them(schedule_runs):
    vmapped, sequential, single = schedule_runs
    trained = vmapped[1]["trained_envs"] > 0  # (S, U)
    assert (~trained.any(0)).any(), "some updates must train no seed"
    # The vmapped PPO update ran once per update on which some seed trained, not on every
    # update.
    assert vmapped[2] == int(trained.any(0).sum())
    # One after another, or alone: once per seed that trained.
    assert sequential[2] == int(trained.sum())
    assert sum(run[2] for run in single) == int(trained.sum())


def test_a_single_seed_run_reads_its_own_seed_as_the_schedule_seed():
    cfg = config_lib.replace(ACCEL, run={"seed": 11})
    assert build(cfg).schedule_seed == 11
    assert build(config_lib.replace(cfg, run={"schedule_seed": 4})).schedule_seed == 4
