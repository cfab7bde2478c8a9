"""YAML files a person writes (experiments, suites), read with limits (size, alias expansion)
and errors that name the file and line; ``ued.config.config`` turns an experiment into a config."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ued.config.options import ConfigError
from ued.files.safe_io import FileRefused, read_capped

USAGE = "[EXPERIMENT.yaml] [section.key=value ...] (each override one word: key=value)"
MAX_EXPERIMENT_BYTES = 2**20  # an experiment file is what a person writes: far less than this
MAX_YAML_VALUES = 100_000  # values of a document once its aliases (*name) are expanded


def check_expansion(data: Any, where: str) -> Any:
    """``data`` (loaded YAML) unless its aliases expand it past ``MAX_YAML_VALUES`` values
    (a few lines of ``&a``/``*a`` can stand for billions, which any message or copy of the
    config would write out); counted in time linear in the distinct nodes."""
    sizes: dict[int, int] = {}

    def size(node: Any) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        sizes[key] = 1  # a cycle (YAML allows one) counts once
        children = node.values() if isinstance(node, Mapping) else node
        if isinstance(node, (Mapping, list, tuple)):
            total = 1 + sum(size(child) for child in children)
        else:
            total = 1
        sizes[key] = min(total, MAX_YAML_VALUES + 1)
        return sizes[key]

    try:
        too_big = size(data) > MAX_YAML_VALUES
    except RecursionError:
        raise ConfigError(f"{where}: the YAML is nested too deeply") from None
    if too_big:
        raise ConfigError(
            f"{where}: the YAML stands for over {MAX_YAML_VALUES} values once its aliases "
            "(*name) are expanded; write the values out"
        )
    return data


def read_yaml(path: str | Path, what: str = "experiment file") -> Any:
    """The YAML document in ``path`` (at most ``MAX_EXPERIMENT_BYTES``, a regular file); a
    ConfigError naming the file (and line) otherwise."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        hint = f"; the command line is {USAGE}" if path.suffix not in (".yaml", ".yml") else ""
        raise ConfigError(f"no {what} {str(path)!r}{hint}")
    if path.is_dir():
        article = "an" if what[0] in "aeiou" else "a"
        raise ConfigError(f"{path} is a folder, not {article} {what} (.yaml)")
    try:
        raw = read_capped(path, MAX_EXPERIMENT_BYTES, what)
        text = raw.decode("utf-8")
    except FileRefused as err:
        raise ConfigError(str(err)) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text file (not UTF-8); expected YAML") from None
    try:
        return check_expansion(yaml.safe_load(text), str(path))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{path}:{where}: invalid YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{path}: the YAML is nested too deeply") from None
