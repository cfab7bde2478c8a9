"""``ued.make_train``: the README's sweep over replay probabilities, run as written (on the
toy family), equals each of its runs alone; ``ued.load_config`` is ``ued.config.config.load`` with
the registered curricula."""

from __future__ import annotations

import re
from pathlib import Path

import jax
import numpy as np
import pytest

import ued
from tests.toy_family import REPLAY_CURRICULUM, toy_config, with_curriculum
from ued.config import config as config_lib
from ued.curricula import options_of

ROOT = Path(__file__).resolve().parents[2]
HEADING = "### Sweeps in one program: `ued.make_train`"
# The block's two settings lines, which the test swaps for the toy's.
SETTINGS = 'cfg = ued.load_config("experiments/maze_plr.yaml")\nnum_updates = 500\n'
TOY = with_curriculum(toy_config(), "plr", **REPLAY_CURRICULUM["options"])
UPDATES = 8
RUNS = 6  # two seeds by three replay probabilities
DECISIONS = ("curriculum/new", "curriculum/replay", "trained_envs", "buffer/size")


def sweep_block() -> str:
    text = (ROOT / "README.md").read_text()
    after = text[text.index(HEADING) :]
    return re.search(r"^```python\n(.*?)^```", after, re.S | re.M).group(1)


def test_the_readme_block_has_the_settings_the_test_swaps():
    block = sweep_block()
    assert block.count(SETTINGS) == 1
    compile(block, "README.md", "exec")


def test_load_config_passes_the_registry():
    path = ROOT / "experiments" / "maze_accel.yaml"  # a base file with curriculum options
    assert ued.load_config(path) == config_lib.load(path, (), options_of)


@pytest.fixture(scope="module")
def sweep():
    """The README block's names after it ran with the toy's config and ``UPDATES``."""
    source = sweep_block().replace(SETTINGS, f"cfg = TOY\nnum_updates = {UPDATES}\n")
    names = {"TOY": TOY}
    exec(compile(source, "README.md", "exec"), names)
    return names


def take(tree, i):
    return jax.tree.map(lambda x: np.asarray(x)[i], tree)


@pytest.mark.slow  # two compilations of the train step, about a minute on 2 cores
def test_each_run_of_the_sweep_is_the_run_alone(sweep):
    states, metrics = sweep["states"], sweep["metrics"]
    keys, probs = sweep["keys"], sweep["probs"].ravel()
    assert metrics["mean_return"].shape == (RUNS, UPDATES)
    np.testing.assert_array_equal(states.curriculum.params.replay_prob, probs)
    alone = jax.jit(sweep["run"])
    for i in range(RUNS):
        state_i, metrics_i = alone(keys[i], probs[i])
        # Integers (levels, buffer slots, clock, update count) and decisions exactly; XLA
        # sums the batched PPO update in another order, so floats agree to rounding.
        leaves = zip(jax.tree.leaves(take(states, i)), jax.tree.leaves(state_i), strict=True)
        for x, y in leaves:
            x, y = np.asarray(x), np.asarray(y)
            if np.issubdtype(x.dtype, np.floating):
                np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)
            else:
                np.testing.assert_array_equal(x, y)
        for key in DECISIONS:
            np.testing.assert_array_equal(metrics[key][i], metrics_i[key], err_msg=key)
        for key in ("mean_return", "loss/policy", "loss/value"):
            np.testing.assert_allclose(metrics[key][i], metrics_i[key], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_the_swept_value_changes_the_decisions_and_the_coin_is_shared(sweep):
    replayed = np.asarray(sweep["metrics"]["curriculum/replay"]) > 0  # (RUNS, UPDATES)
    by_seed = replayed.reshape(2, 3, UPDATES)  # (seed, replay_prob, update)
    # More replays with a larger replay_prob, for each seed.
    counts = by_seed.sum(-1)
    assert (counts[:, 0] < counts[:, 2]).all(), counts
    # One coin per update for every run: with the same replay_prob both seeds replay on the
    # same updates (their buffers are ready from the second update on).
    np.testing.assert_array_equal(by_seed[0], by_seed[1])
    assert not replayed[:, 0].any()  # the first update finds every buffer empty
