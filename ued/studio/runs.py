"""Reading run folders for the studio, read-only and without disturbing a trainer.

A run folder is found by its ``config.yaml``; its status is ``running`` while a live
process holds its lock (``RUN/.lock``, ``ued.host.run_dir.RunLock``), else the ``status`` of its
``summary.json`` (``finished`` or ``interrupted``), else ``stopped`` (ended without a summary:
a crash or an early stop). Checkpoints are read straight from their step folders (never
through an orbax manager, which could tidy the trainer's folder). A step is first pinned:
its files are hard-linked into a private folder (copied where links cannot be made), so a
trainer that saves every fraction of a second and removes old steps cannot pull a step away
mid-read; one removed before it is pinned sends the reader back to the newest listing.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ued.files.safe_io import open_capped, read_capped
from ued.human import inbox as inbox_lib

MAX_METRIC_ROWS = 20_000  # rows one metrics request returns at most
MAX_SMALL_FILE = 2**20  # config.yaml, summary.json and the lock are read up to this size
NO_CAP = 2**40  # metrics.jsonl: any size, but only a regular file (never a FIFO or device)


def _small(path: Path, nofollow: bool = False) -> bytes:
    """A small file of a run folder (ValueError or OSError when it is not a regular file of
    at most ``MAX_SMALL_FILE`` bytes: a FIFO there must not stall the server)."""
    return read_capped(path, MAX_SMALL_FILE, path.name, nofollow=nofollow)


def find_runs(root: Path) -> dict[str, Path]:
    """Run folders by name: ``root`` itself when it is one, else its subfolders that are
    (one level deep). Names are folder names; requests look runs up here, never by path."""
    root = Path(root).resolve()
    if (root / "config.yaml").is_file():
        return {root.name: root}
    if not root.is_dir():
        return {}
    return {
        p.name: p
        for p in sorted(root.iterdir())
        if p.is_dir() and not p.name.startswith(".") and (p / "config.yaml").is_file()
    }


def _lock_alive(run_dir: Path) -> bool:
    try:
        info = json.loads(_small(run_dir / ".lock", nofollow=True) or b"{}")
    except (OSError, ValueError, RecursionError):
        return False
    if not isinstance(info, dict):
        return False
    pid = info.get("pid")
    if not isinstance(pid, int) or info.get("host") != socket.gethostname():
        return bool(info)  # another machine's lock: trust it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_config(run_dir: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(_small(run_dir / "config.yaml").decode("utf-8"))
    except (OSError, ValueError, yaml.YAMLError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def read_metrics(run_dir: Path, since: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Rows of ``metrics.jsonl`` from line ``since`` on, and the next line number (a line
    being written is left for the next call)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return [], 0
    rows, n = [], 0
    try:
        stream, _ = open_capped(path, NO_CAP, "metrics file")
    except (OSError, ValueError):
        return [], since
    with stream:
        for n, raw in enumerate(stream, start=1):
            if n <= since:
                continue
            line = raw.decode("utf-8", errors="replace")
            if not line.endswith("\n"):
                return rows, n - 1
            try:
                rows.append(json.loads(line))
            except (ValueError, RecursionError):
                rows.append({})
            if len(rows) >= MAX_METRIC_ROWS:
                return rows, n
    return rows, max(n, since)


def tail_rows(run_dir: Path, nbytes: int = 256 * 1024) -> list[dict[str, Any]]:
    """The complete rows in the last ``nbytes`` of ``metrics.jsonl`` (cheap on long runs)."""
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    try:
        f, size = open_capped(path, NO_CAP, "metrics file")
    except (OSError, ValueError):
        return []
    with f:
        f.seek(max(0, size - nbytes))
        data = f.read(nbytes).decode("utf-8", errors="replace")
    lines = data.split("\n")
    if size > nbytes:
        lines = lines[1:]  # the first may be cut
    rows = []
    for line in lines[:-1]:  # the last is empty or still being written
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def run_summary(name: str, run_dir: Path) -> dict[str, Any]:
    """Name, status, progress and the main config keys of one run."""
    cfg = read_config(run_dir)
    running = _lock_alive(run_dir)
    status = "running" if running else "stopped"
    summary_path = run_dir / "summary.json"
    if not running and summary_path.exists():
        with contextlib.suppress(OSError, ValueError, RecursionError, AttributeError):
            status = str(json.loads(_small(summary_path)).get("status", status))
    last = next((r for r in reversed(tail_rows(run_dir)) if "env_steps" in r), {})
    run = cfg.get("run", {}) or {}
    total = run.get("total_env_steps") or 0
    done = last.get("env_steps", 0)
    return {
        "name": name,
        "status": status,
        "family": (cfg.get("env") or {}).get("family"),
        "curriculum": (cfg.get("curriculum") or {}).get("name"),
        "env_steps": done,
        "total_env_steps": total,
        "progress": min(1.0, done / total) if total else 0.0,
        "updates": last.get("updates", 0),
        "num_seeds": run.get("num_seeds", 1),
        "pending": len(inbox_lib.pending(run_dir)),
        "config": cfg,
    }


# --- checkpoints --------------------------------------------------------------------------


def checkpoint_steps(run_dir: Path) -> list[int]:
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    steps = [int(p.name) for p in folder.iterdir() if p.name.isdigit() and p.is_dir()]
    return sorted(steps)


class Vanished(ValueError):
    """The step folder was removed (the trainer keeps only its newest few) before it was
    pinned: list the steps again."""


READ_ROUNDS = 20  # listings tried while steps keep vanishing under a fast trainer


def pin_step(step_dir: Path, into: Path) -> None:
    """Hard-links every file of ``step_dir`` under ``into`` (copies where a link cannot be
    made, e.g. another filesystem), keeping the layout.

    Raises:
        Vanished: the folder or one of its files was removed meanwhile.
        ValueError: the folder holds something other than folders and regular files.
    """
    try:
        entries = sorted(step_dir.rglob("*"))
        if not entries:
            raise Vanished(f"{step_dir}: empty or gone")
        for src in entries:
            dst = into / src.relative_to(step_dir)
            if src.is_symlink() or not (src.is_dir() or src.is_file()):
                raise ValueError(f"{src}: not a regular file or folder")
            if src.is_dir():
                dst.mkdir(parents=True, exist_ok=True)
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except OSError as err:
                if err.errno == errno.ENOENT:
                    raise
                shutil.copyfile(src, dst)
    except FileNotFoundError as err:
        raise Vanished(f"{step_dir}: removed while it was pinned") from err


def read_step(step_dir: Path) -> tuple[list[np.ndarray], dict[str, Any]]:
    """The leaves and metadata of one checkpoint step folder, verified by its digest.

    Raises:
        Vanished: the folder was removed before it could be pinned.
        ValueError: the folder is incomplete, unreadable or does not match its digest.
    """
    import orbax.checkpoint as ocp

    from ued.host.checkpoint import digest

    with tempfile.TemporaryDirectory(prefix="ued-studio-step-") as scratch:
        pinned = Path(scratch) / step_dir.name
        pin_step(step_dir, pinned)
        try:
            meta = json.loads((pinned / "meta" / "metadata").read_text())
            target = {
                f"leaf_{i:05d}": np.zeros(shape, np.dtype(dtype))
                for i, (_, shape, dtype, *_) in enumerate(meta["leaves"])
            }
            with ocp.StandardCheckpointer() as reader:
                tree = reader.restore(pinned / "state", target)
        except Exception as err:  # incomplete or damaged: the caller tries an older one
            raise ValueError(f"{step_dir}: unreadable ({type(err).__name__}: {err})") from err
        leaves = [np.asarray(tree[f"leaf_{i:05d}"]) for i in range(len(target))]
    if digest(leaves) != meta.get("digest"):
        raise ValueError(f"{step_dir}: the data do not match the recorded digest")
    return leaves, meta


class RunModel:
    """One run's experiment and its newest checkpoint, cached by step (thread-safe)."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.lock = threading.RLock()
        self.exp = None
        self._config: dict[str, Any] | None = None
        self.step: int | None = None
        self.state = None
        self.meta: dict[str, Any] = {}
        self.evaluators: dict[int, Any] = {}
        self.episode_fn = None
        self.located: tuple[int, dict[str, Any]] | None = None  # (step, levels by text)
        self.unreadable: str | None = None  # why the last latest() found no readable step

    def experiment(self):
        """The run's experiment, built from ``config.yaml`` (rebuilt if it changes)."""
        with self.lock:
            cfg = read_config(self.run_dir)
            if self.exp is None or cfg != self._config:
                from ued.config import config as config_lib
                from ued.step.experiment import build

                self.exp = build(config_lib.from_dict(cfg))
                self._config = cfg
                self.evaluators, self.episode_fn, self.located = {}, None, None
            return self.exp

    def latest(self):
        """``(step, state, meta)`` of the newest readable checkpoint, or None (then
        ``self.unreadable`` says why when step folders exist but none could be read)."""
        with self.lock:
            self.unreadable = None
            for _ in range(READ_ROUNDS):
                steps = checkpoint_steps(self.run_dir)
                if self.step is not None and steps and steps[-1] == self.step:
                    return self.step, self.state, self.meta
                read = self._read_newest(steps)
                if read != "vanished":
                    return read
            self.unreadable = f"steps kept vanishing while read ({READ_ROUNDS} listings)"
            return None

    def _read_newest(self, steps: list[int]):
        """The newest readable of ``steps``, None, or "vanished" to list them again."""
        for step in reversed(steps):
            try:
                leaves, meta = read_step(self.run_dir / "checkpoints" / str(step))
            except Vanished:
                return "vanished"  # newer steps have been saved meanwhile
            except ValueError as err:
                self.unreadable = str(err)
                continue
            from ued.config import config as config_lib
            from ued.host.checkpoint import into_state
            from ued.step.experiment import build
            from ued.step.parallel import init_shapes

            exp = self.experiment()
            if meta.get("config") != self._config:
                exp = build(config_lib.from_dict(meta["config"]))
            self.state = into_state(init_shapes(exp), leaves)
            self.step, self.meta = step, meta
            return self.step, self.state, self.meta
        return None
