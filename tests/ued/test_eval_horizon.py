"""The evaluation horizon: ``--max-steps`` / ``eval.max_steps`` set T whatever training used.

Known answer: a scripted agent that spins 24 quarter turns before each forward step needs
25 steps per cell, so 12 cells of corridor take exactly 300 steps. At T = 450 it solves the
corridor with return 1 - 0.9 * 300 / 450 = 0.4; at T = 250 it runs out of time.
"""

import importlib.util
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.maze.env import FORWARD, NUM_ACTIONS, TURN_LEFT
from ued.config import config as config_lib
from ued.config.config import ConfigError
from ued.config.eval_setup import eval_env
from ued.evaluation.evaluate import LevelEvaluator, NamedEvaluator
from ued.host.checkpoint import Checkpointer
from ued.step.experiment import build
from ued.step.parallel import init_shapes

ROOT = Path(__file__).resolve().parents[2]
CORRIDOR = ">...........G"  # 13 wide, one row: 12 forward moves
SPIN = 25  # steps per cell: 24 left turns (six full turns) then forward


class Spinner:
    """A fixed policy with the network's interface: forward on every SPIN-th step, else
    turn left. Its carry counts the steps taken."""

    continuous = False

    def initial_carry(self, batch):
        return jnp.zeros((batch,), jnp.int32)

    def apply(self, params, carry, obs, dones):
        carry = carry + 1
        action = jnp.where(carry % SPIN == 0, FORWARD, TURN_LEFT)
        logits = jnp.where(jax.nn.one_hot(action, NUM_ACTIONS) > 0, 0.0, -1e9)
        return carry, logits[None], jnp.zeros_like(carry, jnp.float32)[None]


def tiny_config(**eval_options):
    return config_lib.from_dict(
        {
            "env": {"options": {"max_size": 13, "max_steps": 250}},
            "ppo": {"num_envs": 4, "num_steps": 8, "epochs": 1},
            "network": {"lstm_size": 16, "head_size": 16, "conv_channels": 4},
            "eval": {"episodes": 2, **eval_options},
        }
    )


@pytest.fixture(scope="module")
def exp():
    return build(tiny_config())


def run_spinner(env, env_params, exp, loop_steps):
    level = exp.family.stack([exp.family.level_from_text(env, CORRIDOR)])
    evaluator = LevelEvaluator(env, env_params, Spinner(), 2, loop_steps, batch_levels=1)
    out = evaluator(jax.random.PRNGKey(0), None, level)
    return {k: float(v[0]) for k, v in out.items()}


def test_spinner_solves_at_450_and_fails_at_250(exp):
    env, params = eval_env(exp, max_steps=450)
    assert env.max_episode_steps(params) == 450 and exp.env.max_episode_steps(params) == 250
    long = run_spinner(env, params, exp, 450)
    assert long["solve_rate"] == 1.0 and long["mean_length"] == 300.0
    assert long["mean_return"] == pytest.approx(1 - 0.9 * 300 / 450)  # 0.4
    env, params = eval_env(exp, max_steps=250)
    short = run_spinner(env, params, exp, 250)
    assert short == {"solve_rate": 0.0, "mean_return": 0.0, "mean_length": 250.0}


def test_a_longer_loop_alone_cannot_lengthen_episodes(exp):
    # Why --max-steps above the training horizon changed nothing before: the horizon is the
    # env's static option (its done and reward read it); the loop only capped the steps.
    out = run_spinner(exp.env, exp.env_params, exp, 450)
    assert out["solve_rate"] == 0.0 and out["mean_length"] == 250.0


def test_eval_env_refuses_what_the_network_cannot_read(exp):
    assert eval_env(exp) == (exp.env, exp.env_params)
    bigger, _ = eval_env(exp, max_size=19)
    assert bigger.max_size == 19 and bigger.max_steps == 250
    full = build(config_lib.replace(exp.cfg, env={"options": {"fully_observed": True}}))
    with pytest.raises(ConfigError, match="observation's shape"):
        eval_env(full, max_size=19)


def test_eval_max_steps_and_levels_reach_the_driver():
    evaluator = NamedEvaluator(build(tiny_config(max_steps=450, levels="both")))
    assert evaluator._eval.max_steps == 450
    assert len(evaluator.names) == 12 + 8 and "StandardMaze3" in evaluator.names
    per_level = {"solve_rate": np.r_[np.zeros(12), np.ones(8)]}
    entries = evaluator.entries(per_level)
    assert entries["eval/set:standard/solve_rate"] == 1.0
    assert entries["eval/set:named/solve_rate"] == 0.0 and entries["eval/solve_rate"] == 0.4
    default = NamedEvaluator(build(tiny_config()))
    assert default._eval.max_steps == 250 and default.sets == {} and len(default.names) == 12


