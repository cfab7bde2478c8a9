"""The options of the ``programs`` curriculum and their checks against the run.

The checks build the curriculum's parts: the program space (the family's own, or one
registered by name, e.g. the maze's ``latent`` space), the score, the descriptor grid and
constraints, the grounding levels and the specification (``ued.core.program_spec``)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import jax
import numpy as np

from envs import programs as programs_lib
from ued.config.options import ConfigError, call_with_options, option
from ued.core import scoring
from ued.core.program_spec import MODES, SIGNALS, Specification, dims_with_effect
from ued.core.surrogate import Surrogate
from ued.curricula.base import Deps

WHERE = "curriculum.options"


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
class ModelOptions:
    """The model in the loop (``spec: model``): the surrogate and the widening's choice."""

    step: float = option(0.125, gt=0, le=1)  # a widening: fraction of the dim's hard range
    kappa: float = option(1.0, ge=0)  # optimism bonus, in posterior standard deviations
    samples: int = option(32, ge=1)  # Monte Carlo programs per candidate slab
    features: int = option(64, ge=1, resume="refuse")  # random Fourier features (state shape)
    lengthscale: float = option(0.3, gt=0)  # of the features, in units of the hard range
    prior_precision: float = option(1.0, gt=0)
    noise_std: float = option(0.05, gt=0)  # noise floor of the LP observations
    forget: float = option(0.98, gt=0, le=1)  # per-update discount of old observations


@dataclasses.dataclass(frozen=True)
class ProgramsOptions:
    # The program space: the family's own (""), or one registered for the family by name
    # (envs.programs.register_space, e.g. the maze's "latent"), built with `space_options`.
    program_space: str = option("", resume="refuse")
    space_options: dict = option({}, resume="refuse")
    # The archive and the batch split (shapes of the state: resume refuses a change).
    capacity: int = option(64, ge=1, resume="refuse")  # programs the archive holds
    # hybrid: capacity slots, a new program competes with the least valuable slot anywhere
    # (plus grid_weight for covering a cell); elites: classic MAP-Elites, one elite per grid
    # cell (capacity must equal the number of cells), replaced only by a fitter program.
    insertion: str = option("hybrid", choices=("hybrid", "elites"), resume="refuse")
    archive_programs: int = option(4, ge=0, resume="refuse")  # archive programs per step
    new_programs: int = option(4, ge=1, resume="refuse")  # new programs per step
    mutate_prob: float = option(0.7, ge=0, le=1)  # a new program mutates an archive one
    mutation_scale: float = option(0.1, gt=0, le=1)  # std, fraction of each dim's range
    # Learning potential of a level: the per-level score (may be {}) plus `learnability`
    # x p (1 - p) of its program's pooled success rate p.
    score: dict = option(
        {"positive_value_loss": 1.0},
        check=scoring.weights_ok,
        allowed=scoring.WEIGHTS_ALLOWED,
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
    # A finished episode: a new level from the same program (episode), or a replay of the
    # rollout's level (rollout, the behaviour before 0.3).
    resample: str = option("episode", choices=("episode", "rollout"))
    # Specification evolution (ued.core.program_spec). When: learning plateaus, i.e. over
    # `plateau_window` updates the student's success on a fixed probe set of the current
    # bounds rose by at most `min_improvement` (plateau_signal: probe), or the earlier rule,
    # the archive's best fitness not improving by more than `min_improvement`
    # (plateau_signal: fitness). plateau_window 0: never widen.
    plateau_signal: str = option("probe", choices=SIGNALS, resume="refuse")
    plateau_window: int = option(50, ge=0)
    min_improvement: float = option(0.05, ge=0)
    probe_levels: int = option(32, ge=1, resume="refuse")  # programs of the probe set
    probe_every: int = option(10, ge=1, resume="refuse")  # updates between probes
    probe_steps: int = option(0, ge=0)  # steps of a probe rollout (0: ppo.num_steps)
    # Where: the space's fixed ladder of stages, or a model in the loop that moves the bound
    # it predicts to open the most learning potential (`model` options).
    spec: str = option("stages", choices=MODES, resume="refuse")
    start_stage: int = option(0, ge=0)
    model: ModelOptions = option(factory=ModelOptions)


def make_space(options: ProgramsOptions, deps: Deps):
    """The run's program space (see ``program_space``)."""
    family, env, o = deps.family, deps.env, options
    if not o.program_space:
        if family.programs is None:
            raise ConfigError(
                f"curriculum.name=programs needs a family with a program space; family "
                f"{family.name!r} declares none (see docs/adding_a_program_space.md)"
            )
        if o.space_options:
            raise ConfigError(
                f"{WHERE}.space_options is for a named program_space; family "
                f"{family.name!r}'s own space takes none"
            )
        return family.programs(env)
    try:
        factory = programs_lib.space_factory(family.name, o.program_space)
    except KeyError as err:
        raise ConfigError(f"{WHERE}.program_space={o.program_space!r}: {err.args[0]}") from None
    return call_with_options(factory, o.space_options, f"{WHERE}.space_options", env)


def make_spec(options: ProgramsOptions, space) -> Specification:
    o, m = options, options.model
    surrogate = effective = None
    if o.spec == "model":
        surrogate = Surrogate.make(
            space.low,
            space.high,
            num_features=m.features,
            lengthscale=m.lengthscale,
            prior_precision=m.prior_precision,
            noise_std=m.noise_std,
            forget=m.forget,
        )
        effective = dims_with_effect(space)
    return Specification(
        space=space,
        mode=o.spec,
        signal=o.plateau_signal,
        window=o.plateau_window,
        min_improvement=o.min_improvement,
        probe_every=o.probe_every,
        start_stage=o.start_stage,
        step=m.step,
        kappa=m.kappa,
        samples=m.samples,
        surrogate=surrogate,
        effective=effective,
    )


def check_options(options: ProgramsOptions, deps: Deps, space=None) -> dict:
    """The curriculum's derived parts; a ConfigError naming the key for what does not fit.
    ``space`` replaces the configured program space (tests use toy spaces)."""
    family, env = deps.family, deps.env
    space = make_space(options, deps) if space is None else space
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
    cells = o.grid_resolution ** len(grid)
    if cells > 1_000_000:
        raise ConfigError(
            f"{WHERE}.grid_resolution={o.grid_resolution} over {len(grid)} descriptors makes "
            "more than 1e6 cells; choose fewer grid_descriptors or a lower resolution"
        )
    if o.insertion == "elites" and o.capacity != cells:
        raise ConfigError(
            f"{WHERE}.insertion=elites keeps one elite per grid cell: capacity must be the "
            f"number of cells, grid_resolution ** len(grid_descriptors) = {cells} (got "
            f"capacity={o.capacity})"
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
        "spec": make_spec(o, space),
        "score_fn": score_fn,
        "grid": grid,
        "bounds": bounds,
        "grounding_levels": grounding,
    }
