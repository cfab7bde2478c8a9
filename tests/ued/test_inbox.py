"""Levels sent to a run's inbox: validated at chunk boundaries, put into the curriculum,
logged, and applied exactly once across a crash, SIGINT and ``run.resume=true``."""

import json
import os
import signal

import jax
import numpy as np
import pytest

from tests.toy_family import REPLAY_CURRICULUM, toy_config, with_curriculum
from ued import config as config_lib
from ued import inbox
from ued.checkpoint import Checkpointer, load_trained
from ued.train import train

STEPS = 4 * 8
BASE = toy_config(
    ppo={"epochs": 1},
    eval={"levels": "none"},
    curriculum={"name": "plr", **REPLAY_CURRICULUM},
    run={"total_env_steps": 4 * STEPS, "chunk_updates": 1, "checkpoint_every": 2},
)
GOOD, OTHER = "A....G", ".G..A."


def cfg_for(run_dir, cfg=BASE, **run):
    return config_lib.replace(cfg, run={"dir": str(run_dir), **run})


class Hook:
    """A logger that runs ``actions[updates]()`` when the row of that update is logged."""

    def __init__(self, actions):
        self.actions, self.rows = actions, []

    def log(self, record):
        self.rows.append(record)
        action = self.actions.pop(record.get("updates"), None)
        if action is not None:
            action()

    def close(self):
        pass


def events(run_dir):
    return inbox.read_events(run_dir)


def buffer_texts(run_dir):
    exp, state, snapshot = load_trained(run_dir)
    buf = jax.device_get(state.curriculum.buffer)
    levels = exp.family.unstack(buf.levels)
    filled = np.flatnonzero(buf.filled)
    texts = [exp.family.level_to_text(exp.env, levels[i]) for i in filled]
    return texts, buf, snapshot


def test_levels_are_validated_filed_and_reapplied_once_after_a_crash(tmp_path):
    run_dir = tmp_path / "run"
    good = inbox.send(run_dir, GOOD)
    bad = inbox.send(run_dir, "A..")  # no goal
    sent = []

    def crash():
        raise RuntimeError("simulated crash")

    # OTHER is sent after the checkpoint at 2 and applied at 3; the process dies before 4.
    hook = Hook({2: lambda: sent.append(inbox.send(run_dir, OTHER)), 3: crash})
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg_for(run_dir), logger=hook, verbose=False)
    by_id = {e["id"]: e for e in events(run_dir)}
    assert by_id[good]["accepted"] and by_id[good]["update"] == 1
    assert not by_id[bad]["accepted"] and "exactly one A and one G" in by_id[bad]["reason"]
    assert by_id[sent[0]]["update"] == 3
    assert hook.rows[0]["grounding/accepted"] == 1 and hook.rows[0]["grounding/rejected"] == 1
    assert hook.rows[1]["grounding/accepted"] == 0
    # Filed once the checkpoint at 2 held them; OTHER waits: no checkpoint has it.
    assert (run_dir / "inbox" / "applied" / f"{good}.json").exists()
    rejected = json.loads((run_dir / "inbox" / "rejected" / f"{bad}.json").read_text())
    assert "exactly one A and one G" in rejected["reason"]
    assert [p.stem for p in inbox.pending(run_dir)] == sent
    with Checkpointer(run_dir / "checkpoints", background=False) as ckpt:
        assert ckpt.steps == [2]

    result = train(cfg_for(run_dir, resume=True), verbose=False)
    assert result["status"] == "finished" and result["resumed_from"] == 2
    assert [(e["id"], e["update"]) for e in events(run_dir)] == [(good, 1), (bad, 1), (sent[0], 3)]
    assert not inbox.pending(run_dir)
    texts, _, snapshot = buffer_texts(run_dir)
    assert texts.count(GOOD) == 1 and texts.count(OTHER) == 1
    assert snapshot.meta["inbox_ids"] == [good, bad, sent[0]]


