"""``run.num_seeds``: several seeds in one program through the driver, evaluate and plot."""

import json

import jax
import numpy as np
import pytest

from scripts import evaluate as evaluate_script
from scripts import plot as plot_script
from tests.toy_family import toy_config
from ued.checkpoint import IncompatibleCheckpointError, load_trained
from ued.train import train

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
    run_dir, _ = seeded_run
    middle = FIRST_SEED + 1
    single = train(config(tmp_path / "single", seed=middle, num_seeds=1), verbose=False)
    ours = [r for r in rows(run_dir) if r["seed"] == middle]
    theirs = rows(tmp_path / "single")
    assert "seed" not in theirs[0]
    assert len(ours) == len(theirs) == 2
    for a, b in zip(ours, theirs, strict=True):
        for key in ("mean_return", "loss/policy", "loss/value", "eval/solve_rate"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-6), key
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
