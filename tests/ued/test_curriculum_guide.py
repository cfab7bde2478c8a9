"""The worked example of docs/adding_a_curriculum.md: shipped as written, and it works."""

import re
from pathlib import Path

import jax
import numpy as np
import pytest

from tests.toy_family import toy_config
from ued.config.config import ConfigError
from ued.curricula import CURRICULA
from ued.step.experiment import build

ROOT = Path(__file__).resolve().parents[2]
UPDATES = 6


def test_the_guide_shows_the_shipped_module():
    doc = (ROOT / "docs" / "adding_a_curriculum.md").read_text()
    block = re.search(r"```python\n# (ued/curricula/\w+\.py)\n(.*?)```", doc, re.S)
    assert block, "the guide's module block"
    assert (ROOT / block.group(1)).read_text() == block.group(2)
    assert "target_difficulty" in CURRICULA  # registered by the module alone


def config(**options):
    return toy_config(
        env={"options": {"max_length": 8}},
        ppo={"num_envs": 8, "num_steps": 8, "epochs": 1},
        run={"total_env_steps": UPDATES * 8 * 8},
        curriculum={"name": "target_difficulty", "options": options},
    )


def test_levels_follow_the_target():
    exp = build(config(metric="distance", start=1.0, end=6.0, candidates=16))
    state = exp.init(jax.random.PRNGKey(0))
    state, metrics = jax.jit(lambda s: exp.run_chunk(s, UPDATES))(state)
    np.testing.assert_allclose(metrics["curriculum/target"], np.linspace(1.0, 6.0, UPDATES))
    distance = np.asarray(metrics["levels/distance"])
    # 16 uniform draws per env almost always include the target distance (1..7 on 8 cells).
    np.testing.assert_allclose(distance, np.linspace(1.0, 6.0, UPDATES), atol=0.5)
    assert int(state.curriculum) == UPDATES


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"metric": "height"}, "curriculum.options.metric='height'; must be one of ['distance']"),
        ({"candidates": 0}, "curriculum.options.candidates=0; must be an integer >= 1"),
        ({"speed": 1}, "unknown config key 'curriculum.options.speed'"),
    ],
)
def test_bad_options_name_the_key(options, message):
    with pytest.raises(ConfigError) as err:
        build(config(**options))
    assert message in str(err.value)
