"""A chunk's metrics as log records: per-chunk means, events, the mean over seeds, and the
check that stops a run on a non-finite parameter, loss or gradient norm."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from ued.curricula.base import EVENT_PREFIX
from ued.step.experiment import NONFINITE


class NonFiniteError(FloatingPointError):
    """A parameter, loss or gradient norm became NaN or infinite."""


def summarize_chunk(metrics: dict[str, Any], active: int | None = None) -> dict[str, float]:
    """Mean over the chunk's first ``active`` updates; NaN entries (a branch that did not
    apply) are ignored. The ``nonfinite`` flag is checked, not logged."""
    out = {}
    for key, value in jax.device_get(metrics).items():
        if key == "nonfinite":
            continue
        value = np.asarray(value, dtype=np.float64)[:active]
        finite = value[np.isfinite(value)]
        out[key] = float(finite.mean()) if finite.size else float("nan")
    return out


def chunk_events(metrics: dict[str, Any], first_update: int, active: int) -> list[dict[str, Any]]:
    """``{"updates": u, "event": name}`` for every update ``u`` (1-based, as in the metrics)
    of the chunk whose ``events/<name>`` metric is positive: what a curriculum marks as an
    event (e.g. ``events/widen``, the program space widening)."""
    out = []
    for key, value in metrics.items():
        if key.startswith(EVENT_PREFIX):
            hits = np.flatnonzero(np.asarray(value, np.float64)[:active] > 0)
            out += [
                {"updates": first_update + int(i) + 1, "event": key[len(EVENT_PREFIX) :]}
                for i in hits
            ]
    return sorted(out, key=lambda e: e["updates"])


def mean_record(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The mean over seeds of each numeric entry of per-seed records (NaN-aware), with
    ``seeds`` the seeds' count; a single record is returned as it is."""
    if len(records) <= 1:
        return dict(records[0]) if records else {}
    out: dict[str, Any] = {}
    for key in records[0]:
        if key == "seed":
            continue
        values = np.asarray([r.get(key, np.nan) for r in records], np.float64)
        finite = values[np.isfinite(values)]
        out[key] = float(finite.mean()) if finite.size else float("nan")
    for key in ("updates", "env_steps"):
        if key in out:
            out[key] = int(out[key])
    out["seeds"] = len(records)
    return out


def check_finite(metrics: dict[str, Any], first_update: int, active: int, where: str = "") -> None:
    """Raises ``NonFiniteError`` naming the first update (1-based) whose flag is set
    (``where``, e.g. ``" of seed 3"``, is added after the update)."""
    flags = np.nan_to_num(np.asarray(metrics.get("nonfinite", []), np.float64)[:active])
    bad = np.flatnonzero(flags)
    if bad.size:
        mask = int(flags[bad[0]])
        names = [name for i, name in enumerate(NONFINITE) if mask >> i & 1]
        losses = {k: float(np.asarray(v)[bad[0]]) for k, v in metrics.items() if "loss" in k}
        raise NonFiniteError(
            f"non-finite {' and '.join(names)} at update {first_update + int(bad[0]) + 1}"
            f"{where} (losses then: {losses})"
        )
