"""The suite file: experiments x seeds at one budget, and the level sets to score.

A suite file (YAML) looks like::

    name: maze_cpu_small
    env_steps: 2000000        # student env steps per seed (run.total_env_steps), or:
    # budget: {student_updates: 250}   # student gradient updates per seed (as dcd's ACCEL)
    seeds: 5                  # seeds first_seed, first_seed + 1, ...
    first_seed: 0
    seeds_per_run: 0          # seeds trained in one program (run.num_seeds); 0 = all
    baseline: dr              # label compared against (probability of improvement)
    overrides: [run.checkpoint_every=50]   # for every experiment
    experiments:
      - {label: dr, config: ../maze_dr.yaml}
      - {label: plr, config: ../maze_plr.yaml, overrides: [ppo.lr=3e-4]}
    evaluation:
      episodes: 10
      seed: 0
      independent_play: true  # a second play of every level, for the CVaR (ued.evaluation.stats)
      sets:
        - {name: named, kind: named, group: out_of_distribution}
        - {name: random_walls, kind: random, generator: random_walls, count: 100,
           options: {num_walls: 25}, group: in_distribution}
        - {name: standard, kind: file, path: ../../envs/maze/levels/standard.txt,
           env: {max_size: 13, max_steps: 250}, group: out_of_distribution}

Every set names its ``group``, ``in_distribution`` (the levels the baseline trains on, or a
mild shift of its generator) or ``out_of_distribution``; the report shows the groups apart,
in-distribution first. A set's ``env`` holds env options for its evaluation only (the
family's env options, e.g. the maze's ``max_size`` and the horizon ``max_steps``): the
trained network plays the levels in that env (``ued.config.eval_setup.eval_env``), so a 9x9-trained
agent can be scored on the 13x13 standard mazes at the papers' horizon. ``sampled`` says
whether the set's levels are a sample of a larger population (default: true for random sets,
false otherwise): its intervals then resample the levels too (``ued.evaluation.stats``, two-level).

Paths are relative to the suite file. The suite owns ``run.seed``, ``run.num_seeds``,
``run.total_env_steps``, ``run.dir`` and ``run.resume``; overrides may not set them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ued.config.config import ConfigError, coerce, parse_override, read_yaml

SUITE_OWNED = ("run.seed", "run.num_seeds", "run.total_env_steps", "run.dir", "run.resume")
SET_KINDS = ("named", "file", "random")
GROUPS = ("in_distribution", "out_of_distribution")
BUDGET_KINDS = ("env_steps", "student_updates")


@dataclasses.dataclass(frozen=True)
class ExperimentSpec:
    label: str
    config: str  # experiment file, resolved against the suite file's folder
    overrides: tuple = ()


@dataclasses.dataclass(frozen=True)
class EvalSet:
    name: str
    kind: str  # one of SET_KINDS
    path: str = ""  # kind file: a level text file
    generator: str = ""  # kind random: a generator of the family
    count: int = 100  # kind random: levels kept (solvable ones only)
    options: dict = dataclasses.field(default_factory=dict)  # kind random: generator options
    seed: int = 0  # kind random: which levels
    group: str = ""  # one of GROUPS (required)
    env: dict = dataclasses.field(default_factory=dict)  # env options of this set's evaluation
    sampled: object = None  # bool; None: true for kind random
    note: str = ""  # shown under the set's table

    @property
    def levels_sampled(self) -> bool:
        return self.kind == "random" if self.sampled is None else bool(self.sampled)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    episodes: int = 10
    seed: int = 0  # key of the evaluation episodes, shared by every experiment
    # A second, independent play of every level (the CVaR ranks on one, measures on the other).
    independent_play: bool = True
    sets: tuple = ()


@dataclasses.dataclass(frozen=True)
class Suite:
    name: str
    experiments: tuple
    env_steps: int = 0  # student env steps per seed; or budget: {student_updates: N}
    budget: dict = dataclasses.field(default_factory=dict)
    seeds: int = 3
    first_seed: int = 0
    seeds_per_run: int = 0
    baseline: str = "dr"
    overrides: tuple = ()
    evaluation: Evaluation = dataclasses.field(default_factory=Evaluation)
    root: str = "."  # the suite file's folder

    @property
    def budget_kind(self) -> str:
        return "student_updates" if "student_updates" in self.budget else "env_steps"

    @property
    def budget_value(self) -> int:
        return int(self.budget.get(self.budget_kind, self.env_steps))

    def seed_groups(self) -> list[tuple[int, int]]:
        """(first seed, seed count) of each run folder of one experiment."""
        size = self.seeds_per_run or self.seeds
        seeds = range(self.first_seed, self.first_seed + self.seeds)
        return [(s, min(size, self.first_seed + self.seeds - s)) for s in seeds[::size]]

    def resolve(self, path: str) -> Path:
        return (Path(self.root) / path).resolve()


def _fields(cls, data: Any, where: str, required: tuple = ()) -> dict[str, Any]:
    """``data`` checked against ``cls``'s fields: unknown or missing keys name themselves."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {data!r}")
    names = [f.name for f in dataclasses.fields(cls) if f.name != "root"]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ConfigError(f"unknown key {where}.{unknown[0]}; allowed: {names}")
    for key in required:
        if key not in data:
            raise ConfigError(f"{where}.{key} is required")
    types = {f.name: f.type for f in dataclasses.fields(cls)}
    kinds = {"int": int, "str": str, "dict": dict, "tuple": tuple, "bool": bool}
    return {
        k: coerce(f"{where}.{k}", v, kinds[types[k]]) if types[k] in kinds else v
        for k, v in data.items()
    }


