"""Levels sent to a run's inbox: validated at chunk boundaries, put into the curriculum,
logged, and applied exactly once across a crash, SIGINT and ``run.resume=true``."""

import json
import os
import signal

import jax
import numpy as np
import pytest

from tests.progress import deadline
from tests.toy_family import REPLAY_CURRICULUM, toy_config, with_curriculum
from ued.config import config as config_lib
from ued.curricula.base import TakesLevels
from ued.host.checkpoint import Checkpointer, load_trained
from ued.host.train import train
from ued.human import inbox

STEPS = 4 * 8
BASE = toy_config(
    ppo={"epochs": 1},
    eval={"levels": "none"},
    curriculum={"name": "plr", **REPLAY_CURRICULUM},
    run={"total_env_steps": 4 * STEPS, "chunk_updates": 1, "checkpoint_every": 2},
)
GOOD, OTHER, THIRD = "A....G", ".G..A.", "..G..A"


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


def test_sent_levels_are_applied_exactly_once_across_sigint_crash_and_resume(tmp_path):
    run_dir = tmp_path / "run"
    good = inbox.send(run_dir, GOOD)
    bad = inbox.send(run_dir, "A..")  # no goal
    sent = []

    def send_and_interrupt():
        sent.append(inbox.send(run_dir, OTHER))
        os.kill(os.getpid(), signal.SIGINT)

    # 1. Applied at update 1; OTHER arrives with a SIGINT, after that boundary.
    hook = Hook({1: send_and_interrupt})
    result = train(cfg_for(run_dir), logger=hook, verbose=False)
    assert result["status"] == "interrupted"
    by_id = {e["id"]: e for e in events(run_dir)}
    assert by_id[good]["accepted"] and by_id[good]["update"] == 1
    assert by_id[good]["store"] == "buffer" and isinstance(by_id[good]["slot"], int)
    assert not by_id[bad]["accepted"] and "exactly one A and one G" in by_id[bad]["reason"]
    assert "slot" not in by_id[bad]
    assert hook.rows[0]["grounding/accepted"] == 1 and hook.rows[0]["grounding/rejected"] == 1
    _, _, snapshot = buffer_texts(run_dir)
    assert snapshot.step == 1 and snapshot.meta["inbox_ids"] == [good, bad]
    assert (run_dir / "inbox" / "applied" / f"{good}.json").exists()
    rejected = json.loads((run_dir / "inbox" / "rejected" / f"{bad}.json").read_text())
    assert "exactly one A and one G" in rejected["reason"]
    assert [p.stem for p in inbox.pending(run_dir)] == sent  # waits for the resumed run

    # 2. Resumed: OTHER is applied at 2 (checkpointed); THIRD, sent then, is applied at 3
    # and the process dies before the checkpoint at 4.
    def crash():
        raise RuntimeError("simulated crash")

    hook = Hook({2: lambda: sent.append(inbox.send(run_dir, THIRD)), 3: crash})
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg_for(run_dir, resume=True), logger=hook, verbose=False)
    assert [(e["id"], e["update"]) for e in events(run_dir)][2:] == [(sent[0], 2), (sent[1], 3)]
    assert [p.stem for p in inbox.pending(run_dir)] == sent[1:]  # no checkpoint holds it
    with Checkpointer(run_dir / "checkpoints", background=False) as ckpt:
        assert ckpt.steps == [1, 2]

    # 3. Resumed from 2: THIRD is applied again, once, to a state that never had it.
    result = train(cfg_for(run_dir, resume=True), verbose=False)
    assert result["status"] == "finished" and result["resumed_from"] == 2
    expected = [(good, 1), (bad, 1), (sent[0], 2), (sent[1], 3)]
    assert [(e["id"], e["update"]) for e in events(run_dir)] == expected
    assert not inbox.pending(run_dir)
    texts, _, snapshot = buffer_texts(run_dir)
    assert [texts.count(t) for t in (GOOD, OTHER, THIRD)] == [1, 1, 1]
    assert snapshot.meta["inbox_ids"] == [good, bad, *sent]
    # A copy left pending (as by a crash between a save and the move) is only filed.
    applied = run_dir / "inbox" / "applied" / f"{sent[1]}.json"
    (run_dir / "inbox" / f"{sent[1]}.json").write_text(applied.read_text())
    box = inbox.Inbox(run_dir, snapshot.meta["inbox_ids"])
    assert not inbox.pending(run_dir) and box.take(None, None, 5) == ([], [])