def load_evaluate_script():
    spec = importlib.util.spec_from_file_location("ued_eval", ROOT / "scripts" / "evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_evaluate_cli_standard_levels_at_450(exp, tmp_path):
    # Zero weights (a uniform policy) in the run's state layout: no need to run the init.
    state = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), init_shapes(exp))
    with Checkpointer(tmp_path / "run" / "checkpoints", background=False) as ckpt:
        ckpt.save(0, state, exp.cfg)
    blocked = tmp_path / "blocked.txt"
    blocked.write_text(">#G\n")  # never solvable: every episode runs to the horizon
    output = tmp_path / "eval.json"
    argv = [str(tmp_path / "run"), "--no-named", "--levels", "standard", "--levels"]
    argv += [str(blocked), "--max-steps", "450", "--episodes", "2", "-o", str(output)]
    assert load_evaluate_script().main(argv) == 0
    report = json.loads(output.read_text())
    assert report["max_steps"] == 450
    assert list(report["sets"]["standard"]["levels"]) == [
        "SixteenRooms", "SixteenRooms2", "Labyrinth", "LabyrinthFlipped", "Labyrinth2",
        "StandardMaze", "StandardMaze2", "StandardMaze3",
    ]  # fmt: skip
    assert report["sets"]["file:blocked.txt"]["levels"]["blocked/0"]["mean_length"] == 450.0


def test_a_named_set_brings_its_own_size_and_the_papers_horizon(tmp_path):
    # A new user's command: the default 9x9 run (horizon 100), `--levels standard`. Before,
    # it was refused (13x13 levels), and with --max-size 13 it kept the 100-step horizon.
    small = build(
        config_lib.from_dict(
            {
                "env": {"options": {"max_size": 9, "max_steps": 100}},
                "ppo": {"num_envs": 4, "num_steps": 8, "epochs": 1},
                "network": {"lstm_size": 16, "head_size": 16, "conv_channels": 4},
            }
        )
    )
    state = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), init_shapes(small))
    with Checkpointer(tmp_path / "run" / "checkpoints", background=False) as ckpt:
        ckpt.save(0, state, small.cfg)
    script = load_evaluate_script()
    output = tmp_path / "eval.json"
    argv = [str(tmp_path / "run"), "--levels", "standard", "--episodes", "1", "-o", str(output)]
    assert script.main(argv) == 0
    report = json.loads(output.read_text())
    standard, named = report["sets"]["standard"], report["sets"]["named"]
    assert (standard["max_steps"], standard["max_size"]) == (250, 13)
    assert standard["num_levels"] == 8
    assert (named["max_steps"], named["max_size"]) == (100, 9)  # the run's own env
    assert script.main([*argv, "--max-steps", "450", "--no-named"]) == 0
    assert json.loads(output.read_text())["sets"]["standard"]["max_steps"] == 450
    assert script.main([*argv, "--max-size", "9"]) == 2  # explicit, and too small: refused


def test_set_env_options_and_annotated_horizons(exp):
    from ued.config.eval_setup import (
        ANNOTATED,
        level_horizons,
        set_env_options,
        set_file,
        split_by_horizon,
    )

    assert set_env_options(exp, "standard") == {"max_steps": 250}  # 13x13 run: size kept
    assert set_env_options(exp, "standard", max_steps=450) == {"max_steps": 450}
    assert set_env_options(exp, "standard_large") == {"max_size": 99, "max_steps": ANNOTATED}
    assert set_env_options(exp, "my_levels.txt") == {}
    horizons = level_horizons(set_file(exp.family, "standard_large").read_text())
    assert horizons == [484, 100, 450, 882, 882, 5202, 20402]  # dcd's, per level
    groups = split_by_horizon({"max_size": 99, "max_steps": ANNOTATED}, horizons, "x")
    assert [(o["max_steps"], idx) for o, idx in groups] == [
        (484, [0]), (100, [1]), (450, [2]), (882, [3, 4]), (5202, [5]), (20402, [6])
    ]  # fmt: skip
    with pytest.raises(ConfigError, match="no '; horizon:' annotation"):
        split_by_horizon({"max_steps": ANNOTATED}, [100, None], "x")
    assert split_by_horizon({"max_steps": 250}, [1, 2], "x") == [({"max_steps": 250}, [0, 1])]
