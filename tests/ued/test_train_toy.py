"""The one train step on the toy corridor family: ued/ never needs the maze."""

import jax
import numpy as np
import pytest

from tests.toy_family import toy_config
from ued.step.experiment import build

TOY = toy_config(
    env={"options": {"max_length": 10, "max_steps": 20}},
    network={"mlp_sizes": [32, 32], "head_size": 16},
    ppo={"num_envs": 8, "num_steps": 20, "lr": 3e-3, "epochs": 2, "num_minibatches": 2},
    run={"total_env_steps": 16000, "chunk_updates": 25},
    eval={"episodes": 4},
)


@pytest.fixture(scope="module")
def dr_experiment():
    return build(TOY)


@pytest.fixture(scope="module")
def dr_chunk(dr_experiment):
    return jax.jit(lambda s: dr_experiment.run_chunk(s, 25))


def test_step_is_deterministic_and_keys_advance(dr_experiment):
    step = jax.jit(dr_experiment.step)
    state = dr_experiment.init(jax.random.PRNGKey(0))
    a, ma = step(state)
    b, mb = step(state)
    np.testing.assert_array_equal(
        jax.tree.leaves(a.student.params)[0], jax.tree.leaves(b.student.params)[0]
    )
    assert float(ma["mean_return"]) == float(mb["mean_return"])
    assert not np.array_equal(a.key, state.key)
    assert int(a.updates) == 1
    for key in ("mean_return", "solve_rate", "loss/policy", "levels/distance", "curriculum/new"):
        assert key in ma and np.isfinite(float(ma[key])), key


def test_training_improves_return_on_tiny_task(dr_experiment, dr_chunk):
    state = dr_experiment.init(jax.random.PRNGKey(1))
    returns = []
    for _ in range(4):
        state, metrics = dr_chunk(state)
        returns.append(np.asarray(metrics["mean_return"]))
    before, after = float(returns[0][:3].mean()), float(returns[-1][-5:].mean())
    assert after > before + 0.2, (before, after)
