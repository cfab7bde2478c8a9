"""Program spaces: a family's level generator as a program with a bounded, typed parameter vector.

A *program* is a (D,) float32 vector, one entry per ``Dim`` (continuous, or discrete on a grid
of ``step``). ``generate(key, program) -> level`` turns a program into a level, valid by
construction; ``describe(level) -> (E,) float32`` gives a few level features (descriptors)
used for diversity. Everything is pure JAX, jittable and vmappable.

A space has a *widening schedule*: stages of nested bounds, narrowest first. The current
stage is a traced int (so a curriculum widens the space inside its jitted step);
``sample_program`` and ``mutate`` keep programs inside the stage's bounds. Their ``*_in``
forms take the bounds themselves as (D,) arrays, for a curriculum that moves each bound on
its own (``ued.core.program_spec``). ``generate`` accepts any program inside the widest bounds
(the *hard limits*).

Generators read a program by name, never by position: ``unpack(names, program)["size"]``
(or ``space.unpack``), so inserting a ``Dim`` anywhere keeps every reader right.

A family declares its space with ``Family.programs`` (``env -> ProgramSpace``, None for
none). Further spaces of a family are registered by name (``register_space``, e.g. the
maze's ``latent`` space, a generative model's latent box) and chosen with the curriculum's
``program_space`` option; see docs/adding_a_program_space.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

KINDS = ("continuous", "discrete")


def unpack(names: Sequence[str], program: chex.Array) -> dict[str, chex.Array]:
    """``{name: program[..., i]}``: a program vector (..., D) read by dim name."""
    if program.shape[-1] != len(names):
        raise ValueError(f"program of {program.shape[-1]} entries for {len(names)} dims")
    return {name: program[..., i] for i, name in enumerate(names)}


@dataclasses.dataclass(frozen=True)
class Dim:
    """One parameter of a program: its name, kind and widest bounds (inclusive)."""

    name: str
    kind: str  # "continuous" or "discrete"
    low: float
    high: float
    step: float = 1.0  # discrete values are low + k * step

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"program dim {self.name!r}: kind={self.kind!r}; allowed: {KINDS}")
        if not self.low <= self.high:
            raise ValueError(f"program dim {self.name!r}: low={self.low} > high={self.high}")
        if self.kind == "discrete" and self.step <= 0:
            raise ValueError(f"program dim {self.name!r}: step={self.step}; must be > 0")


@dataclasses.dataclass(frozen=True)
class ProgramSpace:
    """A bounded program space with a widening schedule (see the module docstring).

    Attributes:
        dims: the program's parameters, in vector order.
        generate: ``(key, program (D,)) -> level``, valid by construction.
        describe: ``level -> (E,) float32`` descriptors.
        descriptor_names: the E descriptor names.
        descriptor_low, descriptor_high: (E,) ranges the descriptor grid spans (values
            outside are clipped into the edge cells).
        stages: the widening schedule, narrowest first: each stage maps dim names to
            ``(low, high)``; dims a stage leaves out take their widest bounds. Each stage
            must contain the one before. Empty: one stage, the widest bounds.
        mutation_scale: default std of a mutation, as a fraction of each dim's stage range.
    """

    dims: tuple[Dim, ...]
    generate: Callable[[chex.PRNGKey, chex.Array], Any]
    describe: Callable[[Any], chex.Array]
    descriptor_names: tuple[str, ...]
    descriptor_low: tuple[float, ...]
    descriptor_high: tuple[float, ...]
    stages: tuple[Mapping[str, tuple[float, float]], ...] = ()
    mutation_scale: float = 0.1

    def __post_init__(self):
        names = [d.name for d in self.dims]
        if len(set(names)) != len(names):
            raise ValueError(f"program dims repeat a name: {names}")
        e = len(self.descriptor_names)
        if not (len(self.descriptor_low) == len(self.descriptor_high) == e):
            raise ValueError(
                "descriptor_names, descriptor_low and descriptor_high differ in length"
            )
        low, high = self.stage_bounds()
        for s in range(1, len(low)):
            if np.any(low[s] > low[s - 1]) or np.any(high[s] < high[s - 1]):
                raise ValueError(f"widening stage {s} does not contain stage {s - 1}")

    # --- static shape facts -------------------------------------------------------------
    @property
    def num_dims(self) -> int:
        return len(self.dims)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(d.name for d in self.dims)

    @property
    def num_stages(self) -> int:
        return max(len(self.stages), 1)

    @property
    def low(self) -> np.ndarray:
        return np.array([d.low for d in self.dims], np.float32)

    @property
    def high(self) -> np.ndarray:
        return np.array([d.high for d in self.dims], np.float32)

    @property
    def discrete(self) -> np.ndarray:
        return np.array([d.kind == "discrete" for d in self.dims])

    @property
    def steps(self) -> np.ndarray:
        return np.array([d.step for d in self.dims], np.float32)

    def index(self, name: str) -> int:
        """Position of dim ``name`` in the program vector."""
        if name not in self.names:
            raise KeyError(f"no program dim {name!r}; dims: {list(self.names)}")
        return self.names.index(name)

    def unpack(self, program: chex.Array) -> dict[str, chex.Array]:
        """The program (..., D) as ``{dim name: (...) values}``."""
        return unpack(self.names, program)

    def pack(self, values: Mapping[str, Any], base: Sequence[float] | None = None) -> np.ndarray:
        """(D,) float32 program from ``{dim name: value}`` (host side); dims not given take
        ``base``'s values (default: each dim's low bound). Unknown names are refused."""
        out = np.array(self.low if base is None else base, np.float32)
        for name, value in values.items():
            out[self.index(name)] = value
        return out

    def stage_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)``, each (S, D) float32: the bounds of every widening stage."""
        stages = self.stages or ({},)
        low = np.tile(self.low, (len(stages), 1))
        high = np.tile(self.high, (len(stages), 1))
        index = {n: i for i, n in enumerate(self.names)}
        for s, stage in enumerate(stages):
            for name, (lo, hi) in stage.items():
                if name not in index:
                    raise ValueError(
                        f"widening stage {s}: unknown dim {name!r}; allowed: {list(self.names)}"
                    )
                d = self.dims[index[name]]
                if not d.low <= lo <= hi <= d.high:
                    raise ValueError(
                        f"widening stage {s}: {name}=({lo}, {hi}) must lie in "
                        f"[{d.low}, {d.high}] with low <= high"
                    )
                low[s, index[name]], high[s, index[name]] = lo, hi
        return low.astype(np.float32), high.astype(np.float32)

    # --- jittable operations ------------------------------------------------------------
    def bounds(self, stage: chex.Array) -> tuple[chex.Array, chex.Array]:
        """(D,) low and high of widening ``stage`` (a traced int; clipped to the schedule)."""
        low, high = self.stage_bounds()
        s = jnp.clip(stage, 0, self.num_stages - 1)
        return jnp.asarray(low)[s], jnp.asarray(high)[s]

    def snap(self, program: chex.Array, stage: chex.Array | None = None) -> chex.Array:
        """``program`` clipped to the bounds of ``stage`` (the widest if None), discrete dims
        rounded to their grid (inside the bounds)."""
        if stage is None:
            low, high = jnp.asarray(self.low), jnp.asarray(self.high)
        else:
            low, high = self.bounds(stage)
        return self.snap_in(program, low, high)

    def snap_in(self, program: chex.Array, low: chex.Array, high: chex.Array) -> chex.Array:
        """``program`` clipped to ``[low, high]`` ((D,) each), discrete dims rounded to their
        grid inside them."""
        base = jnp.asarray(self.low)
        step = jnp.asarray(self.steps)
        x = jnp.clip(program.astype(jnp.float32), low, high)
        grid = base + step * jnp.round((x - base) / step)
        # Rounding may step just outside a bound that is off the grid: step back in.
        grid = jnp.where(grid > high, grid - step, grid)
        grid = jnp.where(grid < low, grid + step, grid)
        return jnp.where(jnp.asarray(self.discrete), jnp.clip(grid, low, high), x)

    def sample_program(self, key: chex.PRNGKey, stage: chex.Array = 0) -> chex.Array:
        """(D,) float32 uniform in the bounds of ``stage`` (discrete dims uniform on their grid)."""
        return self.sample_in(key, *self.bounds(jnp.asarray(stage)))

    def sample_in(self, key: chex.PRNGKey, low: chex.Array, high: chex.Array) -> chex.Array:
        """(D,) float32 uniform in ``[low, high]`` (discrete dims uniform on their grid)."""
        step = jnp.asarray(self.steps)
        # Discrete: widen by half a step each side so that rounding gives equal mass per value.
        pad = jnp.where(jnp.asarray(self.discrete), 0.5 * step, 0.0)
        u = jax.random.uniform(key, (self.num_dims,))
        return self.snap_in(low - pad + u * (high - low + 2 * pad), low, high)

    def mutate(
        self,
        key: chex.PRNGKey,
        program: chex.Array,
        stage: chex.Array = 0,
        scale: float | chex.Array | None = None,
    ) -> chex.Array:
        """A Gaussian step of std ``scale`` x the stage range on every dim (discrete dims move
        by at least one grid step with probability 1/2), snapped into the stage's bounds."""
        return self.mutate_in(key, program, *self.bounds(jnp.asarray(stage)), scale)

    def mutate_in(
        self,
        key: chex.PRNGKey,
        program: chex.Array,
        low: chex.Array,
        high: chex.Array,
        scale: float | chex.Array | None = None,
    ) -> chex.Array:
        """``mutate`` inside the bounds ``[low, high]`` ((D,) each)."""
        scale = self.mutation_scale if scale is None else scale
        step = jnp.asarray(self.steps)
        noise_key, nudge_key = jax.random.split(key)
        delta = scale * (high - low) * jax.random.normal(noise_key, (self.num_dims,))
        nudge = (
            step
            * jnp.array([-1.0, 0.0, 0.0, 1.0])[
                jax.random.randint(nudge_key, (self.num_dims,), 0, 4)
            ]
        )
        big = jnp.abs(delta) >= step
        delta = jnp.where(jnp.asarray(self.discrete) & ~big, nudge, delta)
        return self.snap_in(program + delta, low, high)

    def normalise_descriptors(self, descriptors: chex.Array) -> chex.Array:
        """(..., E) descriptors as fractions of their ranges, clipped to [0, 1]."""
        lo = jnp.asarray(self.descriptor_low, jnp.float32)
        hi = jnp.asarray(self.descriptor_high, jnp.float32)
        return jnp.clip((descriptors - lo) / jnp.maximum(hi - lo, 1e-9), 0.0, 1.0)

    def to_dict(self, program: Sequence[float]) -> dict[str, float]:
        """One program as ``{dim name: value}`` (host side, for logs and captions)."""
        values = np.asarray(program, np.float64)
        return {n: float(v) for n, v in zip(self.names, values, strict=True)}


