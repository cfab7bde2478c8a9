"""SIGINT/SIGTERM during training: the first finishes the chunk and checkpoints, the second
aborts at once."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any


class StopSignal:
    """Context manager: the first SIGINT/SIGTERM sets ``requested``; a second one aborts."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, verbose: bool = True):
        self.requested: str | None = None
        self.verbose = verbose
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        self.requested = signal.Signals(signum).name
        for sig in self.SIGNALS:  # the next signal gets the default action: abort now
            signal.signal(sig, signal.SIG_DFL)
        if self.verbose:
            print(
                f"\n[ued] {self.requested}: stopping at the end of this chunk (with a "
                "checkpoint) or before training begins; send it again to abort at once",
                file=sys.stderr,
                flush=True,
            )

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Interrupted(Exception):
    """SIGINT/SIGTERM before training began: nothing was written (exit 130 in the CLI)."""
