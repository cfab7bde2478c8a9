"""The curriculum contract: the parts each curriculum plugs into the one train step.

A curriculum is registered under a name with its typed options dataclass (see
``ued.curricula.register``) and built top-down as ``make(options, deps)``: ``deps`` holds
everything it may use from the run, and nothing in it points back up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from envs.core import Environment, Family, Generator, Level


@struct.dataclass
class Plan:
    """What the curriculum decided for this step, per env: what the step needs to know.
    Where a level came from (a buffer slot, an archive program) is the curriculum's own
    bookkeeping and stays in its state."""

    train_mask: chex.Array  # (N,) bool, envs whose experience the student trains on
    group: chex.Array  # (N,) int32, index into the curriculum's ``groups`` names


@dataclasses.dataclass(frozen=True)
class Deps:
    """What a curriculum may use from the run: built once, outside jit, before it."""

    env: Environment
    env_params: Any
    family: Family  # the env's family: its generators, editors and level builder by name
    generator: Generator  # key -> level, the run's configured generator
    network: Any  # the student's ActorCritic module (PAIRED's antagonist shares it)
    ppo: Any  # ued.config.config.PPOConfig, the student's PPO settings
    # (key, params, levels, num_steps=None) -> Rollout with GAE: any params of ``network``
    # on a batch of levels, sharded like the main rollout. num_steps defaults to ppo's.
    rollout: Callable[..., Any]
    num_envs: int
    total_updates: int


class Curriculum(Protocol):
    """What each curriculum supplies: names for its env groups and three pure functions.

    ``groups`` names the kinds of env a plan may contain (e.g. ``("new", "replay",
    "edit")``); the step logs the fraction of envs in each as ``curriculum/<name>``.
    ``update`` must return the same metric keys on every step (NaN where a metric does not
    apply to this step) so the step can be scanned.

    Optionally, ``propose`` and ``update`` take a keyword argument ``schedule`` (a
    ``ued.core.schedule.Schedule``): the step then passes what the seeds of a run share, the
    update count (``schedule.update``) and the update's schedule key (``schedule.key``),
    both unbatched when seeds are vmapped. A decision on the update count should read
    ``schedule.update`` (not a count in ``cstate``, which is per seed), a random decision
    that may be the same for every seed should draw from ``schedule.key``, and a branch on
    per-seed state should use ``schedule.cond`` / ``schedule.switch``: then the seeds'
    branches stay branches under ``vmap`` (a ``lax.cond`` on a per-seed predicate runs both
    branches there). A curriculum without the keyword gets none and works as before.

    What else the framework may ask of a curriculum is an optional capability below,
    declared by inheriting it (``class MyCurriculum(TakesLevels, ShowsLevels)``); the
    framework asks ``isinstance(curriculum, Capability)`` and reads nothing else of the
    curriculum or of its state. A metric named ``events/<name>`` (``EVENT_PREFIX``) that is
    positive on an update marks an event of that update in the run's records.
    """

    groups: tuple[str, ...]

    def init(self, key: chex.PRNGKey) -> Any: ...

    def propose(
        self, key: chex.PRNGKey, cstate: Any, student: Any, schedule: Any = None
    ) -> tuple[Any, Level, Plan]: ...

    def update(
        self,
        key: chex.PRNGKey,
        cstate: Any,
        plan: Plan,
        levels: Level,
        rollout: Any,
        student: Any,
        schedule: Any = None,
    ) -> tuple[Any, dict[str, chex.Array]]: ...


EVENT_PREFIX = "events/"  # a metric ``events/<name>`` > 0 marks an event of its update

# --- optional capabilities: declared by inheriting them -------------------------------------


class ResetsEpisodes:
    """An env whose episode ends inside the student's rollout is reset to a fresh level
    (DR, a program curriculum: a new level of the env's program) instead of replaying its
    level."""

    def next_levels(self, cstate: Any, levels: Level, plan: Plan) -> Callable | None:
        """Given this step's proposal, ``key -> levels`` (leaves (N, ...); env i restarts
        on entry i), or None: the envs replay their levels. Jittable."""
        raise NotImplementedError


class CarriesEpisodes:
    """Episodes and the student's recurrent state continue from one update's rollout into
    the next (``ued.core.ppo.EpisodeCarry``, kept in the curriculum's state)."""

    def episodes(self, cstate: Any) -> Any:
        """Where the episodes stand, to start this rollout from."""
        raise NotImplementedError

    def with_episodes(self, cstate: Any, episodes: Any) -> Any:
        """``cstate`` keeping where the episodes stand after the rollout."""
        raise NotImplementedError


class TakesLevels:
    """Takes levels from outside the curriculum (drawn by a person and sent to the run's
    inbox, see ``ued.human.inbox``). Without it a run refuses sent levels and logs why."""

    def add_levels(self, cstate: Any, levels: Level, key: chex.PRNGKey) -> Any:
        """Puts ``levels`` (a stacked batch of valid levels, leading axis B) where the
        curriculum will train on them (PLR's buffer, a grounding set). Pure and jittable,
        keeps every shape of ``cstate`` and works on one seed's state (the driver maps it
        over the seed axis); the host calls it between chunks, never inside the step."""
        raise NotImplementedError

    def taken_levels(self, cstate: Any) -> LevelView:
        """Where sent levels are kept now (one seed's state), to find them again."""
        raise NotImplementedError


class ShowsLevels:
    """Has levels worth showing: the gallery, the inbox and the studio read them through
    ``level_view`` and nothing else."""

    def level_view(self, cstate: Any) -> LevelView:
        """The levels of one seed's state, on the host."""
        raise NotImplementedError


SUPPORT_KINDS = ("generator", "edits", "builder", "programs")


@dataclasses.dataclass(frozen=True)
class Support:
    """Which levels a curriculum's training could produce at all, as the suite's analysis
    (``ued.suite.support``) reads it; a curriculum declares it from its options with
    ``register(..., support=options -> Support)``.

    ``kind``: "generator", the run generator's levels (DR, PLR, SFL's samples); "edits",
    those of its start generator and what its editors reach from them (ACCEL); "builder",
    what its level builder can build (PAIRED); "programs", its program space's levels.
    """

    kind: str  # one of SUPPORT_KINDS
    start: str | None = None  # "edits": the generator its search starts from; None: the run's
    editors: tuple[str, ...] = ()  # "edits": its editors by name; empty: the family's
    builder: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # "builder": options

    def __post_init__(self):
        if self.kind not in SUPPORT_KINDS:
            raise ValueError(f"Support.kind={self.kind!r}; must be one of {SUPPORT_KINDS}")


def generator_support(options: Any) -> Support:
    """The run generator's levels, whatever the options: a curriculum that only selects
    among generated levels."""
    return Support("generator")


VIEW_KINDS = ("buffer", "grounding", "archive")


@dataclasses.dataclass(frozen=True)
class LevelView:
    """A curriculum's set of levels as the gallery, the inbox and the studio show it.

    ``columns`` are shown beside each level (the studio's JSON: numbers, NaN as null, lists
    and dicts); ``summary`` describes the whole set. Levels are shown best first by
    ``scores`` (NaN last), or in slot order without scores. ``featured`` are the
    ``(slot, caption)`` pairs a picture gallery shows, best first; None: the best-scored
    filled slots captioned ``#rank score`` (no gallery without scores).
    """

    kind: str  # one of VIEW_KINDS: a scored buffer, a set sent in by people, an archive
    levels: Level  # leaves (C, ...) host arrays
    filled: np.ndarray  # (C,) bool
    scores: np.ndarray | None = None  # (C,) float64
    columns: Mapping[str, Sequence[Any]] = dataclasses.field(default_factory=dict)
    summary: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    featured: Sequence[tuple[int, str]] | None = None

    def __post_init__(self):
        if self.kind not in VIEW_KINDS:
            raise ValueError(f"LevelView.kind={self.kind!r}; must be one of {VIEW_KINDS}")

    @property
    def capacity(self) -> int:
        return int(np.shape(self.filled)[0])

    def order(self) -> list[int]:
        """The filled slots, best first (by score, ties to the lower slot) or slot order."""
        filled = np.asarray(self.filled, bool)
        if self.scores is None:
            return [int(i) for i in np.flatnonzero(filled)]
        scores = np.asarray(self.scores, np.float64)
        ranked = np.where(np.isnan(scores), -np.inf, scores)
        return [int(i) for i in np.argsort(-ranked, kind="stable") if filled[i]]

    def level(self, slot: int) -> Level:
        return jax.tree.map(lambda x: np.asarray(x[slot]), self.levels)


def level_view(curriculum: Any, cstate: Any) -> LevelView | None:
    """What ``curriculum`` shows of ``cstate``: None unless it declares ``ShowsLevels``."""
    return curriculum.level_view(cstate) if isinstance(curriculum, ShowsLevels) else None


def taken_levels(curriculum: Any, cstate: Any) -> LevelView | None:
    """Where ``curriculum`` keeps sent levels: None unless it declares ``TakesLevels``."""
    return curriculum.taken_levels(cstate) if isinstance(curriculum, TakesLevels) else None


def generate(generator: Generator, key: chex.PRNGKey, n: int) -> Level:
    """n fresh levels from ``generator``."""
    return jax.vmap(generator)(jax.random.split(key, n))


def full_plan(n: int, group: int = 0, train: bool = True) -> Plan:
    """Every env in one group, all trained on (or none)."""
    return Plan(train_mask=jnp.full((n,), train), group=jnp.full((n,), group, jnp.int32))


def group_fractions(groups: tuple[str, ...], plan: Plan) -> dict[str, chex.Array]:
    """``curriculum/<group>``: the fraction of this step's envs in each group."""
    return {
        f"curriculum/{name}": (plan.group == i).mean(dtype=jnp.float32)
        for i, name in enumerate(groups)
    }


def restarts(curriculum, cstate: Any, levels: Level, plan: Plan) -> Callable | None:
    """What the step's rollout resets a finished episode to (``ResetsEpisodes``), or None:
    the env replays."""
    if isinstance(curriculum, ResetsEpisodes):
        return curriculum.next_levels(cstate, levels, plan)
    return None
