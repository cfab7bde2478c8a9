"""Run-folder safety on the toy family: earlier results are never deleted, a folder has one
training process at a time, and a state too large for the machine is refused before it is
allocated. (Two real processes and real signals: ``tests/scripts/test_hostile.py``.)"""

import json
import os
from pathlib import Path

import pytest

from tests.progress import deadline
from tests.toy_family import toy_config
from ued.api import load_config
from ued.config import config as config_lib
from ued.config.config import ConfigError
from ued.host import limits
from ued.host.run_dir import RunFolderError, RunLock
from ued.host.train import train

ROOT = Path(__file__).resolve().parents[2]
STEPS = 4 * 8  # env steps per update
TOY = toy_config(
    ppo={"epochs": 1},
    eval={"levels": "none"},
    run={"total_env_steps": 2 * STEPS, "chunk_updates": 2},
)


def cfg_for(run_dir, **run):
    return config_lib.replace(TOY, run={"dir": str(run_dir), **run})


def snapshot(run_dir):
    """Every file under ``run_dir`` (but the lock) with its bytes."""
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.name != ".lock"
    }


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """One finished toy run (2 updates, a checkpoint at the end)."""
    run_dir = tmp_path_factory.mktemp("runs") / "done"
    train(cfg_for(run_dir), verbose=False)
    return run_dir


@pytest.fixture()
def metrics_only(tmp_path):
    """A folder holding an earlier run's metrics and summary but no checkpoint."""
    run_dir = tmp_path / "old"
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text(json.dumps({"updates": 1, "sps": 1.0}) + "\n")
    (run_dir / "summary.json").write_text("{}")
    return run_dir


@pytest.mark.parametrize("resume", [False, True])
def test_results_without_checkpoint_are_kept_and_refused(metrics_only, resume):
    before = snapshot(metrics_only)
    with pytest.raises(RunFolderError, match="run.overwrite=true") as err:
        train(cfg_for(metrics_only, resume=resume), verbose=False)
    assert "metrics.jsonl" in str(err.value) and "Nothing was changed" in str(err.value)
    assert snapshot(metrics_only) == before
    assert not (metrics_only / ".lock").exists()  # released on the way out


def test_fresh_run_into_a_finished_run_is_refused(done):
    before = snapshot(done)
    with pytest.raises(RunFolderError, match="checkpoints"):
        train(cfg_for(done), verbose=False)
    assert snapshot(done) == before


def test_overwrite_moves_the_old_run_aside(metrics_only):
    before = snapshot(metrics_only)
    result = train(cfg_for(metrics_only, overwrite=True), verbose=False)
    assert result["status"] == "finished"
    (aside,) = metrics_only.parent.glob("old.old-*")
    assert snapshot(aside) == before  # every byte of the old run, in a folder of its own
    rows = [json.loads(x) for x in (metrics_only / "metrics.jsonl").read_text().splitlines()]
    assert [r["updates"] for r in rows if "sps" in r] == [2]


def test_a_held_folder_is_refused_naming_the_holder(tmp_path):
    run_dir = tmp_path / "busy"
    with RunLock(run_dir):
        with pytest.raises(RunFolderError, match=f"in use .*pid {os.getpid()}"):
            train(cfg_for(run_dir), verbose=False)
        with pytest.raises(RunFolderError):  # a second lock in the same process too
            RunLock(run_dir).acquire()
    assert not (run_dir / ".lock").exists()
    assert not (run_dir / "metrics.jsonl").exists()


def test_a_stale_lock_is_taken_over(tmp_path, capsys):
    run_dir = tmp_path / "stale"
    run_dir.mkdir()
    # The file a killed owner leaves behind: its flock died with it.
    (run_dir / ".lock").write_text(json.dumps({"pid": 999999, "host": "elsewhere"}))
    with RunLock(run_dir) as lock:
        info = json.loads(lock.path.read_text())
        assert info["pid"] == os.getpid()
    err = capsys.readouterr().err
    assert "stale lock" in err and "pid 999999 on elsewhere" in err


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_run_dir_that_is_a_file_is_refused(tmp_path, where):
    path = tmp_path / "a_file"
    path.write_text("x")
    run_dir = path if where == "file" else path / "run"
    with pytest.raises(RunFolderError, match="which is a file|is a file"):
        train(cfg_for(run_dir), verbose=False)
    assert path.read_text() == "x"


