"""The environment protocol every level-based family implements, and the family registry.

A *level* is a fully specified environment instance with fixed shapes (a ``flax.struct``
dataclass), so a batch of levels is one stacked pytree. An environment is reset *to a level*
and, on ``done``, replays the same level by restoring the cached initial state (no reset is
recomputed inside the step). An env plays levels; everything else done with levels
(validity, metrics, text, pictures, stacking) lives in the family bundle, ``Family``.

What students and evaluation rely on (the contract test checks it for every family):

- **Observations** match ``observation_space(params)``, a gymnax space that does not depend
  on the level. The student's encoder is chosen from that space (``observation_parts``), not
  from key names: a ``Box`` of rank 3 ``(H, W, C)`` is an image (a 3x3 conv), a ``Box`` of
  rank 1 ``(D,)`` a vector (read as float32 as is), a ``Discrete(n)`` an integer (a learned
  embedding of its one-hot), and a ``Dict`` holds several such entries. By convention the
  entries are named ``image``, ``direction`` (the maze's facing, ``Discrete(4)``) and
  ``vector``.
- **info** is a dict with the same keys on every step (so a rollout can be scanned) holding
  at least ``SUCCESS`` = ``"success"``: a () bool, True on the step that ends an episode by
  achieving the task. Solve rates, learnability scores and evaluation read it.
"""

from __future__ import annotations

import dataclasses
import importlib
import numbers
import pkgutil
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Generic, NamedTuple, TypeVar

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

Level = Any  # a flax.struct dataclass with fixed shapes
EnvState = Any
EnvParams = Any
Obs = Any
Generator = Callable[[chex.PRNGKey], Level]
Editor = Callable[[chex.PRNGKey, Level], Level]

TState = TypeVar("TState")

SUCCESS = "success"  # the info key every env provides: () bool, the episode achieved the task


class StepOut(NamedTuple):
    """What ``step`` returns; unpacks like the classic 5-tuple.

    ``info`` always has the same keys for a given env (so it can be scanned); every env
    provides at least ``info[SUCCESS]`` (() bool: the episode ended by achieving the task).
    """

    obs: Obs
    state: Any
    reward: chex.Array
    done: chex.Array
    info: dict[str, chex.Array]


class ObsPart(NamedTuple):
    """One input a student reads from the observation, as its observation space says."""

    key: str | None  # the Dict entry; None when the observation is this one array
    kind: str  # "image" (H, W, C), "vector" (D,) or "discrete" ()
    shape: tuple[int, ...]  # the entry's shape
    num_values: int  # discrete: n of Discrete(n); 0 otherwise


OBS_KINDS = ("image", "discrete", "vector")  # the order in which a student reads the parts


def observation_parts(space: Any) -> tuple[ObsPart, ...]:
    """The inputs a student reads from observations of ``space`` (a gymnax space).

    A ``Box`` of rank 3 is an image, a ``Box`` of rank 1 a vector, a ``Discrete`` an integer;
    a ``Dict`` holds several of them (not nested). Parts are ordered by kind (``OBS_KINDS``),
    then by key.

    Raises:
        ValueError: naming the entry whose space is none of these.
    """
    # Imported here: importing gymnax starts JAX's backends, which must wait until
    # ued.step.parallel.configure_host_devices has set the CPU device count.
    from gymnax.environments import spaces

    entries = space.spaces.items() if isinstance(space, spaces.Dict) else [(None, space)]
    parts = []
    for key, sub in entries:
        where = "the observation" if key is None else f"observation entry {key!r}"
        if isinstance(sub, spaces.Discrete):
            parts.append(ObsPart(key, "discrete", (), int(sub.n)))
        elif isinstance(sub, spaces.Box) and len(sub.shape) in (1, 3):
            kind = "vector" if len(sub.shape) == 1 else "image"
            parts.append(ObsPart(key, kind, tuple(int(d) for d in sub.shape), 0))
        else:
            raise ValueError(
                f"{where} has space {sub!r} (shape {getattr(sub, 'shape', None)}); a student "
                "reads a Box (H, W, C) image, a Box (D,) vector or a Discrete, or a Dict of them"
            )
    if not parts:
        raise ValueError("the observation space is an empty Dict")
    return tuple(sorted(parts, key=lambda p: (OBS_KINDS.index(p.kind), p.key or "")))


@struct.dataclass
class ReplayState(Generic[TState]):
    """Env state plus the cached initial observation and state of the current level."""

    env_state: TState
    init_obs: Obs
    init_state: TState


