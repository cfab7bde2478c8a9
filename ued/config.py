"""One typed, frozen experiment config: sections env, curriculum, ppo, network, eval, run.

Configs come from YAML files in ``experiments/`` plus dotted ``key=value`` overrides. Unknown
keys and bad values fail here, before anything is compiled, with a message that names the
key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config key or value is wrong; the message names it and what is allowed."""


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    family: str = "maze"
    # Options of the family's env constructor, e.g. {max_size: 13, view_size: 5}.
    options: dict = dataclasses.field(default_factory=dict)
    generator: str = "random_walls"
    generator_options: dict = dataclasses.field(default_factory=lambda: {"num_walls": 25})


@dataclasses.dataclass(frozen=True)
class BufferConfig:
    capacity: int = 4000
    temperature: float = 0.3
    staleness_coef: float = 0.3
    replay_prob: float = 0.5
    min_fill_ratio: float = 0.5
    prioritisation: str = "rank"
    replay_schedule: str = "fixed"
    top_k: int = 100
    dedup: bool = True


@dataclasses.dataclass(frozen=True)
class CurriculumConfig:
    name: str = "dr"
    # Score name -> weight; names from ued.scoring.SCORES.
    score: dict = dataclasses.field(default_factory=lambda: {"max_mc": 1.0})
    buffer: BufferConfig = dataclasses.field(default_factory=BufferConfig)
    # Editor name -> weight (ACCEL); empty means every editor of the family, weight 1.
    editors: dict = dataclasses.field(default_factory=dict)
    num_edits: int = 5
    # ACCEL: seed the search with empty rooms instead of the generator's levels.
    start_from: str = "generator"
    # PLR||/ACCEL||: new, replayed (and edited) levels share one step.
    parallel: bool = False
    # Curriculum-specific options (PAIRED adversary, SFL sampling, ...).
    options: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    num_envs: int = 32
    num_steps: int = 256
    lr: float = 1e-4
    anneal_lr: bool = False
    gamma: float = 0.995
    gae_lambda: float = 0.98
    epochs: int = 5
    num_minibatches: int = 1
    clip_eps: float = 0.2
    clip_value: bool = True
    ent_coef: float = 1e-3
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    normalize_advantages: bool = True


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    # "conv_lstm": the standard maze student (conv over an image observation when there is
    # one, LSTM torso); "mlp": a feed-forward torso. Both read dict or flat observations.
    kind: str = "conv_lstm"
    conv_channels: int = 16
    direction_embedding: int = 5
    lstm_size: int = 256
    head_size: int = 32
    mlp_sizes: tuple = (64, 64)


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    interval: int = 0  # updates between evaluations; 0 = only at the end
    episodes: int = 10
    levels: str = "named"  # "named" or "none"


@dataclasses.dataclass(frozen=True)
class RunConfig:
    seed: int = 0
    total_env_steps: int = 1_000_000
    dir: str = ""
    chunk_updates: int = 10  # updates per jitted call (one lax.scan)
    progress: bool = True
    checkpoint_every: int = 0  # updates; 0 = only at the end
    keep_checkpoints: int = 3
    resume: bool = False
    # A fresh run into a folder with earlier results moves them aside (never deletes them).
    overwrite: bool = False
    num_seeds: int = 1
    devices: int = 0  # 0 = all local devices
    compile_cache: str = "~/.cache/ued/jax"  # "" disables the persistent compilation cache
    # Extra metric sinks besides metrics.jsonl/csv: "tensorboard" (OUT/tb), "wandb". Each
    # needs its optional extra; none needs a network unless wandb is set to go online.
    loggers: tuple = ()


