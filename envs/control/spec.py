"""What defines a control task: its physical parameters, their ranges, and the level helpers.

A control *level* is a ``flax.struct`` dataclass of float32 scalars, one per physical
parameter (e.g. CartPole's gravity and pole length). Every task describes each parameter
with a ``Param``: its gymnax default (the standard task), the training range the generators
and editors use, held-out test values beyond that range (named evaluation levels) and the
physically valid bounds (``is_valid``, the text format).

Text format: ``gravity=9.8 cart_mass=1.0 ...`` on one line (or spread over several); a
level file holds several levels separated by blank lines (``Family.levels_from_file``).

The helpers here are generic over tasks: they read a level's fields in the task's parameter
order, so a new task only lists its ``Param``s and a level class with the same field names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import chex
import jax.numpy as jnp
import numpy as np

Level = Any  # a task's level class: a flax.struct dataclass of () float32 fields


@dataclasses.dataclass(frozen=True)
class Param:
    """One physical parameter of a task (all values are Python floats, static).

    Attributes:
        name: the level field and the text-format key.
        default: gymnax's value, the standard task.
        train: ``(low, high)``, the range of the ``uniform`` generator and the editors.
        test: ``(low, high)``, held-out values beyond ``train`` for the named levels.
        bounds: ``(low, high)``, physically valid values (inclusive); ``is_valid`` checks it.
        unit: unit shown by the renderer.
        doc: one line: what the parameter is.
    """

    name: str
    default: float
    train: tuple[float, float]
    test: tuple[float, float]
    bounds: tuple[float, float]
    unit: str = ""
    doc: str = ""

    def __post_init__(self):
        lo, hi = self.bounds
        ok = (
            lo
            <= self.test[0]
            <= self.train[0]
            <= self.default
            <= self.train[1]
            <= self.test[1]
            <= hi
        )
        if not ok:
            raise ValueError(
                f"parameter {self.name}: need bounds[0] <= test[0] <= train[0] <= default "
                f"<= train[1] <= test[1] <= bounds[1], got {self}"
            )


class Outcome(NamedTuple):
    """What a task's success function sees at the end of a step (all () arrays)."""

    terminated: chex.Array  # bool, gymnax's natural termination (pole fell, goal reached)
    truncated: chex.Array  # bool, the episode hit the time limit
    hold_steps: chex.Array  # int32, consecutive steps (ending now) the task's ``hold`` held
    max_steps: int  # the episode horizon (static)


