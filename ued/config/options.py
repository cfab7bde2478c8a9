"""One way to declare options: ``option(default, ...)`` on a frozen dataclass field.

Every configurable thing in ued (the config's sections, a curriculum's options, the level
buffer's parameters) declares its fields with ``option``. One declaration carries:

- the default (a dict default becomes a factory, so instances never share it);
- what is allowed: ``choices``, a range (``gt``/``ge``/``lt``/``le``), or a ``check`` with
  its ``allowed`` text; the message of a bad value is built from these;
- ``resume``: what a change of the value does to a checkpoint. ``"refuse"``: it changes the
  shapes or the kind of the train state, so resuming with another value is refused;
  ``"free"``: it only steers the host loop; ``"warn"`` (default): allowed, with a warning
  that the run is no longer an exact continuation;
- ``static`` (on ``flax.struct`` dataclasses): the field is not a pytree leaf (it chooses
  code paths or shapes, so it cannot be traced or vmapped).

``build(cls, data, where)`` turns a mapping into the dataclass, and every error is a
``ConfigError`` naming the dotted key (``where.key``) and what is allowed. ``resume_policy``
reads the ``resume`` declarations back for ``ued.host.checkpoint``. ``call_with_options`` calls a
factory (an env, generator or editor constructor) with options from a config, naming an
unknown one.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import reprlib
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

RESUME = ("refuse", "warn", "free")


class ConfigError(ValueError):
    """A config key or value is wrong; the message names it and what is allowed."""


_SHORT = reprlib.Repr()
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxset = _SHORT.maxdict = 12
_SHORT.maxstring = _SHORT.maxother = 80
_SHORT.maxlevel = 4


def short(value: Any) -> str:
    """``repr(value)`` for a message, cut short for a long or deeply nested value (a value
    that YAML aliases expand to millions of entries prints as a few of them)."""
    return _SHORT.repr(value)


def option(
    default: Any = dataclasses.MISSING,
    *,
    choices: Sequence[Any] | None = None,
    gt: float | None = None,
    ge: float | None = None,
    lt: float | None = None,
    le: float | None = None,
    check: Callable[[Any], bool] | None = None,
    allowed: str | None = None,
    resume: str = "warn",
    static: bool = False,
    factory: Callable[[], Any] | None = None,
):
    """A dataclass field declaring a default, what is allowed, and its resume policy.

    ``factory`` (instead of ``default``) builds the default, e.g. a nested options dataclass.
    """
    if resume not in RESUME:
        raise ValueError(f"option(resume={resume!r}); allowed: {RESUME}")
    bounds = {"gt": gt, "ge": ge, "lt": lt, "le": le}
    metadata = {
        "choices": tuple(choices) if choices is not None else None,
        "bounds": {k: v for k, v in bounds.items() if v is not None},
        "check": check,
        "allowed": allowed,
        "resume": resume,
    }
    if static:
        metadata["pytree_node"] = False  # read by flax.struct
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    if isinstance(default, dict):
        return dataclasses.field(default_factory=lambda: dict(default), metadata=metadata)
    if isinstance(default, list):
        raise ValueError("option(): give a tuple, not a list, as a default")
    return dataclasses.field(default=default, metadata=metadata)


def positive_ints(value) -> bool:
    """A check for a list of integers > 0 (layer sizes)."""
    return all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)


def describe(meta: Mapping[str, Any], kind: Any) -> str:
    """What a field allows, in words (for error messages and docs)."""
    if meta.get("allowed"):
        return meta["allowed"]
    if meta.get("choices") is not None:
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    if {int, float} <= set(typing.get_args(kind)):
        kind = float  # e.g. chex.Numeric
    noun = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(
        kind, "a value"
    )
    words = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    bounds = meta.get("bounds") or {}
    if "ge" in bounds and "le" in bounds:
        return f"{noun} in [{bounds['ge']:g}, {bounds['le']:g}]"
    parts = [f"{words[k]} {v:g}" for k, v in bounds.items()]
    return f"{noun} {' and '.join(parts)}" if parts else noun


def _in_bounds(value: Any, bounds: Mapping[str, float]) -> bool:
    if not bounds:
        return True
    if not math.isfinite(float(value)):
        return False
    tests = {
        "gt": lambda b: value > b,
        "ge": lambda b: value >= b,
        "lt": lambda b: value < b,
        "le": lambda b: value <= b,
    }
    return all(tests[k](b) for k, b in bounds.items())


def allows(meta: Mapping[str, Any], value: Any) -> bool:
    """Whether one (coerced) value satisfies the field's declaration."""
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        return False
    if not _in_bounds(value, meta.get("bounds") or {}):
        return False
    check = meta.get("check")
    return check is None or bool(check(value))


