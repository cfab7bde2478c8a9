"""Domain randomisation: every step trains on fresh levels from the generator.

By default (``resample: episode``) an env whose episode ends inside the rollout is reset to
a new level from the generator, as minimax and JaxUED run DR (JaxUED examples/maze_dr.py
resets with its level generator inside the rollout); ``resample: rollout`` keeps one level
per env for the whole rollout, replaying it, as dcd's 25-block DR config does (it runs PLR
with replay probability 0, whose episodes replay their level). The ``levels/*`` metrics describe the
levels each rollout started on.
"""

from __future__ import annotations

import dataclasses

from ued.curricula import register
from ued.curricula.base import Deps, full_plan, generate
from ued.options import option


@dataclasses.dataclass(frozen=True)
class DROptions:
    # A new level at every episode end (the papers), or one per env per rollout.
    resample: str = option("episode", choices=("episode", "rollout"))


@dataclasses.dataclass(frozen=True)
class DomainRandomization:
    deps: Deps
    options: DROptions
    groups: tuple[str, ...] = ("new",)

    @property
    def next_level(self):
        """The generator finished episodes are reset with, or None (replay)."""
        return self.deps.generator if self.options.resample == "episode" else None

    def init(self, key):
        return ()

    def propose(self, key, cstate, student):
        n = self.deps.num_envs
        return cstate, generate(self.deps.generator, key, n), full_plan(n)

    def update(self, key, cstate, plan, levels, rollout, student):
        return cstate, {}


@register("dr", DROptions)
def make_dr(options: DROptions, deps: Deps) -> DomainRandomization:
    return DomainRandomization(deps, options)
