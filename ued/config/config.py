"""One typed, frozen experiment config: sections env, curriculum, ppo, network, eval, run.

Configs come from YAML files in ``experiments/`` plus dotted ``key=value`` overrides. Unknown
keys and bad values fail here, before anything is compiled, with a message that names the
key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from ued.config.eval_setup import ALLOWED as LEVELS_ALLOWED
from ued.config.eval_setup import check_levels_spec
from ued.config.options import (
    ConfigError,
    build,
    call_with_options,
    coerce,
    field_types,
    option,
    positive_ints,
    to_dict,
)
from ued.config.yaml_io import MAX_EXPERIMENT_BYTES, check_expansion, read_yaml

# The options dataclass of a curriculum name, or None for a name not registered: the
# registry's ``ued.curricula.options_of``, passed in, as the config sits below the curricula.
OptionsOf = Callable[[str], "type | None"]

__all__ = [
    "MAX_EXPERIMENT_BYTES",
    "ConfigError",
    "OptionsOf",
    "call_with_options",
    "coerce",
    "option",
    "read_yaml",
]

LOGGERS = ("tensorboard", "wandb")
# Layers of an MLP torso: compile time grows with each (20,000 took minutes and more).
MAX_MLP_LAYERS = 64
MAX_SEED = 2**31 - 1  # PRNGKey(seed) is distinct for seeds in [0, 2**32); larger ones wrap


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    family: str = option("maze", resume="refuse")
    # Options of the family's env constructor, e.g. {max_size: 13, view_size: 5}.
    options: dict = option({}, resume="refuse")
    generator: str = option("random_walls")
    generator_options: dict = option({"num_walls": 25})


@dataclasses.dataclass(frozen=True)
class CurriculumConfig:
    # A registered curriculum (ued.curricula.CURRICULA); its options are its own typed
    # options dataclass (e.g. PLROptions), checked when the experiment is built.
    name: str = option("dr", resume="refuse")
    options: dict = option({})


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    num_envs: int = option(32, gt=0, resume="refuse")
    num_steps: int = option(256, gt=0)
    lr: float = option(1e-4, gt=0)
    anneal_lr: bool = option(False, resume="refuse")  # the optimiser state holds a schedule
    gamma: float = option(0.995, ge=0, le=1)
    gae_lambda: float = option(0.98, ge=0, le=1)
    epochs: int = option(5, gt=0)
    num_minibatches: int = option(1, gt=0)
    clip_eps: float = option(0.2, gt=0)
    clip_value: bool = option(True)
    ent_coef: float = option(1e-3, ge=0)
    vf_coef: float = option(0.5, ge=0)
    max_grad_norm: float = option(0.5, gt=0)
    normalize_advantages: bool = option(True)


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    # "conv_lstm": the standard maze student (conv over an image observation when there is
    # one, LSTM torso); "mlp": a feed-forward torso. Both read dict or flat observations.
    kind: str = option("conv_lstm", choices=("conv_lstm", "mlp"), resume="refuse")
    conv_channels: int = option(16, gt=0, resume="refuse")
    direction_embedding: int = option(5, gt=0, resume="refuse")
    lstm_size: int = option(256, gt=0, resume="refuse")
    head_size: int = option(32, gt=0, resume="refuse")
    mlp_sizes: tuple = option(
        (64, 64),
        check=lambda v: len(v) <= MAX_MLP_LAYERS and positive_ints(v),
        allowed=f"a list of at most {MAX_MLP_LAYERS} integers > 0",
        resume="refuse",
    )


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    interval: int = option(0, ge=0, resume="free")  # updates between evaluations; 0 = at the end
    episodes: int = option(10, gt=0, resume="free")
    # named | standard | standard_large | both | none | FILE.txt, or several joined by commas
    # (ued.config.eval_setup); the literature's mazes are ``standard``.
    levels: str = option("named", check=check_levels_spec, allowed=LEVELS_ALLOWED, resume="free")
    # Evaluation horizon T; 0 = the env's (training) horizon. minimax evaluates mazes at 450.
    max_steps: int = option(0, ge=0, resume="free")
    # Also evaluate before the first update, so the run ends with a before -> after table.
    at_start: bool = option(False, resume="free")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    # Seeds run.seed, run.seed + 1, ... each make a distinct PRNGKey below 2**32.
    seed: int = option(
        0,
        check=lambda v: 0 <= v <= MAX_SEED,
        allowed=f"an integer in [0, {MAX_SEED}]",
        resume="refuse",
    )
    total_env_steps: int = option(1_000_000, gt=0, resume="free")
    dir: str = option("", resume="free")
    chunk_updates: int = option(10, gt=0, resume="free")  # updates per jitted call (one scan)
    progress: bool = option(True, resume="free")
    checkpoint_every: int = option(0, ge=0, resume="free")  # updates; 0 = only at the end
    keep_checkpoints: int = option(3, gt=0, resume="free")
    resume: bool = option(False, resume="free")
    # A fresh run into a folder with earlier results moves them aside (never deletes them).
    overwrite: bool = option(False, resume="free")
    num_seeds: int = option(1, gt=0, resume="refuse")
    # How num_seeds > 1 seeds share the machine: "vmap" (one batched program), "sequential"
    # (one program that runs the seeds one after another), "auto" (vmap on a GPU or TPU,
    # sequential on a CPU, where vmapped seeds were measured slower; README "Speed"). The
    # results are the same up to float rounding; the run prints which it chose.
    seed_mode: str = option("auto", choices=("auto", "vmap", "sequential"), resume="free")
    # The seed of the schedule key that the run's seeds share (their replay/new draws, see
    # ued.core.schedule); -1 = run.seed. Seed run.seed + i of a multi-seed run is the single-seed
    # run with run.seed + i and run.schedule_seed = run.seed.
    schedule_seed: int = option(-1, ge=-1)
    devices: int = option(0, ge=0, resume="free")  # 0 = all local devices
    # "" disables the persistent compilation cache.
    compile_cache: str = option("~/.cache/ued/jax", resume="free")
    # Extra metric sinks besides metrics.jsonl/csv: "tensorboard" (OUT/tb), "wandb". Each
    # needs its optional extra; none needs a network unless wandb is set to go online.
    loggers: tuple = option(
        (),
        check=lambda v: all(name in LOGGERS for name in v),
        allowed=f"a list of names from {list(LOGGERS)}",
        resume="free",
    )


@dataclasses.dataclass(frozen=True)
class Config:
    env: EnvConfig = option(factory=EnvConfig)
    curriculum: CurriculumConfig = option(factory=CurriculumConfig)
    ppo: PPOConfig = option(factory=PPOConfig)
    network: NetworkConfig = option(factory=NetworkConfig)
    eval: EvalConfig = option(factory=EvalConfig)
    run: RunConfig = option(factory=RunConfig)

    @property
    def steps_per_update(self) -> int:
        return self.ppo.num_envs * self.ppo.num_steps

    @property
    def total_updates(self) -> int:
        return max(1, -(-self.run.total_env_steps // self.steps_per_update))


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def validate(cfg: Config) -> Config:
    """Checks across keys, which single declarations cannot; raises ConfigError naming them."""
    if cfg.ppo.num_envs % cfg.ppo.num_minibatches:
        raise ConfigError(
            f"ppo.num_envs={cfg.ppo.num_envs} must be divisible by "
            f"ppo.num_minibatches={cfg.ppo.num_minibatches}"
        )
    return cfg


# Keys that curricula's options held before ``curriculum: {name, options}``; files that still
# use them load, with a warning naming the new place.
LEGACY_CURRICULUM_KEYS = ("score", "buffer", "editors", "num_edits", "start_from", "parallel")


def upgrade_legacy(data: Mapping[str, Any]) -> dict[str, Any]:
    """Moves pre-0.2 curriculum keys into ``curriculum.options`` (``parallel: true`` becomes
    the ``<name>_parallel`` curriculum)."""
    data = _deepcopy(dict(data))
    cur = data.get("curriculum")
    if not isinstance(cur, Mapping) or not set(cur) & set(LEGACY_CURRICULUM_KEYS):
        return data
    cur = dict(cur)
    options = dict(cur.get("options") or {})
    moved = []
    for key in LEGACY_CURRICULUM_KEYS:
        if key not in cur:
            continue
        value = cur.pop(key)
        moved.append(key)
        if key == "parallel":
            if value is True and not str(cur.get("name", "dr")).endswith("_parallel"):
                cur["name"] = f"{cur.get('name', 'dr')}_parallel"
            elif value not in (True, False):
                raise ConfigError(f"curriculum.parallel must be true or false, got {value!r}")
            continue
        options[key] = _merge(options[key], value) if key in options else value
    cur["options"] = options
    data["curriculum"] = cur
    warnings.warn(
        f"curriculum.{', curriculum.'.join(moved)}: these keys now live under "
        "curriculum.options (and parallel: true is the <name>_parallel curriculum); "
        "read as such",
        FutureWarning,
        stacklevel=3,
    )
    return data


def from_dict(data: Mapping[str, Any] | None) -> Config:
    return validate(build(Config, upgrade_legacy(data or {})))


def parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = check_expansion(yaml.safe_load(raw), f"override {key}") if raw else ""
    except yaml.YAMLError as err:
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"override {text!r}: the value is not valid YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"override {key}: the value is nested too deeply") from None
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


def read_experiment(
    path: str | Path, options_of: OptionsOf | None = None, _seen: tuple[Path, ...] = ()
) -> dict[str, Any]:
    """Reads an experiment file. A top-level ``base: OTHER.yaml`` (relative to the file)
    is read first and this file's keys are merged over it (see ``merge_files``, which
    says what ``options_of`` is for)."""
    path = Path(path)
    if path.resolve() in _seen:
        raise ConfigError(f"{path}: 'base' files include each other in a cycle")
    loaded = read_yaml(path)
    if loaded is not None and not isinstance(loaded, Mapping):
        raise ConfigError(f"{path}: an experiment file must be a mapping of sections")
    data = dict(loaded or {})
    base = data.pop("base", None)
    data = upgrade_legacy(data)
    if base is None:
        return merge_files({}, data, options_of)
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base must be a file name, got {base!r}")
    parent = read_experiment(path.parent / base, options_of, (*_seen, path.resolve()))
    return merge_files(parent, data, options_of)


def merge_files(
    parent: Mapping[str, Any], child: Mapping[str, Any], options_of: OptionsOf | None = None
) -> dict[str, Any]:
    """``child`` (an experiment file) over ``parent`` (its ``base``), by the config's types.

    Sections and typed option groups (``curriculum.options.buffer``) merge key by key, and
    so does ``env.options`` (the env constructor's options: a child that sets ``max_steps``
    keeps its base's ``num_actions: 7``). Any other free-form mapping
    (``curriculum.options.score``, ``...editors``, ``env.generator_options``) in the child
    *replaces* the parent's, so that a child's ``score: {positive_value_loss: 1.0}`` means
    that score alone (and a child's generator gets only its own options). Write the key with
    a trailing ``+`` (``score+: {novelty: 0.1}``) to merge into the parent's mapping instead.
    A child that names another curriculum keeps only the parent's options it declares.

    A curriculum's option types come from ``options_of`` (``ued.curricula.options_of``);
    without it, a parent that sets curriculum options is a ConfigError (its merge depends
    on those types).
    """
    return _merge_typed(dict(parent), child, Config, options_of)


def _merge_typed(
    base: dict[str, Any], new: Mapping[str, Any], cls, options_of: OptionsOf | None = None
) -> dict[str, Any]:
    types_ = field_types(cls) if cls is not None else {}
    out = dict(base)
    for key, value in new.items():
        name = key[:-1] if isinstance(key, str) and key.endswith("+") else key
        old = out.get(name)
        kind = types_.get(name)
        if name != key:  # explicit merge
            out[name] = _merge(old, value) if isinstance(old, Mapping) else _strip_plus(value)
        elif cls is Config and name == "curriculum" and isinstance(value, Mapping):
            old = old if isinstance(old, Mapping) else {}
            out[name] = _merge_curriculum(old, value, options_of)
        elif cls is EnvConfig and name in KEYWISE_ENV and isinstance(value, Mapping):
            base = dict(old) if isinstance(old, Mapping) else {}
            out[name] = {**base, **_strip_plus(value)}
        elif dataclasses.is_dataclass(kind) and isinstance(value, Mapping):
            out[name] = _merge_typed(dict(old) if isinstance(old, Mapping) else {}, value, kind)
        else:
            out[name] = _strip_plus(value)
    return out


# Free-form mappings of the env section that merge key by key across ``base:`` files.
KEYWISE_ENV = ("options",)


def _strip_plus(value: Any) -> Any:
    # A "key+" inside a replaced mapping has nothing to merge into: it is the key.
    if isinstance(value, Mapping):
        return {
            (k[:-1] if isinstance(k, str) and k.endswith("+") else k): _strip_plus(v)
            for k, v in value.items()
        }
    return value


def _merge_curriculum(
    base: Mapping[str, Any], new: Mapping[str, Any], options_of: OptionsOf | None
) -> dict[str, Any]:
    name = new.get("name", base.get("name", CurriculumConfig.name))
    options = dict(base.get("options") or {})
    if options and options_of is None:
        raise ConfigError(
            "curriculum.options of a base file merge by the curriculum's option types: "
            "load with ued.load_config, or pass options_of=ued.curricula.options_of"
        )
    cls = options_of(name) if options and isinstance(name, str) else None
    if cls is not None:
        declared = {f.name for f in dataclasses.fields(cls)}
        options = {k: v for k, v in options.items() if k in declared}
    # An unknown name is reported when the run is built.
    out = {**base, **{k: v for k, v in new.items() if k != "options"}}
    out["options"] = _merge_typed(options, new.get("options") or {}, cls)
    return out


def load(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    options_of: OptionsOf | None = None,
) -> Config:
    """Loads a YAML experiment (or the defaults when ``path`` is None) plus overrides.
    ``options_of`` types the curriculum options of ``base:`` files (``merge_files``);
    ``ued.load_config`` passes the registry's."""
    data = read_experiment(path, options_of) if path is not None else {}
    return from_dict(apply_overrides(data, overrides))


def dump(cfg: Config, path: str | Path) -> None:
    """Writes ``cfg`` as YAML, atomically; a ConfigError when ``path`` is not a regular
    file or cannot be written."""
    from ued.files.safe_io import FileRefused, write_atomic

    try:
        write_atomic(path, yaml.safe_dump(to_dict(cfg), sort_keys=False), "config file")
    except FileRefused as err:
        raise ConfigError(str(err)) from None


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