def test_dr_starts_envs_on_sent_levels_and_is_unchanged_without_them():
    from ued.step.experiment import build

    key = jax.random.PRNGKey(3)
    dr = build(with_curriculum(BASE, "dr", resample="rollout", grounding_prob=1.0))
    cur, family, env = dr.curriculum, dr.family, dr.env
    cstate = cur.init(key)
    _, before, plan = cur.propose(key, cstate, None)
    assert not plan.group.any()  # an empty set: every env on a generated level
    off = build(with_curriculum(BASE, "dr", resample="rollout", grounding_capacity=0))
    assert not isinstance(off.curriculum, TakesLevels) and isinstance(cur, TakesLevels)
    _, reference, _ = off.curriculum.propose(key, off.curriculum.init(key), None)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool((a == b).all()), before, reference))
    sent = family.stack([family.level_from_text(env, GOOD)])
    cstate = jax.jit(cur.add_levels)(cstate, sent, key)
    _, levels, plan = cur.propose(key, cstate, None)
    assert plan.group.all()  # grounding_prob 1: every env on the sent level
    assert {family.level_to_text(env, lv) for lv in family.unstack(levels)} == {GOOD}
    assert int(cstate.count) == 1 and cstate.filled.sum() == 1


def test_a_curriculum_without_add_levels_rejects_sent_levels(tmp_path):
    from ued.human.grounding import Grounding
    from ued.step.experiment import build
    from ued.step.parallel import make_runner

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
    assert "no TakesLevels" in event["reason"]
    grounding.saved()
    assert (tmp_path / "inbox" / "rejected" / f"{sent}.json").exists()


def test_plr_add_levels_scores_above_the_buffer_on_every_seed():
    from ued.step.experiment import build
    from ued.step.parallel import make_runner

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


# --- hostile inbox entries ----------------------------------------------------------------


def hostile_inbox(run_dir, outside):
    """An inbox holding one good level and every kind of bad entry; returns {name: id}."""
    box = run_dir / "inbox"
    box.mkdir(parents=True)
    ids = {"good": inbox.send(run_dir, GOOD)}

    def entry(name):
        ids[name] = os.urandom(16).hex()
        return box / f"{ids[name]}.json"

    folder = entry("folder")
    folder.mkdir()
    (folder / "notes.txt").write_text("someone's notes")  # must survive
    entry("nested").write_text("[" * 30_000)  # 30 KB: under the size limit
    os.mkfifo(entry("fifo"))
    entry("zero").symlink_to("/dev/zero")
    target = outside / "message.json"
    target.write_text(json.dumps({"id": "x", "level": OTHER}))
    entry("link").symlink_to(target)
    entry("big").write_text(json.dumps({"level": "x" * (inbox.MAX_MESSAGE_BYTES + 10)}))
    entry("not_json").write_bytes(b"\xff\xfe{")
    (box / "notes.txt").write_text("not a message")
    (box / "LEVEL.JSON").write_text("{}")
    return ids


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_bad_inbox_entries_are_set_aside_and_training_goes_on(tmp_path, capfd):
    run_dir, outside = tmp_path / "run", tmp_path / "outside"
    outside.mkdir()
    ids = hostile_inbox(run_dir, outside)
    fifo = run_dir / "inbox" / f"{ids['fifo']}.json"
    with deadline(300, [fifo]):
        result = train(cfg_for(run_dir), verbose=False)
        assert result["status"] == "finished"
        by_id = {e["id"]: e for e in events(run_dir)}
        assert by_id[ids["good"]]["accepted"]
        reasons = {
            "folder": "is a folder, not a message",
            "nested": "nested too deeply",
            "fifo": "is a FIFO (named pipe), not a message",
            "zero": "is a symbolic link, not a message",
            "link": "is a symbolic link, not a message",
            "big": "over the 64 KiB limit for a message",
            "not_json": "the message is not JSON",
        }
        rejected = run_dir / "inbox" / "rejected"
        for name, reason in reasons.items():
            event = by_id[ids[name]]
            assert not event["accepted"] and reason in event["reason"], (name, event)
            record = json.loads((rejected / f"{ids[name]}.json").read_text())
            assert reason in record["reason"] and record["entry"] == f"{ids[name]}.entry"
            assert os.path.lexists(rejected / f"{ids[name]}.entry"), name  # set aside, not lost
        assert (rejected / f"{ids['folder']}.entry" / "notes.txt").read_text() == "someone's notes"
        assert os.readlink(rejected / f"{ids['zero']}.entry") == "/dev/zero"
        assert (rejected / f"{ids['fifo']}.entry").is_fifo()
        assert json.loads((outside / "message.json").read_text())["level"] == OTHER
        assert not inbox.pending(run_dir)
        # Other names stay where they are, each logged once (several chunk boundaries).
        assert (run_dir / "inbox" / "notes.txt").exists()
        err = capfd.readouterr().err
        assert err.count("ignoring") == 2 and err.count("notes.txt") == 1
        # A resumed run neither crashes on them nor processes anything twice.
        more = cfg_for(run_dir, resume=True, total_env_steps=6 * STEPS)
        assert train(more, verbose=False)["status"] == "finished"
        assert len(events(run_dir)) == len(by_id)


