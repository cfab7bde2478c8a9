"""The suite file: experiments x seeds at one env-step budget, and the level sets to score.

A suite file (YAML) looks like::

    name: maze_cpu_small
    env_steps: 2000000        # student env steps per seed (run.total_env_steps)
    seeds: 3                  # seeds first_seed, first_seed + 1, ...
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
      sets:
        - {name: named, kind: named}
        - {name: random_walls, kind: random, generator: random_walls, count: 100,
           options: {num_walls: 25}}
        - {name: mine, kind: file, path: my_levels.txt}

Paths are relative to the suite file. The suite owns ``run.seed``, ``run.num_seeds``,
``run.total_env_steps``, ``run.dir`` and ``run.resume``; overrides may not set them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ued.config import ConfigError, coerce, parse_override, read_yaml

SUITE_OWNED = ("run.seed", "run.num_seeds", "run.total_env_steps", "run.dir", "run.resume")
SET_KINDS = ("named", "file", "random")


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


@dataclasses.dataclass(frozen=True)
class Evaluation:
    episodes: int = 10
    seed: int = 0  # key of the evaluation episodes, shared by every experiment
    sets: tuple = ()


@dataclasses.dataclass(frozen=True)
class Suite:
    name: str
    env_steps: int
    experiments: tuple
    seeds: int = 3
    first_seed: int = 0
    seeds_per_run: int = 0
    baseline: str = "dr"
    overrides: tuple = ()
    evaluation: Evaluation = dataclasses.field(default_factory=Evaluation)
    root: str = "."  # the suite file's folder

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
    kinds = {"int": int, "str": str, "dict": dict, "tuple": tuple}
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
    return EvalSet(**kwargs)


def from_dict(data: Any, root: str | Path = ".") -> Suite:
    """A validated ``Suite``; a ``ConfigError`` names the first bad key."""
    kwargs = _fields(Suite, data, "suite", ("name", "env_steps", "experiments"))
    for key in ("env_steps", "seeds"):
        if kwargs.get(key, 1) < 1:
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