def _overrides(values: tuple, where: str) -> tuple:
    for i, text in enumerate(values):
        if not isinstance(text, str):
            raise ConfigError(f"{where}[{i}] must be a 'section.key=value' string, got {text!r}")
        key = ".".join(parse_override(text)[0])
        if key in SUITE_OWNED:
            raise ConfigError(
                f"{where}[{i}]: {key} is set by the suite (env_steps, seeds, seeds_per_run, "
                f"--out); the suite owns {list(SUITE_OWNED)}"
            )
    return tuple(values)


def _eval_set(data: Any, where: str) -> EvalSet:
    kwargs = _fields(EvalSet, data, where, ("name", "kind"))
    kind = kwargs["kind"]
    if kind not in SET_KINDS:
        raise ConfigError(f"{where}.kind={kind!r} is not one of {list(SET_KINDS)}")
    needs = {"file": "path", "random": "generator"}.get(kind)
    if needs and not kwargs.get(needs):
        raise ConfigError(f"{where}: a {kind} set needs {needs}")
    if kwargs.get("count", 1) < 1:
        raise ConfigError(f"{where}.count must be >= 1, got {kwargs['count']}")
    if kwargs.get("group") not in GROUPS:
        raise ConfigError(
            f"{where}.group={kwargs.get('group')!r}: every set says whether it is "
            f"{GROUPS[0]} or {GROUPS[1]}"
        )
    if kwargs.get("sampled") is not None:
        kwargs["sampled"] = coerce(f"{where}.sampled", kwargs["sampled"], bool)
    return EvalSet(**kwargs)


def _budget(kwargs: dict) -> None:
    """One budget: ``env_steps: N`` or ``budget: {env_steps: N}`` or ``{student_updates: N}``."""
    budget = dict(kwargs.get("budget") or {})
    unknown = sorted(set(budget) - set(BUDGET_KINDS))
    if unknown or len(budget) > 1:
        raise ConfigError(
            f"suite.budget must be one of {{env_steps: N}} or {{student_updates: N}}, got {budget}"
        )
    if budget and kwargs.get("env_steps"):
        raise ConfigError("suite: give env_steps or budget, not both")
    if not budget and "env_steps" not in kwargs:
        raise ConfigError("suite.env_steps (or suite.budget) is required")
    for key, value in budget.items():
        budget[key] = coerce(f"suite.budget.{key}", value, int)
        if budget[key] < 1:
            raise ConfigError(f"suite.budget.{key} must be >= 1, got {budget[key]}")
    if "env_steps" in budget:  # one spelling of the env-step budget
        kwargs["env_steps"] = budget.pop("env_steps")
    kwargs["budget"] = budget


def from_dict(data: Any, root: str | Path = ".") -> Suite:
    """A validated ``Suite``; a ``ConfigError`` names the first bad key."""
    kwargs = _fields(Suite, data, "suite", ("name", "experiments"))
    _budget(kwargs)
    checked = ("seeds",) if kwargs["budget"] else ("env_steps", "seeds")
    for key in checked:
        if key in kwargs and kwargs[key] < 1:
            raise ConfigError(f"suite.{key} must be >= 1, got {kwargs[key]}")
    if kwargs.get("seeds_per_run", 0) < 0:
        raise ConfigError(f"suite.seeds_per_run must be >= 0, got {kwargs['seeds_per_run']}")
    kwargs["overrides"] = _overrides(kwargs.get("overrides", ()), "suite.overrides")
    experiments = []
    for i, item in enumerate(kwargs["experiments"]):
        where = f"suite.experiments[{i}]"
        exp = _fields(ExperimentSpec, item, where, ("label", "config"))
        exp["overrides"] = _overrides(exp.get("overrides", ()), f"{where}.overrides")
        if not exp["label"].replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"{where}.label={exp['label']!r}: use letters, digits, - and _")
        experiments.append(ExperimentSpec(**exp))
    labels = [e.label for e in experiments]
    if not labels:
        raise ConfigError("suite.experiments is empty")
    if len(set(labels)) != len(labels):
        raise ConfigError(f"suite.experiments: labels must be unique, got {labels}")
    kwargs["experiments"] = tuple(experiments)
    evaluation = _fields(Evaluation, kwargs.get("evaluation", {}), "suite.evaluation")
    sets = evaluation.get("sets", ())
    evaluation["sets"] = tuple(
        _eval_set(s, f"suite.evaluation.sets[{i}]") for i, s in enumerate(sets)
    )
    names = [s.name for s in evaluation["sets"]]
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"suite.evaluation.sets: need at least one, uniquely named; got {names}")
    if evaluation.get("episodes", 1) < 1:
        raise ConfigError(f"suite.evaluation.episodes must be >= 1, got {evaluation['episodes']}")
    kwargs["evaluation"] = Evaluation(**evaluation)
    suite = Suite(**kwargs, root=str(root))
    if suite.baseline not in labels:
        raise ConfigError(f"suite.baseline={suite.baseline!r} is not one of the labels {labels}")
    return suite


def load(path: str | Path) -> Suite:
    """Reads and validates a suite file."""
    path = Path(path)
    data = read_yaml(path, "suite file")  # a ConfigError naming the file and line
    try:
        return from_dict(data, path.parent)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
