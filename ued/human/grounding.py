"""The trainer's chunk-boundary hook that feeds sent levels into the curriculum.

Host code between jitted chunks: the train step keeps its shape. ``Grounding.apply`` takes
the inbox's new messages (``ued.human.inbox``), inserts the accepted levels into the curriculum
state with its ``add_levels`` (``TakesLevels``; one level per call, so one compiled program
serves every message; with ``run.num_seeds > 1`` it is mapped over the seed axis, so every
seed gets the level) and returns the ``grounding/accepted`` and ``grounding/rejected`` counts
the chunk's rows log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax

from ued.core.level_sets import find_slot
from ued.curricula.base import TakesLevels, taken_levels
from ued.human.inbox import Inbox


class Grounding:
    """Sent levels into one run's curriculum (see the module docstring).

    Args:
        runner: the run's ``ued.step.parallel.Runner``.
        run_dir: the run folder (its ``inbox/``).
        done: ids the resumed checkpoint records (its metadata's ``inbox_ids``).
    """

    def __init__(self, runner, run_dir: Path, done=()):
        self.runner = runner
        self.exp = runner.exp
        self.inbox = Inbox(run_dir, done)
        self._add = None
        if isinstance(self.exp.curriculum, TakesLevels):
            add = self.exp.curriculum.add_levels
            self._add = jax.jit(jax.vmap(add, in_axes=(0, None, 0)) if runner.seeded else add)

    def refusal(self) -> str:
        name = self.exp.cfg.curriculum.name
        return f"curriculum {name!r} takes no sent levels with these options (no TakesLevels)"

    def apply(self, state, updates: int) -> tuple[Any, dict[str, float]]:
        """Applies the inbox's new messages to ``state`` after update ``updates``."""
        exp = self.exp
        levels, events = self.inbox.take(exp.family, exp.env, updates)
        if not events:
            return state, {"grounding/accepted": 0.0, "grounding/rejected": 0.0}
        accepted = [e for e in events if e["accepted"]]
        if self._add is None:
            for event in accepted:
                event.update(accepted=False, reason=self.refusal())
            levels = []
        if levels:
            cur = state.curriculum
            for i, level in enumerate(levels):
                key = jax.random.fold_in(jax.random.PRNGKey(exp.cfg.run.seed), updates)
                key = jax.random.fold_in(key, i)
                if self.runner.seeded:
                    key = jax.random.split(key, self.runner.num_seeds)
                cur = self._add(cur, exp.family.stack([level]), key)
            cur = jax.device_put(cur, self.runner.state_sharding())
            state = state.replace(curriculum=cur)
            self._note_slots(cur, levels, accepted)
        self.inbox.commit(events)
        taken = sum(e["accepted"] for e in events)
        return state, {
            "grounding/accepted": float(taken),
            "grounding/rejected": float(len(events) - taken),
        }

    def _note_slots(self, cur, levels, events) -> None:
        """Records in each event where its level now is (seed 0's store), e.g. the buffer
        slot, so the studio can show it was taken in even if it is evicted soon after."""
        if self.runner.seeded:
            cur = jax.tree.map(lambda x: x[0], cur)
        view = taken_levels(self.exp.curriculum, jax.device_get(cur))
        if view is None:
            return
        for event, level in zip(events, levels, strict=True):
            slot = find_slot(view.levels, view.filled, level)
            if slot is not None:
                event["store"], event["slot"] = view.kind, slot

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"inbox_ids": self.inbox.ids_to_save()}

    def has_unsaved(self) -> bool:
        return bool(self.inbox.unsaved)

    def saved(self) -> None:
        """The checkpoint holding ``checkpoint_meta()`` is on disk: file the messages."""
        self.inbox.saved()
