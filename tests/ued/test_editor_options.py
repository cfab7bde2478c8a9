"""Editors take options like generators do: ``editors: {name: {weight: w, <options>}}``."""

from pathlib import Path

import jax
import numpy as np
import pytest

from envs.control.generators import training_ranges
from envs.control.spec import to_vector
from ued.api import load_config
from ued.config.config import ConfigError
from ued.step.experiment import build

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "cartpole_accel.yaml"
SMALL = ["ppo.num_envs=4", "ppo.num_minibatches=1", "curriculum.options.buffer.capacity=8"]


def accel(editors: str):
    overrides = [*SMALL, "curriculum.options.num_edits=1", f"curriculum.options.editors={editors}"]
    return build(load_config(EXPERIMENT, overrides))


def largest_step(exp) -> float:
    """The largest single-edit move of any parameter, as a fraction of its training range."""
    parents = jax.vmap(exp.deps.generator)(jax.random.split(jax.random.PRNGKey(0), 512))
    children = jax.jit(exp.curriculum.parts.edit)(jax.random.PRNGKey(1), parents)
    task = exp.env.task
    before = jax.vmap(lambda lv: to_vector(task, lv))(parents)
    after = jax.vmap(lambda lv: to_vector(task, lv))(children)
    low, high = (np.asarray(v) for v in training_ranges(exp.env))
    span = np.where(high > low, high - low, 1.0)
    return float((np.abs(np.asarray(after) - np.asarray(before)) / span).max())


def test_editor_options_reach_the_editor():
    default = largest_step(accel("{perturb_param: 1.0}"))
    wide = largest_step(accel("{perturb_param: {weight: 1.0, scale: 0.6}}"))
    assert 0.1 < default <= 0.2 + 1e-6  # the default scale, 0.2 of the range
    assert 0.3 < wide <= 0.6 + 1e-6


@pytest.mark.parametrize(
    ("editors", "message"),
    [
        ("{perturb_param: {weight: 1.0, scale: 0.0}}", "editors.perturb_param: scale=0.0"),
        ("{perturb_param: {weight: 1.0, size: 2}}", "unknown option "),
        ("{perturb_param: {weight: -1}}", "curriculum.options.editors="),
    ],
)
def test_bad_editor_options_name_the_key(editors, message):
    with pytest.raises(ConfigError) as err:
        accel(editors)
    assert message in str(err.value)