class Environment:
    """Base class of level-based environments: it plays levels.

    Subclasses implement ``default_params``, ``reset_env_to_level``, ``step_env``,
    ``observation_space``, ``action_space`` and ``max_episode_steps``. The public
    ``reset_to_level``/``step`` pair adds auto-replay. Level operations (validity, metrics,
    the example level, text, render) are the family's, not the env's: see ``Family``.
    """

    # --- implemented by each env ---------------------------------------------------------
    def default_params(self) -> EnvParams:
        raise NotImplementedError

    def reset_env_to_level(self, key: chex.PRNGKey, level: Level, params: EnvParams):
        """Returns ``(obs, state)`` for the start of an episode on ``level``."""
        raise NotImplementedError

    def step_env(self, key: chex.PRNGKey, state, action, params: EnvParams) -> StepOut:
        """One step without auto-replay; ``done`` marks the episode end."""
        raise NotImplementedError

    def observation_space(self, params: EnvParams):
        """A gymnax space the student's encoder is chosen from (see ``observation_parts``)."""
        raise NotImplementedError

    def action_space(self, params: EnvParams):
        raise NotImplementedError

    def max_episode_steps(self, params: EnvParams) -> int:
        """Static episode horizon, used for logging and evaluation."""
        raise NotImplementedError

    # --- provided ---------------------------------------------------------------------
    def reset_to_level(self, key: chex.PRNGKey, level: Level, params: EnvParams):
        obs, state = self.reset_env_to_level(key, level, params)
        return obs, ReplayState(env_state=state, init_obs=obs, init_state=state)

    def step(self, key: chex.PRNGKey, state: ReplayState, action, params: EnvParams) -> StepOut:
        obs, env_state, reward, done, info = self.step_env(key, state.env_state, action, params)
        # Replay the same level: restore the cached start rather than recompute a reset.
        obs = jax.tree.map(lambda init, cur: jnp.where(done, init, cur), state.init_obs, obs)
        env_state = jax.tree.map(
            lambda init, cur: jnp.where(done, init, cur), state.init_state, env_state
        )
        return StepOut(obs, state.replace(env_state=env_state), reward, done, info)


MAX_FILE_LEVELS = 100_000  # levels one file may hold (raise with --max-levels)
MAX_FILE_BYTES = 64 * 2**20  # bytes of a level file read at most
MAX_LEVEL_BYTES = 2**20  # bytes of one level's text in a file (a 128x128 maze is 16.5 KB)


class EditSpec(NamedTuple):
    """An editor and the predicate telling whether it can change a level right now."""

    edit: Editor
    feasible: Callable[[Level], chex.Array]


def text_form(env: Environment) -> dict[str, Any]:
    """The default ``Family.edit_form``: levels are edited in the family's text format."""
    return {"kind": "text"}


def no_path(env: Environment, level: Level) -> None:
    """The default ``Family.solution_path``: the family draws no solution path."""
    return None


