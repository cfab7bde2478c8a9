"""Curricula by name. Adding one: a module with ``make_<name>(ctx) -> Curriculum`` and an
entry here."""

from __future__ import annotations

from collections.abc import Callable

from ued.curricula.base import Context, Curriculum, Plan
from ued.curricula.dr import make_dr
from ued.curricula.paired import make_paired
from ued.curricula.plr import make_accel, make_plr, make_robust_plr
from ued.curricula.sfl import make_sfl

CURRICULA: dict[str, Callable[[Context], Curriculum]] = {
    "dr": make_dr,
    "plr": make_plr,
    "robust_plr": make_robust_plr,
    "accel": make_accel,
    "paired": make_paired,
    "sfl": make_sfl,
}


def make_curriculum(name: str, ctx: Context) -> Curriculum:
    if name not in CURRICULA:
        raise KeyError(f"unknown curriculum {name!r}; known curricula: {sorted(CURRICULA)}")
    return CURRICULA[name](ctx)


__all__ = ["CURRICULA", "Context", "Curriculum", "Plan", "make_curriculum"]
