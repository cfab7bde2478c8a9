"""Domain randomisation: every step trains on fresh levels from the generator."""

from __future__ import annotations

import dataclasses

from ued.curricula import register
from ued.curricula.base import Deps, full_plan, generate


@dataclasses.dataclass(frozen=True)
class DROptions:
    """DR takes no options."""


@dataclasses.dataclass(frozen=True)
class DomainRandomization:
    deps: Deps
    groups: tuple[str, ...] = ("new",)

    def init(self, key):
        return ()

    def propose(self, key, cstate, student):
        n = self.deps.num_envs
        return cstate, generate(self.deps.generator, key, n), full_plan(n)

    def update(self, key, cstate, plan, levels, rollout, student):
        return cstate, {}


@register("dr", DROptions)
def make_dr(options: DROptions, deps: Deps) -> DomainRandomization:
    return DomainRandomization(deps)