def field_types(cls) -> dict[str, Any]:
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
    """``value`` as a ``kind`` (an options dataclass, bool, int, float, str, dict or tuple);
    a ConfigError naming ``path`` when it is not one."""
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path} must be a mapping of {sorted(field_types(kind))}")
        return build(kind, value, path)
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path} must be true or false, got {short(value)}")
        return value
    if kind in (int, float):
        value = _as_number(value)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{path} must be an integer, got {short(value)}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path} must be a number, got {short(value)}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path} must be a string, got {short(value)}")
        return value
    if kind is dict:
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path} must be a mapping, got {short(value)}")
        return dict(value)
    if kind is tuple:
        if not isinstance(value, Sequence) or isinstance(value, str):
            raise ConfigError(f"{path} must be a list, got {short(value)}")
        return tuple(value)
    if kind is Any:
        return value
    if {int, float} <= set(typing.get_args(kind)):  # e.g. chex.Numeric: a scalar number
        value = _as_number(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path} must be a number, got {short(value)}")
        return value
    raise TypeError(f"unsupported option type {kind} at {path}")


def join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def build(cls, data: Mapping[str, Any] | None, where: str = ""):
    """``cls(**data)`` with every value coerced to its declared type and checked.

    Raises:
        ConfigError: for an unknown key (listing the allowed keys) or a bad value (naming
            ``where.key`` and what the declaration allows).
    """
    data = dict(data or {})
    fields = {f.name: f for f in dataclasses.fields(cls)}
    types_ = field_types(cls)
    unknown = sorted(set(data) - set(fields))
    if unknown:
        place = where or "the top level"
        raise ConfigError(
            f"unknown config key {join(where, unknown[0])!r}; allowed keys in {place}: "
            f"{sorted(fields)}"
        )
    values = {}
    for name, value in data.items():
        path, kind, meta = join(where, name), types_[name], fields[name].metadata
        if meta.get("allowed") and not dataclasses.is_dataclass(kind):
            # A field with its own description: say that, not the bare type error.
            try:
                value = coerce(path, value, kind)
            except ConfigError:
                raise ConfigError(f"{path}={short(value)}; must be {meta['allowed']}") from None
        else:
            value = coerce(path, value, kind)
        if not dataclasses.is_dataclass(kind) and not allows(meta, value):
            raise ConfigError(f"{path}={short(value)}; must be {describe(meta, kind)}")
        values[name] = value
    return cls(**values)


def to_dict(obj) -> dict[str, Any]:
    """An options dataclass as plain data (tuples as lists), e.g. for YAML."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = to_dict(value)
        elif isinstance(value, tuple):
            out[f.name] = list(value)
        else:
            out[f.name] = value
    return out


def resume_policy(cls, key: str) -> str:
    """The ``resume`` declaration governing dotted ``key`` below ``cls`` ("refuse", "warn"
    or "free"). A key inside a nested options dataclass takes the innermost declaration that
    is not "warn"; a key below a plain mapping field (e.g. ``env.options.max_size``) takes
    the mapping's."""
    head, _, rest = key.partition(".")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if head not in fields:
        return "warn"
    own = fields[head].metadata.get("resume", "warn")
    kind = field_types(cls)[head]
    if rest and dataclasses.is_dataclass(kind) and own == "warn":
        return resume_policy(kind, rest)
    return own


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
