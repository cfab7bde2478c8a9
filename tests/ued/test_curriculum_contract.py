"""The curriculum contract's optional capabilities: every registered curriculum is run through
each capability it declares (``ued.curricula.base``), and one that declares none is shown
nowhere: not by the studio, the gallery or the inbox."""

import jax
import numpy as np
import pytest

from tests.toy_family import REPLAY_CURRICULUM, toy_config
from ued.core.level_sets import find_slot
from ued.curricula import CURRICULA
from ued.curricula.base import (
    VIEW_KINDS,
    CarriesEpisodes,
    LevelView,
    ResetsEpisodes,
    ShowsLevels,
    TakesLevels,
)
from ued.evaluation import gallery
from ued.human import inbox
from ued.human.grounding import Grounding
from ued.step.experiment import build
from ued.step.parallel import make_runner
from ued.studio import levels as studio_levels

SENT = "A....G"  # a valid toy corridor that no curriculum here starts with

# Options that make each registered curriculum small on the toy family (PAIRED needs a
# family with a level builder: it is checked on a tiny maze). A new curriculum adds a row.
TOY_OPTIONS = {
    "dr": {},
    "target_difficulty": {"metric": "distance"},
    "programs": {"archive_programs": 2, "new_programs": 2, "capacity": 8},
    "sfl": {"num_samples": 16, "samples_per_batch": 8, "rollout_steps": 8, "buffer_size": 4},
    **{
        name: REPLAY_CURRICULUM["options"]
        for name in ("plr", "robust_plr", "accel", "plr_parallel", "robust_plr_parallel")
    },
    "accel_parallel": REPLAY_CURRICULUM["options"],
}
DR_VARIANTS = {
    "dr_rollout_no_grounding": {"resample": "rollout", "grounding_capacity": 0},
    "dr_carried": {"carry_episodes": True},
}


def make(name: str):
    if name == "paired":
        from tests.ued.test_paired import make as make_paired

        return make_paired()
    options = DR_VARIANTS.get(name, TOY_OPTIONS.get(name))
    name = "dr" if name in DR_VARIANTS else name
    cfg = toy_config(
        ppo={"num_envs": 8, "epochs": 1}, curriculum={"name": name, "options": options}
    )
    return build(cfg)


def test_every_registered_curriculum_is_checked():
    assert set(CURRICULA) == set(TOY_OPTIONS) | {"paired"}


# PAIRED builds a maze student and adversaries (about 30 s): the slow tier.
NAMES = [
    pytest.param(n, marks=pytest.mark.slow) if n == "paired" else n
    for n in sorted(CURRICULA) + sorted(DR_VARIANTS)
]


@pytest.fixture(scope="module", params=NAMES)
def built(request):
    exp = make(request.param)
    return request.param, exp, exp.init(jax.random.PRNGKey(0))


def _shapes(tree):
    return jax.tree.map(lambda x: (np.shape(x), np.asarray(x).dtype), tree)


def check_view(exp, view):
    assert isinstance(view, LevelView) and view.kind in VIEW_KINDS
    capacity = view.capacity
    for leaf in jax.tree.leaves(view.levels):
        assert np.shape(leaf)[0] == capacity
    if view.scores is not None:
        assert np.shape(view.scores) == (capacity,)
    for name, column in view.columns.items():
        assert len(column) == capacity, name
    filled = set(np.flatnonzero(np.asarray(view.filled, bool)).tolist())
    assert set(view.order()) == filled


def test_declared_capabilities_work(built, tmp_path):
    name, exp, state = built
    cur, cstate = exp.curriculum, state.curriculum
    if isinstance(cur, ResetsEpisodes):
        # Restarts follow this step's proposal (a program curriculum: each env's program).
        proposed, start, plan = cur.propose(jax.random.PRNGKey(3), cstate, state.student)
        restart = cur.next_levels(proposed, start, plan)
        if restart is not None:  # None: this configuration replays
            levels = jax.jit(restart)(jax.random.PRNGKey(1))
            assert _shapes(levels) == _shapes(start)
            assert np.all(jax.vmap(lambda lv: exp.family.is_valid(exp.env, lv))(levels))
    if isinstance(cur, CarriesEpisodes):
        episodes = cur.episodes(cstate)
        again = cur.with_episodes(cstate, episodes)
        assert _shapes(again) == _shapes(cstate)
    if isinstance(cur, ShowsLevels):
        check_view(exp, cur.level_view(cstate))
    if isinstance(cur, TakesLevels):
        level = exp.family.level_from_text(exp.env, SENT)
        added = jax.jit(cur.add_levels)(cstate, exp.family.stack([level]), jax.random.PRNGKey(2))
        assert jax.tree.structure(added) == jax.tree.structure(cstate)
        assert _shapes(added) == _shapes(cstate)
        taken = cur.taken_levels(added)
        check_view(exp, taken)
        assert find_slot(taken.levels, taken.filled, level) is not None, name
        before = cur.taken_levels(cstate)
        assert find_slot(before.levels, before.filled, level) is None
    if not isinstance(cur, ShowsLevels):
        assert studio_levels.curriculum_levels(exp, state)["kind"] == "none"
        assert gallery.write_galleries(tmp_path, exp, cstate, 1) == []
    if not isinstance(cur, TakesLevels):
        assert studio_levels.locate(exp, state) == {}


def test_a_curriculum_without_takes_levels_refuses_sent_levels(tmp_path):
    exp = make("dr_rollout_no_grounding")
    assert not isinstance(exp.curriculum, (TakesLevels, ShowsLevels, ResetsEpisodes))
    runner = make_runner(exp)
    state = runner.init(runner.seed_keys(0))
    inbox.send(tmp_path, SENT)
    after, counts = Grounding(runner, tmp_path).apply(state, 1)
    assert after is state and counts["grounding/rejected"] == 1.0
