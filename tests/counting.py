"""Counting how often a traced method actually runs (not how often it is traced)."""

from __future__ import annotations

import jax


def count_runs(monkeypatch, owner: type, name: str) -> list[int]:
    """Patches ``owner.name`` so that every execution inside a compiled program appends to
    the returned list (a ``jax.debug.callback``): a branch XLA skips adds nothing."""
    runs: list[int] = []
    original = getattr(owner, name)

    def counted(self, *args, **kwargs):
        jax.debug.callback(lambda: runs.append(1))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return runs
