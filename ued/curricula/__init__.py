"""Curricula by name, each with its typed options.

A curriculum is one module in this package that registers itself::

    @register("my_curriculum", MyOptions)
    def make_my_curriculum(options: MyOptions, deps: Deps) -> Curriculum: ...

Every module here is imported when the package is, so a new module needs no other edit (see
docs/adding_a_curriculum.md). The config names it (``curriculum.name``) and sets its options
(``curriculum.options``), which are checked against ``MyOptions`` when the run is built.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from typing import Any

from ued.config.options import ConfigError, build
from ued.curricula.base import Curriculum, Deps, Plan, Support

WHERE = "curriculum.options"


@dataclasses.dataclass(frozen=True)
class Entry:
    options: type  # a frozen dataclass whose fields are declared with ued.config.options.option
    make: Callable[[Any, Deps], Curriculum]
    support: Callable[[Any], Support] | None = None  # options -> what its training can produce


CURRICULA: dict[str, Entry] = {}


def register(name: str, options: type, support: Callable[[Any], Support] | None = None):
    """Decorator: registers ``make(options, deps) -> Curriculum`` under ``name``.

    ``support(options) -> Support`` declares which levels its training could produce (see
    ``Support``); without it the suite does not analyse the curriculum's levels."""
    if not dataclasses.is_dataclass(options):
        raise TypeError(f"curriculum {name!r}: options must be a dataclass, got {options!r}")

    def decorate(make):
        if name in CURRICULA and CURRICULA[name].make is not make:
            raise ValueError(f"curriculum {name!r} is registered twice")
        CURRICULA[name] = Entry(options, make, support)
        return make

    return decorate


def entry(name: str) -> Entry:
    if name not in CURRICULA:
        raise ConfigError(f"curriculum.name={name!r} is not one of {sorted(CURRICULA)}")
    return CURRICULA[name]


def options_of(name: str) -> type | None:
    """The options dataclass of curriculum ``name``; None when no curriculum has that name.
    What ``ued.config`` and ``ued.host.checkpoint`` take as ``options_of``."""
    found = CURRICULA.get(name)
    return found.options if found is not None else None


def parse_options(name: str, options: Mapping[str, Any] | None):
    """``curriculum.options`` as the options dataclass of curriculum ``name``."""
    return build(entry(name).options, options, WHERE)


def support_of(name: str, options: Mapping[str, Any] | None) -> Support | None:
    """What curriculum ``name`` with ``options`` declares it could train on; None when no
    curriculum has that name or it declares nothing."""
    found = CURRICULA.get(name)
    if found is None or found.support is None:
        return None
    return found.support(parse_options(name, options))


def make_curriculum(name: str, options: Mapping[str, Any] | None, deps: Deps) -> Curriculum:
    """Builds the curriculum ``name``; errors name ``curriculum.*`` keys."""
    return entry(name).make(parse_options(name, options), deps)


def _import_all() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


_import_all()

__all__ = [
    "CURRICULA",
    "Curriculum",
    "Deps",
    "Plan",
    "Support",
    "make_curriculum",
    "options_of",
    "register",
    "support_of",
]