# --- named spaces ---------------------------------------------------------------------------

# (family name, space name) -> factory(env, **options) -> ProgramSpace
_SPACES: dict[tuple[str, str], Callable[..., ProgramSpace]] = {}
# (family name, space name) -> codec(env) -> envs.level_model.LevelCodec, for a latent space
_CODECS: dict[tuple[str, str], Callable[..., Any]] = {}


def register_space(
    family: str,
    name: str,
    factory: Callable[..., ProgramSpace],
    codec: Callable[..., Any] | None = None,
) -> None:
    """Registers a further program space of ``family`` under ``name``: ``factory(env,
    **options) -> ProgramSpace`` (its keyword arguments are the curriculum's
    ``space_options``). The family's own ``Family.programs`` is the space named ``""``.

    A space that decodes a generative model's latent vectors also gives ``codec(env) ->
    envs.level_model.LevelCodec``, the grid encoding its model is trained on
    (``scripts/train_level_model.py``)."""
    if not name:
        raise ValueError("a registered program space needs a name ('' is Family.programs)")
    if (family, name) in _SPACES and _SPACES[(family, name)] is not factory:
        raise ValueError(f"program space {name!r} of family {family!r} is registered twice")
    _SPACES[(family, name)] = factory
    if codec is not None:
        _CODECS[(family, name)] = codec


def space_codec(family: str, name: str) -> Callable[..., Any]:
    """The level codec of ``family``'s latent space ``name``; KeyError naming those with one."""
    if (family, name) not in _CODECS:
        latent = sorted(n for f, n in _CODECS if f == family)
        raise KeyError(f"family {family!r} has no latent program space {name!r}; it has {latent}")
    return _CODECS[(family, name)]


def space_names(family: str) -> list[str]:
    """The registered named spaces of ``family`` (besides its ``Family.programs``)."""
    return sorted(name for fam, name in _SPACES if fam == family)


def space_factory(family: str, name: str) -> Callable[..., ProgramSpace]:
    """The factory of ``family``'s space ``name``; KeyError naming the registered ones."""
    if (family, name) not in _SPACES:
        raise KeyError(
            f"family {family!r} has no program space {name!r}; registered: {space_names(family)}"
        )
    return _SPACES[(family, name)]