@dataclasses.dataclass(frozen=True)
class Config:
    env: EnvConfig = dataclasses.field(default_factory=EnvConfig)
    curriculum: CurriculumConfig = dataclasses.field(default_factory=CurriculumConfig)
    ppo: PPOConfig = dataclasses.field(default_factory=PPOConfig)
    network: NetworkConfig = dataclasses.field(default_factory=NetworkConfig)
    eval: EvalConfig = dataclasses.field(default_factory=EvalConfig)
    run: RunConfig = dataclasses.field(default_factory=RunConfig)

    @property
    def steps_per_update(self) -> int:
        return self.ppo.num_envs * self.ppo.num_steps

    @property
    def total_updates(self) -> int:
        return max(1, -(-self.run.total_env_steps // self.steps_per_update))


CHOICES = {
    "network.kind": ("conv_lstm", "mlp"),
    "eval.levels": ("named", "none"),
    "curriculum.start_from": ("generator", "empty"),
    "curriculum.buffer.prioritisation": ("rank", "power", "top_k"),
    "curriculum.buffer.replay_schedule": ("fixed", "proportionate"),
}
LOGGERS = ("tensorboard", "wandb")
POSITIVE = {
    "ppo.num_envs",
    "ppo.num_steps",
    "ppo.epochs",
    "ppo.num_minibatches",
    "curriculum.buffer.capacity",
    "curriculum.buffer.temperature",
    "network.lstm_size",
    "network.head_size",
    "network.conv_channels",
    "run.chunk_updates",
    "run.total_env_steps",
    "run.num_seeds",
    "eval.episodes",
    "ppo.lr",
    "ppo.clip_eps",
    "ppo.max_grad_norm",
}
NON_NEGATIVE = {"run.checkpoint_every", "eval.interval", "ppo.ent_coef", "ppo.vf_coef"}
UNIT_INTERVAL = {
    "ppo.gamma",
    "ppo.gae_lambda",
    "curriculum.buffer.staleness_coef",
    "curriculum.buffer.replay_prob",
    "curriculum.buffer.min_fill_ratio",
}


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _as_number(value: Any) -> Any:
    # YAML 1.1 reads "1e-3" (no dot) as a string; accept it as the number it spells.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def coerce(path: str, value: Any, kind: Any) -> Any:
    """``value`` as a ``kind`` (a config dataclass, bool, int, float, str, dict or tuple);
    a ConfigError naming ``path`` when it is not one."""
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path} must be a mapping of {sorted(_field_types(kind))}")
        return _build(kind, value, path)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path} must be true or false, got {value!r}")
        return value
    if kind in (int, float):
        value = _as_number(value)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{path} must be an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path} must be a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path} must be a string, got {value!r}")
        return value
    if kind is dict:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path} must be a mapping, got {value!r}")
        return dict(value)
    if kind is tuple:
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise ConfigError(f"{path} must be a list, got {value!r}")
        return tuple(value)
    raise TypeError(f"unsupported config field type {kind} at {path}")


def _build(cls, data: Mapping[str, Any], prefix: str = ""):
    types_ = _field_types(cls)
    unknown = sorted(set(data) - set(types_))
    if unknown:
        where = prefix or "the top level"
        raise ConfigError(
            f"unknown config key {_join(prefix, unknown[0])!r}; allowed keys in {where}: "
            f"{sorted(types_)}"
        )
    kwargs = {k: coerce(_join(prefix, k), v, types_[k]) for k, v in data.items()}
    return cls(**kwargs)


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _flatten(cfg, prefix: str = "") -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out.update(_flatten(value, _join(prefix, f.name)))
        else:
            out[_join(prefix, f.name)] = value
    return out


def validate(cfg: Config) -> Config:
    """Checks values that types alone cannot; raises ConfigError naming the key."""
    flat = _flatten(cfg)
    for key, allowed in CHOICES.items():
        if flat[key] not in allowed:
            raise ConfigError(f"{key}={flat[key]!r} is not one of {list(allowed)}")
    for key in POSITIVE:
        if not flat[key] > 0:
            raise ConfigError(f"{key} must be > 0, got {flat[key]!r}")
    for key in NON_NEGATIVE:
        if not flat[key] >= 0:
            raise ConfigError(f"{key} must be >= 0, got {flat[key]!r}")
    for key, value in flat.items():  # inf passes the range checks above
        checked = key.split(".")[0] in ("ppo", "network", "eval", "run")
        if checked and isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
    for size in cfg.network.mlp_sizes:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            sizes = list(cfg.network.mlp_sizes)
            raise ConfigError(f"network.mlp_sizes must be a list of integers >= 1, got {sizes}")
    for key in UNIT_INTERVAL:
        if not 0.0 <= flat[key] <= 1.0:
            raise ConfigError(f"{key} must be in [0, 1], got {flat[key]!r}")
    if cfg.ppo.num_envs % cfg.ppo.num_minibatches:
        raise ConfigError(
            f"ppo.num_envs={cfg.ppo.num_envs} must be divisible by "
            f"ppo.num_minibatches={cfg.ppo.num_minibatches}"
        )
    if cfg.curriculum.num_edits < 0:
        raise ConfigError(f"curriculum.num_edits must be >= 0, got {cfg.curriculum.num_edits}")
    for name in cfg.run.loggers:
        if name not in LOGGERS:
            raise ConfigError(f"run.loggers: {name!r} is not one of {list(LOGGERS)}")
    for name, weight in cfg.curriculum.score.items():
        if not isinstance(weight, (int, float)) or isinstance(weight, bool):
            raise ConfigError(f"curriculum.score.{name} must be a number, got {weight!r}")
    for name, weight in cfg.curriculum.editors.items():
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight < 0:
            raise ConfigError(f"curriculum.editors.{name} must be a number >= 0, got {weight!r}")
    return cfg