@dataclasses.dataclass(frozen=True)
class Task:
    """Everything that makes one gymnax control env a family of levels.

    Attributes:
        name: the family name in the registry (``env.family`` in configs).
        make_gymnax: ``() -> gymnax Environment`` (only its ``reset_env``/``step_env``,
            default params and spaces are used).
        level_cls: the level dataclass; its fields are exactly ``params``' names, in order.
        params: the physical parameters.
        to_gymnax: ``(gymnax default params, level) -> gymnax params`` with the level's physics.
        success: ``Outcome -> () bool``, the episode ended by achieving the task.
        hold: optional ``gymnax state -> () bool``; ``Outcome.hold_steps`` counts the
            consecutive steps it held (Pendulum: upright).
        named: extra named levels, name -> {param: value} (others at their defaults).
        draw: optional ``(ImageDraw, (width, height), env, level, gymnax state | None) ->
            None``, a picture of the system for ``render``.
    """

    name: str
    make_gymnax: Callable[[], Any]
    level_cls: type
    params: tuple[Param, ...]
    to_gymnax: Callable[[Any, Level], Any]
    success: Callable[[Outcome], chex.Array]
    hold: Callable[[Any], chex.Array] | None = None
    named: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)
    draw: Callable[..., None] | None = None

    def __post_init__(self):
        fields = tuple(f.name for f in dataclasses.fields(self.level_cls))
        if fields != self.names:
            raise ValueError(
                f"task {self.name}: level fields {fields} must be the parameter names "
                f"{self.names}, in order"
            )
        for name, values in self.named.items():
            unknown = sorted(set(values) - set(self.names))
            if unknown:
                raise ValueError(f"task {self.name}: named level {name!r} sets {unknown}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(f"unknown parameter {name!r} of {self.name}; allowed: {list(self.names)}")


# --- levels as vectors ------------------------------------------------------------------


def to_vector(task: Task, level: Level) -> chex.Array:
    """``(..., P)`` float32: the level's parameters in the task's order."""
    return jnp.stack([jnp.asarray(getattr(level, n), jnp.float32) for n in task.names], -1)


def from_vector(task: Task, vector: chex.Array) -> Level:
    """The level with parameters ``vector[..., i]`` (float32)."""
    vector = jnp.asarray(vector, jnp.float32)
    return task.level_cls(**{n: vector[..., i] for i, n in enumerate(task.names)})


def make_level(task: Task, **values: float) -> Level:
    """A level with the given parameters and the rest at their defaults (eager, float32)."""
    for name in values:
        task.param(name)  # raises on an unknown name
    return from_vector(task, np.array([values.get(p.name, p.default) for p in task.params]))


def default_level(task: Task) -> Level:
    """The standard task: every parameter at gymnax's default."""
    return make_level(task)


def vector_of(task: Task, attr: str) -> np.ndarray:
    """``(P,)`` float32 of one ``Param`` field: "default", or "bounds"/"train"/"test" with a
    ``_low``/``_high`` suffix, e.g. ``vector_of(task, "bounds_low")``."""
    if attr == "default":
        return np.array([p.default for p in task.params], np.float32)
    field, side = attr.rsplit("_", 1)
    index = {"low": 0, "high": 1}[side]
    return np.array([getattr(p, field)[index] for p in task.params], np.float32)


# --- protocol parts -------------------------------------------------------------------


def is_valid(task: Task, level: Level) -> chex.Array:
    """() bool: every parameter is finite and within its physical ``bounds``."""
    x = to_vector(task, level)
    lo, hi = vector_of(task, "bounds_low"), vector_of(task, "bounds_high")
    return jnp.all((x >= lo) & (x <= hi))  # NaN fails both comparisons


def level_metrics(task: Task, level: Level) -> dict[str, chex.Array]:
    """The parameters themselves, () float32 each, so buffer analytics follow the search."""
    return {n: jnp.asarray(getattr(level, n), jnp.float32) for n in task.names}


# --- text format ----------------------------------------------------------------------


def format_value(value: float) -> str:
    """The shortest decimal that reads back as the same float32 (e.g. ``9.8``)."""
    return np.format_float_positional(np.float32(value), unique=True, trim="0")


def edit_form(task: Task) -> dict:
    """How a person edits a level of ``task``: one slider per physical parameter."""
    params = [
        {
            "name": p.name,
            "default": p.default,
            "train": list(p.train),
            "bounds": list(p.bounds),
            "unit": p.unit,
            "doc": p.doc,
        }
        for p in task.params
    ]
    return {"kind": "params", "params": params}


def level_to_text(task: Task, level: Level) -> str:
    """One line ``name=value ...`` in the task's parameter order (exact float32 round trip)."""
    if np.ndim(getattr(level, task.names[0])) != 0:
        raise ValueError("level_to_text takes one level, not a batch; index it first")
    return " ".join(f"{n}={format_value(getattr(level, n))}" for n in task.names)


def level_from_text(task: Task, text: str) -> Level:
    """Parses ``name=value`` pairs separated by spaces or newlines; ``#`` starts a comment.

    Parameters not given take their defaults, so ``"gravity=20"`` is the standard task
    under strong gravity (and ``""`` the standard task). A text that is only comments is an
    error: it is most likely a level of another family (a maze row starts with ``#``).

    Raises:
        ValueError: naming the bad token or parameter and what is allowed.
    """
    values: dict[str, float] = {}
    for line_no, line in enumerate(text.splitlines(), 1):
        for token in line.split("#", 1)[0].split():
            name, sep, raw = token.partition("=")
            if not sep or not name or not raw:
                raise ValueError(f"line {line_no}: {token!r} must look like name=value")
            if name not in task.names:
                raise ValueError(
                    f"line {line_no}: unknown parameter {name!r} of {task.name}; "
                    f"allowed: {list(task.names)}"
                )
            if name in values:
                raise ValueError(f"line {line_no}: parameter {name!r} is given twice")
            try:
                value = np.float32(raw)
            except ValueError:
                raise ValueError(f"line {line_no}: {name}={raw!r} is not a number") from None
            lo, hi = task.param(name).bounds
            # Compare in float32, as is_valid does (float32("2.4") > 2.4 as a Python float).
            if not (np.isfinite(value) and np.float32(lo) <= value <= np.float32(hi)):
                raise ValueError(
                    f"line {line_no}: {name}={raw} is outside its valid range [{lo}, {hi}]"
                )
            values[name] = float(value)
    if not values and text.strip():
        raise ValueError(
            f"no name=value pairs, only comments: not a {task.name} level "
            f"(parameters: {list(task.names)})"
        )
    return make_level(task, **values)


def levels_from_rows(task: Task, blocks) -> Level | None:
    """Many levels at once (the fast path of level files, ``Family.levels_from_rows``): each
    block's rows as ``level_from_text`` reads them, batched into one level of numpy arrays;
    None when any block is not plainly well formed (``level_from_text`` names the problem)."""
    index = {name: i for i, name in enumerate(task.names)}
    default = [float(v) for v in vector_of(task, "default")]
    out = []
    for rows in blocks:
        values, seen = default.copy(), 0  # seen: a bit per parameter given
        for row in rows:
            for token in row.split("#", 1)[0].split():
                name, _, raw = token.partition("=")
                i = index.get(name)
                if i is None or seen >> i & 1:
                    return None
                seen |= 1 << i
                try:
                    values[i] = float(raw)  # np.float32(raw) parses through float too
                except ValueError:
                    return None
        if not seen:
            return None  # only comments: level_from_text says so
        out.append(values)
    values = np.array(out, np.float64).astype(np.float32)
    lo, hi = vector_of(task, "bounds_low"), vector_of(task, "bounds_high")
    if not (np.isfinite(values) & (values >= lo) & (values <= hi)).all():
        return None
    return task.level_cls(**{n: values[:, i] for i, n in enumerate(task.names)})
