"""Domain randomisation: every step trains on fresh levels from the generator."""

from __future__ import annotations

import dataclasses

from ued.curricula.base import Context, full_plan, generate


@dataclasses.dataclass(frozen=True)
class DomainRandomization:
    ctx: Context

    def init(self, key):
        return ()

    def propose(self, key, cstate, student):
        return cstate, generate(self.ctx, key, self.ctx.num_envs), full_plan(self.ctx.num_envs)

    def update(self, key, cstate, plan, levels, rollout, student):
        return cstate, {}


def make_dr(ctx: Context) -> DomainRandomization:
    return DomainRandomization(ctx)
