"""A new replay curriculum in about 40 lines on the shared level ring (the guide's example,
``tests/ued/uniform_replay.py``): it trains, and the studio, the gallery and the inbox show
its ring as a buffer because it declares ``ShowsLevels`` and ``TakesLevels``; the same
curriculum without them is shown nowhere, though its state has ``levels`` and ``filled``."""

import dataclasses
import re
from pathlib import Path

import jax
import numpy as np
import pytest

from tests.toy_family import toy_config
from tests.ued import uniform_replay as ur
from ued.core import level_sets
from ued.curricula import CURRICULA, register
from ued.evaluation import gallery
from ued.human import inbox
from ued.human.grounding import Grounding
from ued.step.experiment import build
from ued.step.parallel import make_runner
from ued.studio import levels as studio_levels

ROOT = Path(__file__).resolve().parents[2]
UPDATES = 6
SENT = "A....G"


@pytest.fixture(scope="module")
def registered():
    register("uniform_replay", ur.UniformReplayOptions)(lambda o, d: ur.ShownUniformReplay(d, o))
    register("uniform_replay_unshown", ur.UniformReplayOptions)(lambda o, d: ur.UniformReplay(d, o))
    yield
    CURRICULA.pop("uniform_replay")
    CURRICULA.pop("uniform_replay_unshown")


def make(name, **options):
    options = {"capacity": 8, "replay_prob": 0.5, **options}
    return build(
        toy_config(ppo={"num_envs": 8, "epochs": 1}, curriculum={"name": name, "options": options})
    )


@pytest.fixture(scope="module")
def trained(registered):
    exp = make("uniform_replay")
    state = exp.init(jax.random.PRNGKey(0))
    state, metrics = jax.jit(lambda s: exp.run_chunk(s, UPDATES))(state)
    return exp, state, jax.device_get(metrics)


def test_the_guide_shows_the_example_as_shipped():
    doc = (ROOT / "docs" / "adding_a_curriculum.md").read_text()
    block = re.search(r"```python\n(# tests/ued/uniform_replay\.py\n.*?)```", doc, re.S)
    assert block and block.group(1) == (ROOT / "tests/ued/uniform_replay.py").read_text()


def test_it_trains_and_replays_from_its_ring(trained):
    exp, state, metrics = trained
    assert int(state.updates) == UPDATES
    assert np.all(np.isfinite(metrics["mean_return"]))
    # 8 new levels on the first update fill the ring; later updates replay about half.
    np.testing.assert_array_equal(metrics["buffer/size"], 8.0)
    assert metrics["curriculum/replay"][0] == 0.0 and metrics["curriculum/replay"][1:].sum() > 0
    ring = state.curriculum
    always = dataclasses.replace(exp.curriculum, options=ur.UniformReplayOptions(8, 1.0))
    _, levels, plan = always.propose(jax.random.PRNGKey(5), ring, None)
    assert plan.group.all()  # replay_prob 1: every env replays a ring level
    assert level_sets.pairwise_equal(levels, ring.levels).any(axis=1).all()


def test_studio_and_gallery_show_it_as_a_buffer(trained, tmp_path):
    exp, state, _ = trained
    ring = jax.device_get(state.curriculum)
    shown = studio_levels.curriculum_levels(exp, state)
    assert shown["kind"] == "buffer" and shown["size"] == shown["capacity"] == 8
    texts = [exp.family.level_to_text(exp.env, lv) for lv in exp.family.unstack(ring.levels)]
    assert [row["text"] for row in shown["levels"]] == texts  # no scores: slot order
    assert [row["slot"] for row in shown["levels"]] == list(range(8))
    written = gallery.write_galleries(tmp_path, exp, state.curriculum, UPDATES)
    assert [p.name for p in written] == [f"buffer_{UPDATES:08d}.png"]
    sent = exp.family.stack([exp.family.level_from_text(exp.env, SENT)])
    added = state.replace(curriculum=exp.curriculum.add_levels(state.curriculum, sent, None))
    found = studio_levels.locate(exp, added)[SENT]  # no scores: only the kind and the slot
    assert set(found) == {"kind", "slot"} and found["kind"] == "buffer"
    held = jax.tree.map(lambda x: x[found["slot"]], added.curriculum.levels)
    assert exp.family.level_to_text(exp.env, held) == SENT


def test_without_shows_levels_it_is_shown_nowhere(registered, tmp_path):
    exp = make("uniform_replay_unshown")
    state = exp.init(jax.random.PRNGKey(0))
    kept = exp.family.stack([exp.family.level_from_text(exp.env, t) for t in ("AG....", SENT)])
    state = state.replace(curriculum=level_sets.add(state.curriculum, kept))
    cstate = state.curriculum
    assert int(cstate.filled.sum()) == 2  # a state with levels and filled
    assert studio_levels.curriculum_levels(exp, state)["kind"] == "none"
    assert studio_levels.locate(exp, state) == {}
    assert gallery.write_galleries(tmp_path, exp, cstate, 1) == []
    runner = make_runner(exp)
    inbox.send(tmp_path, SENT)
    seeded = runner.init(runner.seed_keys(0))
    after, counts = Grounding(runner, tmp_path).apply(seeded, 1)
    assert after is seeded and counts["grounding/rejected"] == 1.0