@dataclasses.dataclass(frozen=True)
class Family:
    """Everything the framework needs from one environment family, looked up by name: the
    one home of level operations.

    Every function takes the env first (its options set shapes such as the maze's grid).

    Attributes:
        name: registry name used in configs (``env.family``).
        make_env: ``(**options) -> Environment``; options come from ``env.options``.
        generators: name -> ``make(env, **options) -> Generator`` (vmappable, valid levels).
        editors: name -> ``make(env) -> EditSpec``.
        named_levels: ``env -> {name: Level}``, the held-out evaluation set.
        example_level: ``env -> Level``, a valid level with the env's shapes (sizes buffers).
        is_valid: ``(env, level) -> () bool``, the level is playable (jittable).
        level_metrics: ``(env, level) -> {name: () float32}``, analytics (jittable).
        level_to_text: ``(env, level) -> str`` of one level.
        level_from_text: ``(env, text) -> Level``; surrounding blank lines are ignored and
            line numbers in errors count from the start of ``text``; raises ``ValueError``
            naming the problem.
        render: ``(env, level or state) -> uint8 (H, W, 3)``; a state may be the env's own
            or a ``ReplayState``.
        make_builder: optional ``(env, **options) -> builder`` for PAIRED's adversary
            (the protocol: ``ued.curricula.paired.LevelBuilder``).
        level_sets: further evaluation sets by name, each ``env -> {name: Level}`` (e.g.
            the maze's ``standard`` mazes of the literature); selected by ``eval.levels``.
        programs: optional ``env -> envs.programs.ProgramSpace``, the family's generator as
            a program with parameters (the ``programs`` curriculum searches it); None when
            the family declares none.
        levels_from_rows: optional fast path of level files: ``(env, blocks) -> Level``, the
            levels (batched, host numpy arrays) of many levels' text rows at once, exactly
            as ``level_from_text`` of each block's rows joined by newlines would give; or
            None when any block is not plainly well formed, and the blocks are then parsed
            one by one with ``level_from_text`` (whose message names the problem).
        edit_form: optional ``env -> dict``, how a person edits a level (the studio's
            editor): ``{"kind": "grid", "max_size": n}`` (walls, agent and goal on a grid),
            ``{"kind": "params", "params": [{name, default, train, bounds, unit, doc}]}``
            (one slider per parameter) or, the default, ``{"kind": "text"}`` (the text
            format).
        solution_path: optional ``(env, level) -> list of [x, y] cells or None``, a shortest
            solution the studio draws over the level (``[]`` when none exists); the default
            None means the family has no such path.

    Provided for every family: ``stack``, ``unstack``, ``levels_from_text``,
    ``levels_to_text`` and ``levels_from_file`` (several levels separated by blank lines;
    a line starting with ``;`` is a comment).
    """

    name: str
    make_env: Callable[..., Environment]
    generators: Mapping[str, Callable[..., Generator]]
    editors: Mapping[str, Callable[[Environment], EditSpec]]
    named_levels: Callable[[Environment], Mapping[str, Level]]
    example_level: Callable[[Environment], Level]
    is_valid: Callable[[Environment, Level], chex.Array]
    level_metrics: Callable[[Environment, Level], dict[str, chex.Array]]
    level_to_text: Callable[[Environment, Level], str]
    level_from_text: Callable[[Environment, str], Level]
    render: Callable[[Environment, Any], Any]
    make_builder: Callable[..., Any] | None = None
    level_sets: Mapping[str, Callable[[Environment], Mapping[str, Level]]] = dataclasses.field(
        default_factory=dict
    )
    programs: Callable[[Environment], Any] | None = None
    levels_from_rows: Callable[[Environment, Sequence[Sequence[str]]], Level | None] | None = None
    edit_form: Callable[[Environment], dict[str, Any]] = text_form
    solution_path: Callable[[Environment, Level], list[list[int]] | None] = no_path

    @staticmethod
    def stack(levels: Sequence[Level]) -> Level:
        """Same-shaped levels as one batched level (leading axis ``len(levels)``)."""
        if not levels:
            raise ValueError("no levels to stack")
        return jax.tree.map(lambda *xs: jnp.stack(xs), *levels)

    @staticmethod
    def unstack(levels: Level) -> list[Level]:
        """A batched level as a list of single levels (inverse of ``stack``)."""
        n = len(jax.tree.leaves(levels)[0])
        return [jax.tree.map(lambda x, i=i: x[i], levels) for i in range(n)]

    def levels_from_text(self, env: Environment, text: str) -> list[Level]:
        """Parses levels separated by blank lines with ``level_from_text``.

        Each level is parsed with its line numbers in ``text`` kept, so an error names the
        level and the line: ``level 2 (starting on line 6): line 7, column 3: ...``.
        """
        levels = [self._parse(env, n, *block) for n, block in enumerate(_blocks(text), 1)]
        if not levels:
            raise ValueError("no levels in the text")
        return levels

    def levels_to_text(self, env: Environment, levels: Sequence[Level] | Level) -> str:
        """Writes levels (a list, or one batched level) separated by blank lines."""
        if not isinstance(levels, Sequence):
            levels = self.unstack(levels)
        return "\n\n".join(self.level_to_text(env, level) for level in levels) + "\n"

    def read_levels(
        self, env: Environment, path: str | Path, max_levels: int = MAX_FILE_LEVELS
    ) -> Level:
        """A text file of levels separated by blank lines as one batched level of host
        (numpy) arrays, read as a stream in linear time: only a regular file is read (a
        device, FIFO or folder is refused), at most ``MAX_FILE_BYTES`` of it whatever size it
        claims, one level at most ``MAX_LEVEL_BYTES``, and reading stops at the first level
        past ``max_levels``. A progress bar shows for large files.

        Raises:
            ValueError: naming the file, and the level that failed or the limit.
        """
        from tqdm import tqdm  # only file reading needs it

        from ued.files.safe_io import FileRefused, iter_lines, open_capped

        path = Path(path)
        stream, size = open_capped(path, MAX_FILE_BYTES, "level file", hint="; split it")
        batches, blocks, count = [], [], 0
        bar = tqdm(total=size, unit="B", unit_scale=True, disable=size < 2**20, desc=path.name)

        try:
            with stream, bar:
                for count, block in enumerate(_blocks(iter_lines(stream, path, bar.update)), 1):
                    if count > max_levels:  # the levels before it are checked first
                        if blocks:
                            self._parse_many(env, count - len(blocks), blocks)
                        raise ValueError(
                            f"more than {max_levels} levels (the limit; --max-levels raises it)"
                        )
                    blocks.append(block)
                    if len(blocks) == 1024:  # parse and stack as we go: no object per level
                        batches.append(self._parse_many(env, count - len(blocks) + 1, blocks))
                        blocks = []
                if blocks:
                    batches.append(self._parse_many(env, count - len(blocks) + 1, blocks))
        except FileRefused:  # names the file already
            raise
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err
        except OSError as err:
            raise ValueError(f"{path}: cannot read it ({err.strerror or err})") from None
        if not count:
            raise ValueError(f"{path}: no levels in the file")
        return jax.tree.map(lambda *xs: np.concatenate(xs), *batches)

    def levels_from_file(
        self, env: Environment, path: str | Path, max_levels: int = MAX_FILE_LEVELS
    ) -> list[Level]:
        """``read_levels`` as a list of single levels."""
        return self.unstack(self.read_levels(env, path, max_levels))

    def _parse_many(self, env: Environment, number: int, blocks: list) -> Level:
        """Levels ``number, number + 1, ...`` of a file from their ``(first line, rows)``, as
        one batched level of numpy arrays: the family's ``levels_from_rows`` when it has one
        and the rows are well formed, else one ``level_from_text`` per level."""
        if self.levels_from_rows is not None:
            levels = self.levels_from_rows(env, [rows for _, rows in blocks])
            if levels is not None:
                return levels
        parsed = [self._parse(env, number + i, *block) for i, block in enumerate(blocks)]
        return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *parsed)

    def _parse(self, env: Environment, number: int, first: int, rows: list[str]) -> Level:
        # The family parses the level's own rows (line numbers from 1); its message is then
        # given the file's line numbers. (Prefixing blank lines instead would make reading a
        # file quadratic in its length.)
        try:
            return self.level_from_text(env, "\n".join(rows))
        except ValueError as err:
            message = _LINE.sub(lambda m: _shift(m, first), str(err))
            raise ValueError(f"level {number} (starting on line {first + 1}): {message}") from err