def test_an_entry_that_cannot_be_filed_is_left_pending_not_a_crash(tmp_path, capfd):
    sent = inbox.send(tmp_path, GOOD)
    (tmp_path / "inbox" / "applied").write_text("a file where the folder should be")
    box = inbox.Inbox(tmp_path)
    box.commit([{"id": sent, "update": 1, "accepted": True, "reason": ""}])
    box.saved()  # cannot make applied/: logged, the message stays pending
    assert "cannot file" in capfd.readouterr().err
    assert [p.stem for p in inbox.pending(tmp_path)] == [sent]


def test_filing_replaces_a_link_in_its_place_and_never_writes_through_it(tmp_path):
    sent = inbox.send(tmp_path, GOOD)
    outside = tmp_path / "outside.json"
    outside.write_text("not the inbox's")
    applied = tmp_path / "inbox" / "applied"
    applied.mkdir()
    (applied / f"{sent}.json").symlink_to(outside)
    box = inbox.Inbox(tmp_path)
    box.commit([{"id": sent, "update": 1, "accepted": True, "reason": ""}])
    box.saved()
    record = applied / f"{sent}.json"
    assert not record.is_symlink() and json.loads(record.read_text())["level"] == GOOD
    assert outside.read_text() == "not the inbox's"
    assert not inbox.pending(tmp_path)
    # The grounding log too: rewritten in place of a link, the link's target untouched.
    (tmp_path / "grounding.jsonl").unlink()
    (tmp_path / "grounding.jsonl").symlink_to(outside)
    inbox.prune_events(tmp_path, 0)
    assert not (tmp_path / "grounding.jsonl").is_symlink()
    assert outside.read_text() == "not the inbox's"


def test_a_fifo_where_a_record_goes_is_refused_as_an_oserror_not_replaced(tmp_path, capfd):
    sent = inbox.send(tmp_path, GOOD)
    applied = tmp_path / "inbox" / "applied"
    applied.mkdir()
    os.mkfifo(applied / f"{sent}.json")
    box = inbox.Inbox(tmp_path)
    box.commit([{"id": sent, "update": 1, "accepted": True, "reason": ""}])
    box.saved()  # the writer refuses the FIFO: logged like any OSError, the entry stays
    err = capfd.readouterr().err
    assert "cannot file" in err and "FIFO" in err
    assert (applied / f"{sent}.json").is_fifo()
    assert [p.stem for p in inbox.pending(tmp_path)] == [sent]
    with pytest.raises(OSError, match="FIFO"):
        inbox._write(applied / f"{sent}.json", "{}")
