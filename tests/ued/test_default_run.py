"""The default run's evidence: evaluation before training, the before -> after table and the
curves, the held-out 9x9 set it evaluates on, and the level-file tool that wrote that set."""

import json
from pathlib import Path

import jax
import numpy as np
import pytest

from envs.core import families
from envs.maze import Maze
from envs.maze.standard import catalogue
from tests.scripts_loader import load_script
from tests.toy_family import toy_config
from ued.api import load_config
from ued.evaluation.evaluate import before_after, sparkline
from ued.host.train import train

ROOT = Path(__file__).resolve().parents[2]


def test_sparkline_known_answers():
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == "▁▂▃▄▅▆▇█"
    assert sparkline([0.5, 0.5, 0.5]) == "▁▁▁"  # a flat curve, no division by zero
    assert sparkline([0.0, float("nan"), 1.0]) == "▁ █"
    # picks 0, 11, ..., 99; level round(v * 7 / 99)
    assert sparkline(list(range(100)), width=10) == "▁▂▃▃▄▅▆▆▇█"


def test_before_after_table():
    def result(solve, ret):
        return {"summary": {"solve_rate": solve, "mean_return": ret}}

    table = before_after({"s": result(0.15, 0.084)}, {"s": result(0.75, 0.634), "x": result(1, 1)})
    lines = table.splitlines()
    assert len(lines) == 2  # a set evaluated only after training has nothing to compare
    assert lines[1].split() == ["s", "0.15", "->", "0.75", "0.084", "->", "0.634"]


def test_eval_at_start_logs_update_zero_and_reports(tmp_path, capsys):
    cfg = toy_config(
        ppo={"epochs": 1},
        eval={"at_start": True, "interval": 2, "episodes": 2},
        run={"total_env_steps": 4 * 4 * 8, "chunk_updates": 2, "dir": str(tmp_path / "run")},
    )
    train(cfg)
    out = capsys.readouterr().out
    rows = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    evaluated = [r["updates"] for r in rows if "eval/solve_rate" in r]
    assert evaluated == [0, 2, 4]  # before training, then every eval.interval updates
    assert rows[0]["env_steps"] == 0 and "sps" not in rows[0]
    assert "[ued] before -> after training" in out
    assert "[ued] eval solve rate" in out and "[ued] training return" in out
    before = rows[0]["eval/solve_rate"]
    assert f"{before:.2f} -> {rows[-1]['eval/solve_rate']:.2f}" in out


def test_random_9x9_set_is_held_out_solvable_9x9():
    entries = catalogue("random_9x9")
    assert len(entries) == 50
    env = Maze(max_size=9)
    maze = families()["maze"]
    levels = maze.stack([maze.level_from_text(env, e.text) for e in entries])
    metrics = jax.vmap(lambda level: maze.level_metrics(env, level))(levels)
    metrics = {k: np.asarray(v) for k, v in metrics.items()}
    assert all(e.size == (9, 9) for e in entries)
    assert metrics["solvable"].all()
    np.testing.assert_array_equal(
        metrics["shortest_path"], [float(e.meta["shortest_path"]) for e in entries]
    )
    np.testing.assert_array_equal(metrics["num_walls"], 12)
    assert len({e.text for e in entries}) == 50


def test_quickstart_resolves_to_the_small_maze_with_held_out_levels():
    cfg = load_config(ROOT / "experiments" / "quickstart.yaml")
    assert cfg.env.options["max_size"] == 9 and cfg.env.generator_options == {"num_walls": 12}
    assert cfg.eval.levels == "random_9x9" and cfg.eval.at_start
    assert cfg.curriculum.name == "accel"


def test_make_levels_writes_a_file_that_reads_back(tmp_path, capsys):
    make_levels = load_script("make_levels")
    out = tmp_path / "held_out.txt"
    argv = ["maze", "random_walls", "6", str(out), "--seed", "3", "--env", "max_size=7"]
    assert make_levels.main([*argv, "--gen", "num_walls=5", "--name", "h/"]) == 0
    maze, env = families()["maze"], Maze(max_size=7)
    levels = maze.read_levels(env, out)  # the plain reader skips the ';' lines
    assert levels.wall_map.shape == (6, 7, 7)
    assert (levels.wall_map.sum(axis=(1, 2)) == 5).all()
    text = out.read_text()
    assert text.count("; name: h/") == 6 and "; solvable: 1" in text
    assert "; solvable: 0" not in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["nope", "random_walls", "3"], "family 'nope'"),
        (["maze", "nope", "3"], "generator 'nope'"),
        (["maze", "random_walls", "0"], "N=0"),
        (["maze", "random_walls", "3", "--gen", "num_walls=999"], "num_walls"),
        (["maze", "random_walls", "3", "--env", "size"], "--env 'size': expected KEY=VALUE"),
    ],
)
def test_make_levels_bad_arguments(argv, message, tmp_path, capsys):
    make_levels = load_script("make_levels")
    argv = [*argv[:3], str(tmp_path / "x.txt"), *argv[3:]]
    assert make_levels.main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.txt").exists()