def test_a_state_larger_than_free_memory_is_refused_before_init(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "available_bytes", lambda: 1000)
    with pytest.raises(ConfigError, match=r"the train state .* needs about .* free"):
        train(cfg_for(tmp_path / "small"), verbose=False)
    assert not (tmp_path / "small" / "config.yaml").exists()  # refused before anything ran


def test_check_fits_names_the_estimate():
    limits.check_fits("x", 10, available=10)
    with pytest.raises(ConfigError, match=r"x needs about 2\.0 GiB, more than the 1\.0 GiB"):
        limits.check_fits("x", 2 * 2**30, available=2**30)


@pytest.mark.parametrize("kind", ["symlink", "fifo", "folder"])
def test_a_lock_that_is_not_a_regular_file_is_refused_untouched(tmp_path, kind):
    run_dir, victim = tmp_path / "run", tmp_path / "precious.txt"
    run_dir.mkdir()
    victim.write_text("someone's data")
    lock = run_dir / ".lock"
    if kind == "symlink":
        lock.symlink_to(victim)
    elif kind == "fifo":
        os.mkfifo(lock)
    else:
        lock.mkdir()
    with (
        deadline(120, [lock] if kind == "fifo" else []),
        pytest.raises(RunFolderError, match=r"\.lock"),
    ):
        train(cfg_for(run_dir), verbose=False)
    assert victim.read_text() == "someone's data"  # never written through the link
    assert (lock.is_symlink(), lock.is_fifo(), lock.is_dir()) == (
        kind == "symlink", kind == "fifo", kind == "folder"
    )  # fmt: skip
    assert not (run_dir / "config.yaml").exists()


def test_a_hundred_thousand_seeds_are_refused_by_the_estimate_in_seconds(tmp_path, monkeypatch):
    """The state's size comes from its shapes alone (no key is made per seed), so a seed
    count far past the machine's memory is refused before anything is built."""
    import time

    from ued.step.parallel import init_shapes

    cfg = config_lib.replace(TOY, run={"num_seeds": 100_000, "dir": str(tmp_path / "many")})
    start = time.monotonic()
    from ued.step.experiment import build

    like = init_shapes(build(cfg))
    assert time.monotonic() - start < 30
    per_seed = limits.tree_bytes(init_shapes(build(config_lib.replace(TOY, run={"num_seeds": 2}))))
    assert limits.tree_bytes(like) == per_seed // 2 * 100_000
    maze = load_config(
        ROOT / "experiments" / "maze_dr.yaml",
        ["run.num_seeds=100000", f"run.dir={tmp_path / 'maze'}", "eval.levels=none",
         "run.compile_cache="],
    )  # fmt: skip
    monkeypatch.setattr(limits, "available_bytes", lambda: 64 * 2**30)  # any machine's
    start = time.monotonic()
    with pytest.raises(ConfigError, match=r"the train state \(100000 seed\(s\)\) needs about"):
        train(maze, verbose=False)
    assert time.monotonic() - start < 60


BAD_ENTRIES = [("metrics.jsonl", "fifo"), ("summary.json", "symlink"), ("config.yaml", "folder"),
               ("checkpoints", "file")]  # fmt: skip


@pytest.mark.parametrize(("name", "kind"), BAD_ENTRIES)
def test_a_run_file_that_is_not_a_regular_file_is_refused_before_building(tmp_path, name, kind):
    """Writing would block on a FIFO or go through a link to someone's file: refused."""
    run_dir, victim = tmp_path / "run", tmp_path / "precious.json"
    run_dir.mkdir()
    victim.write_text("someone's data")
    path = run_dir / name
    {"fifo": os.mkfifo, "symlink": lambda p: p.symlink_to(victim), "folder": Path.mkdir,
     "file": lambda p: p.write_text("x")}[kind](path)  # fmt: skip
    with (
        deadline(120, [path] if kind == "fifo" else []),
        pytest.raises(RunFolderError, match=f"{name} is"),
    ):
        train(cfg_for(run_dir), verbose=False)
    assert victim.read_text() == "someone's data"
    assert sorted(p.name for p in run_dir.iterdir()) == [name]  # nothing else written
