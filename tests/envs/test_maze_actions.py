"""The maze's action set: 3 actions (ued's default) or MiniGrid's 7 (dcd, minimax, JaxUED)."""

import jax
import numpy as np
import pytest

from envs.maze import Maze, family

LEVEL = """
>....
.....
....G
"""


@pytest.mark.parametrize("num_actions", [3, 7])
def test_action_space(num_actions):
    env = Maze(max_size=5, num_actions=num_actions)
    assert env.action_space(env.default_params()).n == num_actions


def test_minigrid_extra_actions_use_a_step_and_do_nothing():
    env = Maze(max_size=5, num_actions=7, max_steps=4)
    params = env.default_params()
    level = family.level_from_text(env, LEVEL)
    _, start = env.reset_to_level(jax.random.key(0), level, params)
    state = start
    for t, action in enumerate([3, 4, 5], start=1):  # pickup, drop, toggle
        _, state, reward, done, _ = env.step(jax.random.key(t), state, action, params)
        inner = state.env_state
        np.testing.assert_array_equal(inner.agent_pos, start.env_state.agent_pos)
        assert int(inner.agent_dir) == int(start.env_state.agent_dir)
        assert int(inner.time) == t and float(reward) == 0.0 and not bool(done)
    # "done" (6) ends nothing either; the fourth step is the time limit.
    _, state, reward, done, _ = env.step(jax.random.key(9), state, 6, params)
    assert bool(done) and float(reward) == 0.0


def test_bad_num_actions_is_refused():
    with pytest.raises(ValueError, match="num_actions must be 3 or 7"):
        Maze(num_actions=5)