# "line 3", "lines 2-5" in a family's message about one level's text.
_LINE = re.compile(r"\b(lines?) (\d+)(?:-(\d+))?")


def _shift(match: re.Match, by: int) -> str:
    word, a, b = match.group(1), int(match.group(2)) + by, match.group(3)
    return f"{word} {a}" + (f"-{int(b) + by}" if b is not None else "")


COMMENT = ";"  # a line starting with it is a comment, and ends the level above it


def _blocks(lines: str | Iterable[str]) -> Iterator[tuple[int, list[str]]]:
    """``(0-based first line, rows)`` of each run of non-blank, non-comment lines; a run of
    more than ``MAX_LEVEL_BYTES`` is a ValueError (no level is that large)."""
    if isinstance(lines, str):
        lines = lines.splitlines()
    rows: list[str] = []
    first = size = 0
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped and stripped[0] != COMMENT:
            if not rows:
                first, size = i, 0
            rows.append(line.rstrip())  # a newline, a Windows "\r", trailing spaces
            size += len(line) + 1  # with its newline
            if size > MAX_LEVEL_BYTES:
                raise ValueError(
                    f"the level starting on line {first + 1} is over "
                    f"{MAX_LEVEL_BYTES // 2**20} MiB of text (levels are separated by "
                    "blank lines)"
                )
        elif rows:
            yield first, rows
            rows = []
    if rows:
        yield first, rows


_REGISTRY: dict[str, Family] = {}
_DISCOVERED = False


def check_int(what: str, value: object, low: int, high: int | None = None) -> int:
    """``value`` as an int in ``[low, high]`` (no upper bound for None), for env, generator
    and builder options; a ValueError naming ``what`` (e.g. "generator option num_walls")."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{what} must be an int, got {value!r}")
    if value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{what} must be {allowed}, got {value}")
    return int(value)


def register(family: Family) -> Family:
    """Adds a family to the registry; a family module calls this at import time."""
    if family.name in _REGISTRY and _REGISTRY[family.name] is not family:
        raise ValueError(f"environment family {family.name!r} is already registered")
    _REGISTRY[family.name] = family
    return family


def _discover() -> None:
    # Import every subpackage of envs/ once, so a new family folder registers itself
    # without editing any central file.
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    package = importlib.import_module("envs")
    for info in pkgutil.iter_modules(package.__path__):
        if info.ispkg:
            importlib.import_module(f"envs.{info.name}")


def get_family(name: str) -> Family:
    """Returns the registered family ``name``; unknown names list the known ones."""
    _discover()
    if name not in _REGISTRY:
        raise KeyError(f"unknown environment family {name!r}; known families: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def families() -> dict[str, Family]:
    _discover()
    return dict(_REGISTRY)
