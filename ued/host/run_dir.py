"""Run-folder safety: one training process per folder, and nothing a user ran is deleted.

- ``RunLock``: an advisory lock file ``RUN/.lock`` holding the owner's pid, host and start
  time, taken for the lifetime of a training process. The lock itself is a ``flock`` on that
  file, so the kernel drops it when the owner dies however it dies; a file left behind by a
  dead owner is stale and is taken over with a note. A second process is refused with a
  ``RunFolderError`` naming the holder.
- ``prepare``: checks ``run.dir`` before anything is built. A fresh run into a folder that
  holds results (metrics, a summary, checkpoints, galleries) is refused unless
  ``run.overwrite=true``, which moves the old contents aside to ``RUN.old-<time>/`` (a
  complete run folder that evaluate/plot still read) instead of deleting them.
- ``open_run``: the checkpointer and the checkpoint to resume of a locked folder.
- ``restore_checkpoint_config``: after a non-finite stop, ``config.yaml`` is set back to the
  config of the last good checkpoint, so each checkpoint's config is the one beside it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import stat
import sys
import time
import warnings
from pathlib import Path

import yaml

from ued.config import config as config_lib
from ued.config.config import Config, ConfigError
from ued.files.safe_io import describe, read_capped
from ued.host.checkpoint import Checkpointer

LOCK_NAME = ".lock"
MAX_LOCK_BYTES = 4096  # a lock holds one short JSON object
# What a run writes; a folder holding any of them holds someone's results.
RESULTS = (
    "metrics.jsonl",
    "metrics.csv",
    "summary.json",
    "checkpoints",
    "checkpoints_corrupt",
    "gallery",
    "eval.json",
    "plots",
    "tb",
)


# What a run writes by name: each must be a regular file (or absent), each folder a folder.
WRITTEN_FILES = ("config.yaml", "config.failed.yaml", "metrics.jsonl", "metrics.csv",
                 "summary.json", "events.jsonl", "grounding.jsonl", "eval.json")  # fmt: skip
WRITTEN_FOLDERS = ("checkpoints", "checkpoints_corrupt", "gallery", "inbox", "tb", "plots")


class RunFolderError(ConfigError):
    """``run.dir`` cannot be used as asked; the message says how to continue."""


def check_entries(run_dir: Path) -> None:
    """Refuses a run folder where a file the run writes is not a regular file (a symbolic
    link, FIFO, device or folder: writing would follow, block on or fail at it) or a
    folder it writes into is not a folder, before anything is built."""
    for name in (*WRITTEN_FILES, *WRITTEN_FOLDERS):
        path = run_dir / name
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            continue
        if name in WRITTEN_FOLDERS:
            if path.is_dir():  # a link to a folder (another disk) is fine
                continue
            kind = describe(mode) if not stat.S_ISREG(mode) else "a file"
            raise RunFolderError(f"run.dir={run_dir}: {name} is {kind}, not a folder; move it")
        if not stat.S_ISREG(mode):
            raise RunFolderError(
                f"run.dir={run_dir}: {name} is {describe(mode)}, not a file this run can "
                "write; move it away (nothing was changed) or choose another run.dir"
            )


def check_writable_dir(path: Path, key: str = "run.dir") -> None:
    """Refuses a path that is a file, or lies under one, before anything is built."""
    for part in (path, *path.parents):
        if part.exists() and not part.is_dir():
            where = "is a file" if part == path else f"is under {part}, which is a file"
            raise RunFolderError(f"{key}={path} {where}; choose a folder")


def _describe(info: dict) -> str:
    started = info.get("started")
    since = time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(started)) if started else ""
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')}{since}"


class RunLock:
    """The lock of one run folder (a context manager; ``release`` is idempotent)."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / LOCK_NAME
        self._fd: int | None = None

    def _read(self) -> dict:
        try:
            return json.loads(read_capped(self.path, MAX_LOCK_BYTES, "lock file", True) or b"{}")
        except (OSError, ValueError):
            return {}

    def _open(self) -> int:
        """The lock file's descriptor, never through a symbolic link or into anything but a
        regular file (``O_NOFOLLOW``; a FIFO or device is refused, not written)."""
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as err:
            if err.errno == errno.ELOOP:
                raise RunFolderError(
                    f"{self.path} is a symbolic link; the lock is only ever a file written by "
                    "ued: remove the link (its target is left alone) and run again"
                ) from None
            raise RunFolderError(f"{self.path}: cannot open the lock ({err.strerror})") from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise RunFolderError(
                f"{self.path} is {describe(mode)}, not a lock file; remove it and run again"
            )
        os.set_blocking(fd, True)
        return fd

    def acquire(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as err:
                os.close(fd)
                if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                holder = self._read()
                raise RunFolderError(
                    f"run.dir={self.path.parent} is in use by another training process "
                    f"({_describe(holder)}); wait for it, stop it, or choose another run.dir"
                ) from None
            # The holder may have removed the file between our open and flock: retry.
            try:
                same = os.lstat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        old = self._read()  # left by an owner that died without releasing: stale
        if old:
            print(f"[ued] taking over a stale lock in {self.path.parent} ({_describe(old)})",
                  file=sys.stderr)  # fmt: skip
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def results_in(run_dir: Path) -> list[str]:
    """The names of earlier results in ``run_dir`` (empty folders do not count)."""
    found = []
    for name in RESULTS:
        path = run_dir / name
        if path.is_file() or (path.is_dir() and any(path.iterdir())):
            found.append(name)
    return found


def move_aside(run_dir: Path) -> Path:
    """Moves everything in ``run_dir`` but the lock to a new sibling ``<name>.old-<time>``."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = run_dir.with_name(f"{run_dir.name}.old-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = run_dir.with_name(f"{run_dir.name}.old-{stamp}-{n}")
    target.mkdir()
    for entry in run_dir.iterdir():
        if entry.name != LOCK_NAME:
            entry.rename(target / entry.name)
    return target


def prepare(run_dir: Path, resume: bool, overwrite: bool) -> Path | None:
    """Makes ``run_dir`` ready for a run that starts afresh (``resume``: because no usable
    checkpoint is left); the caller holds its lock. Returns where old contents were moved
    with ``overwrite``, else None.

    Raises:
        RunFolderError: the folder holds results this run would clobber; the message names
            them and the ways to continue.
    """
    found = results_in(run_dir)
    if not found:
        return None
    if overwrite:
        target = move_aside(run_dir)
        print(f"[ued] run.overwrite: moved the earlier contents of {run_dir} to {target}",
              file=sys.stderr)  # fmt: skip
        return target
    why = "run.resume=true but it has no usable checkpoint" if resume else "this is a fresh run"
    raise RunFolderError(
        f"run.dir={run_dir} holds results of an earlier run ({', '.join(found)}) and {why}. "
        "Nothing was changed. Continue that run with run.resume=true (it needs a checkpoint), "
        "pass run.overwrite=true to move the old contents aside to a "
        f"{run_dir.name}.old-<time> folder, or choose another run.dir"
    )


def open_run(cfg: Config, run_dir: Path):
    """The checkpointer and the snapshot to resume (or None) of a locked run folder, after
    refusing to clobber earlier results (``ued.host.run_dir.prepare``) or to write through what
    is not a regular file (``check_entries``)."""
    check_entries(run_dir)
    if not cfg.run.resume:
        prepare(run_dir, False, cfg.run.overwrite)
    ckpt = Checkpointer(run_dir / "checkpoints", cfg.run.keep_checkpoints)
    if not cfg.run.resume:
        return ckpt, None
    snapshot = ckpt.load_latest()
    if snapshot is None:
        ckpt.close()
        prepare(run_dir, True, cfg.run.overwrite)
        message = f"run.resume: no checkpoint in {ckpt.directory}; starting afresh"
        warnings.warn(message, RuntimeWarning, stacklevel=4)
        ckpt = Checkpointer(run_dir / "checkpoints", cfg.run.keep_checkpoints)
    return ckpt, snapshot


def restore_checkpoint_config(ckpt: Checkpointer | None, cfg: Config, run_dir) -> str:
    """After a non-finite stop: ``config.yaml`` goes back to the config that trained the
    last good checkpoint (the failed settings go to ``config.failed.yaml``); returns where
    that checkpoint is, for the message."""
    if ckpt is None:
        return "no checkpoint was written"
    ckpt.wait()
    steps = ckpt.steps
    if not steps:
        return f"no checkpoint in {ckpt.directory}"
    config_lib.dump(cfg, run_dir / "config.failed.yaml")
    saved = ckpt.config_of(steps[-1])
    if saved is not None:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
    return (
        f"the last good checkpoint is {ckpt.directory / str(steps[-1])} (its config is "
        f"config.yaml; this run's is config.failed.yaml)"
    )
