"""Deadlines that follow a process's progress rather than the wall clock alone.

On a loaded machine a trainer may take minutes to compile (166 s at load 13, against 15 s
on an idle one); a fixed deadline then fails a test whose trainer is merely slow. A
``Progress`` waits as long as the watched processes keep working (their CPU time grows) or
their files grow (a log, ``metrics.jsonl``, new checkpoints), and fails only after
``stall`` seconds without either, or after ``cap`` seconds in all, naming what it waited
for and the last progress it saw.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process (its threads included), or None if unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_size(path: Path) -> int:
    """Bytes and entries under ``path`` (a file or a folder), 0 when missing."""
    try:
        if path.is_file():
            return path.stat().st_size
        return sum(p.stat().st_size + 1 for p in path.rglob("*") if p.exists())
    except OSError:
        return 0


class Stalled(AssertionError):
    pass


class Progress:
    """Waits while ``pids`` use CPU or ``paths`` grow (see the module docstring).

    Args:
        pids: processes whose CPU time counts as progress (a trainer, this process when it
            serves the page).
        paths: files or folders whose growth counts as progress.
        stall: seconds without progress before failing.
        cap: seconds in all before failing, however busy the processes are.
        alive: optional check called while waiting (e.g. that the trainer still runs).
    """

    def __init__(self, pids: Iterable[int], paths: Iterable[Path] = (), stall: float = 120,
                 cap: float = 1800, alive: Callable[[], None] | None = None):  # fmt: skip
        self.pids, self.paths = list(pids), [Path(p) for p in paths]
        self.stall, self.cap, self.alive = stall, cap, alive
        self.start = self.last_progress = time.monotonic()
        self.seen = self._signature()
        self.note = "nothing yet"

    def _signature(self) -> tuple:
        cpu = tuple(round(cpu_seconds(pid) or 0.0, 1) for pid in self.pids)
        return cpu, tuple(tree_size(p) for p in self.paths)

    def tick(self, what: str) -> None:
        """Notes progress since the last call; raises ``Stalled`` past a deadline."""
        if self.alive is not None:
            self.alive()
        now, signature = time.monotonic(), self._signature()
        if signature != self.seen:
            self.seen, self.last_progress = signature, now
            self.note = f"{now - self.start:.0f} s in"
        if now - self.last_progress > self.stall:
            raise Stalled(f"no {what}: no progress for {self.stall:.0f} s (last at {self.note})")
        if now - self.start > self.cap:
            raise Stalled(f"no {what} within {self.cap:.0f} s, though still progressing")

    def wait_for(self, predicate: Callable[[], object], what: str, poll: float = 0.5):
        """Polls ``predicate`` until it is true; returns its value."""
        while True:
            value = predicate()
            if value:
                return value
            self.tick(what)
            time.sleep(poll)

    def expect(self, check: Callable[[], None], what: str) -> None:
        """Retries ``check`` (e.g. a Playwright ``expect`` with a short timeout) while there
        is progress; its last AssertionError is raised with the stall."""
        while True:
            try:
                check()
                return
            except AssertionError as err:
                if isinstance(err, Stalled):
                    raise
                try:
                    self.tick(what)
                except Stalled as stalled:
                    raise Stalled(f"{stalled}; last check: {str(err)[:300]}") from err


@contextlib.contextmanager
def deadline(seconds, fifos=()):
    """Fails (instead of hanging) when the block takes over ``seconds``; opens each FIFO
    for writing at the end so that a reader blocked on it is let go."""

    def fail(*_):
        raise TimeoutError(f"blocked for over {seconds} s")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        for fifo in fifos:
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
