"""Typed, validated ``curriculum.options`` for curricula that take their own options.

A curriculum declares a frozen dataclass whose fields are its options, each made with
``option(default, allowed=..., check=...)``; ``parse`` turns the free-form
``curriculum.options`` mapping into that dataclass, and an unknown key or a bad value is a
``ConfigError`` naming ``curriculum.options.<key>`` and what is allowed.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping
from typing import Any

from ued import config as config_lib
from ued.config import ConfigError

WHERE = "curriculum.options"


def option(default: Any, allowed: str, check: Callable[[Any], bool] | None = None):
    """A dataclass field with a default, a description of allowed values and a check.

    Mutable defaults are not allowed: give a tuple for a list, and ``{}`` only as an empty
    mapping (it becomes a factory).
    """
    metadata = {"allowed": allowed, "check": check}
    if isinstance(default, dict):
        return dataclasses.field(default_factory=lambda: dict(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _coerce(name: str, value: Any, kind: Any, allowed: str) -> Any:
    # The config's own coercion (YAML's "1e-3" strings included), with the option's message.
    try:
        return config_lib.coerce(f"{WHERE}.{name}", value, kind)
    except ConfigError:
        raise ConfigError(f"{WHERE}.{name}={value!r}; must be {allowed}") from None


def parse(cls, data: Mapping[str, Any] | None, curriculum: str):
    """Builds the options dataclass ``cls`` from ``curriculum.options``.

    Raises:
        ConfigError: for an unknown key (listing the allowed keys) or a value of the wrong
            type or out of range (naming ``curriculum.options.<key>`` and what it allows).
    """
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown option {WHERE}.{unknown[0]} for curriculum {curriculum!r}; "
            f"allowed keys: {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        meta = fields[name].metadata
        value = _coerce(name, value, hints[name], meta["allowed"])
        check = meta.get("check")
        if check is not None and not check(value):
            raise ConfigError(f"{WHERE}.{name}={value!r}; must be {meta['allowed']}")
        values[name] = value
    return cls(**values)