def test_a_level_sent_as_sigint_arrives_is_applied_once_after_resume(tmp_path):
    run_dir = tmp_path / "run"
    sent = []

    def send_and_interrupt():
        sent.append(inbox.send(run_dir, OTHER))
        os.kill(os.getpid(), signal.SIGINT)

    two = {"total_env_steps": 2 * STEPS}
    result = train(cfg_for(run_dir, **two), logger=Hook({1: send_and_interrupt}), verbose=False)
    assert result["status"] == "interrupted"
    _, _, snapshot = buffer_texts(run_dir)
    assert snapshot.step == 1 and snapshot.meta["inbox_ids"] == []
    assert [p.stem for p in inbox.pending(run_dir)] == sent  # waits for the resumed run
    result = train(cfg_for(run_dir, resume=True, **two), verbose=False)
    assert result["status"] == "finished"
    assert [(e["id"], e["update"]) for e in events(run_dir)] == [(sent[0], 2)]
    texts, _, snapshot = buffer_texts(run_dir)
    assert texts.count(OTHER) == 1 and snapshot.meta["inbox_ids"] == sent
    # A copy left pending (as by a crash between a save and the move) is only filed.
    applied = run_dir / "inbox" / "applied" / f"{sent[0]}.json"
    (run_dir / "inbox" / f"{sent[0]}.json").write_text(applied.read_text())
    box = inbox.Inbox(run_dir, snapshot.meta["inbox_ids"])
    assert not inbox.pending(run_dir) and box.take(None, None, 5) == ([], [])


def test_dr_replays_sent_levels(tmp_path):
    dr = with_curriculum(BASE, "dr", resample="rollout", grounding_prob=1.0)
    run_dir = tmp_path / "dr"
    sent = inbox.send(run_dir, GOOD)
    hook = Hook({})
    train(cfg_for(run_dir, dr, total_env_steps=2 * STEPS), logger=hook, verbose=False)
    assert events(run_dir)[0]["accepted"]
    # Every env of the second rollout started on the sent level (grounding_prob 1).
    assert hook.rows[1]["curriculum/grounding"] == 1.0
    assert hook.rows[0]["curriculum/grounding"] == 0.0  # the first ran before it arrived
    exp, state, _ = load_trained(run_dir)
    assert int(state.curriculum.count) == 1
    stored = exp.family.unstack(jax.device_get(state.curriculum.levels))[0]
    assert exp.family.level_to_text(exp.env, stored) == GOOD
    assert sent in (p.stem for p in (run_dir / "inbox" / "applied").iterdir())



def test_a_curriculum_without_add_levels_rejects_sent_levels(tmp_path):
    from ued.experiment import build
    from ued.grounding import Grounding
    from ued.parallel import make_runner

    cfg = with_curriculum(BASE, "dr", grounding_capacity=0)
    runner = make_runner(build(cfg))
    state = runner.init(runner.seed_keys(0))
    sent = inbox.send(tmp_path, GOOD)
    grounding = Grounding(runner, tmp_path)
    after, counts = grounding.apply(state, 1)
    assert after is state and counts == {"grounding/accepted": 0.0, "grounding/rejected": 1.0}
    (event,) = events(tmp_path)
    assert event["id"] == sent and not event["accepted"]
    assert "curriculum 'dr' takes no sent levels" in event["reason"]
    assert "grounding_capacity is 0" in event["reason"]
    grounding.saved()
    assert (tmp_path / "inbox" / "rejected" / f"{sent}.json").exists()


def test_plr_add_levels_scores_above_the_buffer_on_every_seed():
    from ued.experiment import build
    from ued.parallel import make_runner

    cfg = config_lib.replace(BASE, run={"num_seeds": 2})
    exp = build(cfg)
    runner = make_runner(exp)
    state = runner.init(runner.seed_keys(0))
    add = jax.jit(jax.vmap(exp.curriculum.add_levels, in_axes=(0, None, 0)))
    level = exp.family.stack([exp.family.level_from_text(exp.env, GOOD)])
    cur = add(state.curriculum, level, jax.random.split(jax.random.PRNGKey(0), 2))
    cur = add(cur, exp.family.stack([exp.family.level_from_text(exp.env, OTHER)]),
              jax.random.split(jax.random.PRNGKey(1), 2))  # fmt: skip
    buf = jax.device_get(cur.buffer)
    assert buf.size.tolist() == [2, 2]
    for seed in range(2):
        scores = buf.scores[seed][buf.filled[seed]]
        assert np.all(np.isfinite(scores)) and scores.max() > 0  # the second beats the first