def from_dict(data: Mapping[str, Any] | None) -> Config:
    return validate(_build(Config, data or {}))


def to_dict(cfg) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = to_dict(value)
        elif isinstance(value, tuple):
            out[f.name] = list(value)
        else:
            out[f.name] = value
    return out


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw else ""
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"override {text!r}: the value is not valid YAML: {problem}") from None
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    data = _deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return data


def _deepcopy(data):
    if isinstance(data, Mapping):
        return {k: _deepcopy(v) for k, v in data.items()}
    return data


def read_experiment(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Reads an experiment file. A top-level ``base: OTHER.yaml`` (relative to the file)
    is read first and this file's keys are merged over it, section by section."""
    path = Path(path)
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: 'base' files include each other in a cycle")
    loaded = _read_yaml(path)
    if loaded is not None and not isinstance(loaded, Mapping):
        raise ConfigError(f"{path}: an experiment file must be a mapping of sections")
    data = dict(loaded or {})
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base must be a file name, got {base!r}")
    parent = read_experiment(path.parent / base, (*_seen, path.resolve()))
    return _merge(parent, data)


USAGE = "[EXPERIMENT.yaml] [section.key=value ...] (each override one word: key=value)"


def _read_yaml(path: Path) -> Any:
    """The YAML document in ``path``; a ConfigError naming the file (and line) otherwise."""
    if not path.exists():
        hint = f"; the command line is {USAGE}" if path.suffix not in (".yaml", ".yml") else ""
        raise ConfigError(f"no experiment file {str(path)!r}{hint}")
    if path.is_dir():
        raise ConfigError(f"{path} is a folder, not an experiment file (.yaml)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text file (not UTF-8); expected YAML") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read it ({err.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}:{where}: invalid YAML: {problem}") from None


def load(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Loads a YAML experiment (or the defaults when ``path`` is None) plus overrides."""
    data = read_experiment(path) if path is not None else {}
    return from_dict(apply_overrides(data, overrides))


def dump(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def replace(cfg: Config, **sections: Mapping[str, Any]) -> Config:
    """Returns ``cfg`` with some keys changed, e.g. ``replace(cfg, ppo={"num_envs": 8})``."""
    data = to_dict(cfg)
    for section, values in sections.items():
        if section not in data:
            raise ConfigError(f"unknown config section {section!r}; allowed: {sorted(data)}")
        data[section] = _merge(data[section], values)
    return from_dict(data)


def _merge(base: Any, new: Any) -> Any:
    if isinstance(base, dict) and isinstance(new, Mapping):
        out = dict(base)
        for k, v in new.items():
            out[k] = _merge(base.get(k), v) if k in base else v
        return out
    return new


def call_with_options(fn: Callable, options: Mapping[str, Any], where: str, *args):
    """Calls ``fn(*args, **options)``; an unknown option is a ConfigError naming it."""
    params = inspect.signature(fn).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    allowed = [
        name
        for name, p in list(params.items())[len(args) :]
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    for key in options:
        if not accepts_any and key not in allowed:
            raise ConfigError(f"unknown option {where}.{key}; allowed: {sorted(allowed)}")
    try:
        return fn(*args, **options)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {err}") from err
