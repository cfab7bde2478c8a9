"""DR's ``carry_episodes`` (JaxUED's DR): episodes and the student's recurrent state continue
from one update's rollout into the next, and resume exactly from a checkpoint.

Known answer: the toy corridor's horizon is 12 steps and a rollout 8. Without carried
episodes every rollout starts fresh episodes, so no episode is ever older than 8 steps at a
rollout's end; with them an episode begun late in one rollout goes on in the next, and the
env clocks pass 8.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.toy_family import toy_config
from ued.config.config import ConfigError
from ued.core import ppo
from ued.host.train import train
from ued.step.experiment import build

STEPS = 4 * 8


def carried_config(**run):
    return toy_config(
        curriculum={"name": "dr", "options": {"carry_episodes": True}},
        ppo={"epochs": 1, "lr": 3e-3},
        eval={"levels": "none"},
        run={"total_env_steps": 6 * STEPS, "chunk_updates": 2, "checkpoint_every": 2, **run},
    )


def test_episodes_run_across_rollouts_when_carried():
    exp = build(carried_config())
    state = exp.init(jax.random.PRNGKey(0))
    assert not bool(state.curriculum.episodes.started)
    step = jax.jit(exp.step)
    ages = []
    for _ in range(6):
        state, _ = step(state)
        episodes = state.curriculum.episodes
        assert bool(episodes.started)
        ages.append(int(jnp.max(episodes.env_state.env_state.time)))
    assert max(ages) > 8  # an episode outlived its 8-step rollout: impossible without carry


def test_the_loss_resets_the_carry_only_where_an_episode_starts():
    exp = build(carried_config())
    state = exp.init(jax.random.PRNGKey(1))
    state, _ = jax.jit(exp.step)(state)  # episodes now mid-way
    start = state.curriculum.episodes
    levels = jax.vmap(exp.deps.generator)(jax.random.split(jax.random.PRNGKey(2), 4))
    rollout, end = exp.rollout(jax.random.PRNGKey(3), state.student.params, levels, start=start)
    assert isinstance(rollout.init_carry, ppo.Carried)
    np.testing.assert_array_equal(rollout.init_carry.done, start.done)
    assert bool(end.started)
    # The loss replays the rollout from the carried state: its values are the rollout's.
    weight = jnp.ones_like(rollout.rewards)
    _, policy, values = exp.network.apply(
        state.student.params, rollout.init_carry.carry, rollout.obs,
        jnp.concatenate([rollout.init_carry.done[None], rollout.dones[:-1]]),
    )  # fmt: skip
    np.testing.assert_allclose(values, rollout.values, atol=1e-5)
    loss, _ = ppo.loss_fn(state.student.params, exp.network, rollout, weight, exp.cfg.ppo)
    assert np.isfinite(float(loss))


def test_carried_episodes_resume_exactly(tmp_path):
    straight = train(carried_config(dir=str(tmp_path / "a")), verbose=False)
    train(carried_config(dir=str(tmp_path / "b"), total_env_steps=2 * STEPS), verbose=False)
    resumed = train(carried_config(dir=str(tmp_path / "b"), resume=True), verbose=False)
    same = jax.tree.map(
        lambda x, y: bool(np.array_equal(np.asarray(x), np.asarray(y))),
        (straight["state"].student.params, straight["state"].curriculum),
        (resumed["state"].student.params, resumed["state"].curriculum),
    )
    assert all(jax.tree.leaves(same))


def test_carry_needs_new_levels_at_episode_ends():
    cfg = toy_config(curriculum={"name": "dr", "options": {"carry_episodes": True,
                                                           "resample": "rollout"}})  # fmt: skip
    with pytest.raises(ConfigError, match="carry_episodes needs resample: episode"):
        build(cfg)
