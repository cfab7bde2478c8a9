"""The options of the ``programs`` curriculum and their checks against the run."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import jax
import numpy as np

from ued import scoring
from ued.curricula.base import Deps
from ued.options import ConfigError, option

WHERE = "curriculum.options"


def _scores_ok(weights) -> bool:
    return all(
        name in scoring.SCORES and isinstance(w, (int, float)) and not isinstance(w, bool)
        for name, w in weights.items()
    )


def _bounds_ok(bounds) -> bool:
    def pair(v):
        return (
            isinstance(v, (list, tuple))
            and len(v) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)
            and v[0] <= v[1]
        )

    return all(isinstance(k, str) and pair(v) for k, v in bounds.items())


def _names_ok(names) -> bool:
    return all(isinstance(n, str) for n in names) and len(set(names)) == len(names)


@dataclasses.dataclass(frozen=True)
class ProgramsOptions:
    # The archive and the batch split (shapes of the state: resume refuses a change).
    capacity: int = option(64, ge=1, resume="refuse")  # programs the archive holds
    archive_programs: int = option(4, ge=0, resume="refuse")  # archive programs per step
    new_programs: int = option(4, ge=1, resume="refuse")  # new programs per step
    mutate_prob: float = option(0.7, ge=0, le=1)  # a new program mutates an archive one
    mutation_scale: float = option(0.1, gt=0, le=1)  # std, fraction of each dim's range
    # Learning potential of a level: the per-level score (may be {}) plus `learnability`
    # x p (1 - p) of its program's pooled success rate p.
    score: dict = option(
        {"positive_value_loss": 1.0},
        check=_scores_ok,
        allowed=f"a mapping of score names from {sorted(scoring.SCORES)} to numbers",
    )
    learnability: float = option(1.0, ge=0)
    lp_ema: float = option(0.3, gt=0, le=1)  # weight of this step in a program's estimate
    age_decay: float = option(0.99, gt=0, le=1)  # fitness x age_decay ** updates unseen
    spread_weight: float = option(0.0)  # fitness + spread_weight x spread (optimism)
    # Selection (PLR's rank prioritisation and staleness) and diversity.
    temperature: float = option(0.3, gt=0)
    staleness_coef: float = option(0.3, ge=0, le=1)
    novelty_weight: float = option(0.1, ge=0)  # selection bonus per unit of novelty
    grid_weight: float = option(0.25, ge=0)  # insertion bonus for covering a grid cell
    grid_descriptors: tuple = option(
        (), check=_names_ok, allowed="a list of distinct descriptor names (empty: all)"
    )
    grid_resolution: int = option(4, ge=1)
    # Grounding: constraints and given levels.
    min_solvable: float = option(0.0, ge=0, le=1)
    descriptor_bounds: dict = option(
        {}, check=_bounds_ok, allowed="a mapping of descriptor names to [low, high]"
    )
    constraint_mode: str = option("filter", choices=("filter", "penalty"))
    constraint_penalty: float = option(1.0, ge=0)  # fitness - penalty x violation
    grounding_file: str = option("", allowed="a level file of the family, or empty")
    grounding_fraction: float = option(0.0, ge=0, lt=1, resume="refuse")
    grounding_capacity: int = option(64, ge=0, resume="refuse")
    # Specification evolution: widen the space after `plateau_window` updates without the
    # best fitness improving by more than `min_improvement` (0: never widen).
    plateau_window: int = option(50, ge=0)
    min_improvement: float = option(0.0, ge=0)
    start_stage: int = option(0, ge=0)


def check_options(options: ProgramsOptions, deps: Deps) -> dict:
    """The curriculum's derived parts; a ConfigError naming the key for what does not fit."""
    family, env = deps.family, deps.env
    if family.programs is None:
        raise ConfigError(
            f"curriculum.name=programs needs a family with a program space; family "
            f"{family.name!r} declares none (see docs/adding_a_program_space.md)"
        )
    space = family.programs(env)
    o = options
    p = o.archive_programs + o.new_programs
    g = int(round(o.grounding_fraction * deps.num_envs)) if o.grounding_capacity else 0
    if deps.num_envs - g < p:
        raise ConfigError(
            f"{WHERE}.archive_programs + new_programs = {p} programs need at least as many "
            f"envs; ppo.num_envs={deps.num_envs} leaves {deps.num_envs - g} after grounding"
        )
    if not o.score and not o.learnability:
        raise ConfigError(f"{WHERE}.score is empty and learnability=0: nothing scores levels")
    score_fn = scoring.make_score(o.score) if o.score else None
    names = list(space.descriptor_names)
    for key, given in (
        ("grid_descriptors", o.grid_descriptors),
        ("descriptor_bounds", o.descriptor_bounds),
    ):
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise ConfigError(
                f"{WHERE}.{key}: {unknown[0]!r} is not a descriptor of family "
                f"{family.name!r}; allowed: {names}"
            )
    grid = tuple(names.index(n) for n in o.grid_descriptors) or tuple(range(len(names)))
    if o.grid_resolution ** len(grid) > 1_000_000:
        raise ConfigError(
            f"{WHERE}.grid_resolution={o.grid_resolution} over {len(grid)} descriptors makes "
            "more than 1e6 cells; choose fewer grid_descriptors or a lower resolution"
        )
    bounds = np.array([[-math.inf, math.inf]] * len(names), np.float32)
    for name, (lo, hi) in o.descriptor_bounds.items():
        bounds[names.index(name)] = (lo, hi)
    grounding = None
    if o.grounding_file:
        path = Path(o.grounding_file)
        try:
            grounding = family.read_levels(env, path)
        except (OSError, ValueError) as err:
            raise ConfigError(f"{WHERE}.grounding_file={o.grounding_file!r}: {err}") from None
        count = jax.tree.leaves(grounding)[0].shape[0]
        if count > o.grounding_capacity:
            raise ConfigError(
                f"{WHERE}.grounding_file holds {count} levels, more than "
                f"grounding_capacity={o.grounding_capacity}"
            )
    elif o.grounding_fraction and not o.grounding_capacity:
        raise ConfigError(f"{WHERE}.grounding_fraction > 0 needs grounding_capacity >= 1")
    return {
        "space": space,
        "score_fn": score_fn,
        "grid": grid,
        "bounds": bounds,
        "grounding_levels": grounding,
    }
