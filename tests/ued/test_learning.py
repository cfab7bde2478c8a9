"""The student learns: on a tiny maze distribution the return rises well above its start."""

import jax
import numpy as np

from ued.config import config as config_lib
from ued.step.experiment import build

TINY_MAZE = {
    "env": {
        "family": "maze",
        "options": {"max_size": 5, "view_size": 3, "max_steps": 24},
        "generator": "random_walls",
        "generator_options": {"num_walls": 2},
    },
    "network": {"kind": "conv_lstm", "lstm_size": 32, "head_size": 16, "conv_channels": 8},
    "ppo": {
        "num_envs": 16,
        "num_steps": 32,
        "lr": 3e-3,
        "epochs": 2,
        "num_minibatches": 2,
        "ent_coef": 0.01,
    },
    # One level per env per rollout: the known answer below was set for it (with a new level
    # at every episode end the solve rate after 60 updates is just under 0.8).
    "curriculum": {"name": "dr", "options": {"resample": "rollout"}},
    "run": {"compile_cache": ""},
}


def test_return_rises_on_tiny_mazes():
    exp = build(config_lib.from_dict(TINY_MAZE))
    chunk = jax.jit(lambda s: exp.run_chunk(s, 20))
    state = exp.init(jax.random.PRNGKey(0))
    state, first = chunk(state)
    state, _ = chunk(state)
    state, last = chunk(state)
    before = float(np.mean(first["mean_return"][:3]))
    after = float(np.mean(last["mean_return"][-5:]))
    assert after > before + 0.25, (before, after)
    assert float(np.mean(last["solve_rate"][-5:])) > 0.8
