"""Levels for the studio: what the editor needs of a family, checks, the curriculum's current
levels and trying the student on a level. Levels travel as the family's text format.

The family says how its levels are edited (``Family.edit_form``): ``grid`` (the maze: walls,
goal, agent and direction on a grid up to ``max_size``), ``params`` (a control task: one
slider per physical parameter) or, by default, ``text``; and which path to draw over a
level (``Family.solution_path``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ued.curricula.base import LevelView, level_view, taken_levels
from ued.human import inbox as inbox_lib
from ued.step.parallel import per_seed

MAX_EPISODES = 64  # episodes one try may run
MAX_BUFFER_LEVELS = 64  # levels one buffer request returns


def family_info(exp) -> dict[str, Any]:
    """What the editor needs to draw and check levels of the run's family: its example
    level, the horizon and the family's ``edit_form`` (the editor's kind and parameters)."""
    env, family = exp.env, exp.family
    example = family.example_level(env)
    return {
        "family": family.name,
        "example": family.level_to_text(env, example),
        "max_steps": int(env.max_episode_steps(exp.env_params)),
        **family.edit_form(env),
    }


def _scalar(x) -> float | None:
    """A float for JSON: None for NaN and infinities."""
    value = float(np.asarray(x).reshape(-1)[0])
    return value if np.isfinite(value) else None


def check(exp, text: str) -> dict[str, Any]:
    """Parses and checks a level: ``valid`` with ``metrics`` (and ``path``, the family's
    ``solution_path``, where it has one), or ``valid: false`` with ``error`` naming the
    problem."""
    try:
        level = inbox_lib.parse_level(exp.family, exp.env, text)
    except ValueError as err:
        return {"valid": False, "error": str(err)}
    metrics = exp.family.level_metrics(exp.env, level)
    out = {
        "valid": True,
        "text": exp.family.level_to_text(exp.env, level),
        "metrics": {k: _scalar(v) for k, v in metrics.items()},
    }
    path = exp.family.solution_path(exp.env, jax.device_get(level))
    if path is not None:
        out["path"] = path
    return out


def named_levels(exp, last_eval: dict[str, Any]) -> list[dict[str, Any]]:
    """The family's named levels with their latest solve rate (from ``eval/<name>/...``)."""
    out = []
    for name, level in exp.family.named_levels(exp.env).items():
        rate = last_eval.get(f"eval/{name}/solve_rate")
        out.append(
            {"name": name, "text": exp.family.level_to_text(exp.env, level), "solve_rate": rate}
        )
    return out


def _json(value):
    """A column value as JSON: numbers (NaN and infinities as None), lists and dicts."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    value = np.asarray(value)
    if value.dtype.kind == "U":
        return str(value) if value.ndim == 0 else value.tolist()
    if value.ndim:
        return [_json(v) for v in value]
    if value.dtype == bool:
        return bool(value)
    if np.issubdtype(value.dtype, np.integer):
        return int(value)
    return _scalar(value)


def _view(exp, state, seed: int) -> LevelView | None:
    seeds = per_seed(state.curriculum, exp.cfg.run.num_seeds)
    return level_view(exp.curriculum, seeds[min(max(seed, 0), len(seeds) - 1)])


def _row(exp, view: LevelView, slot: int) -> dict[str, Any]:
    row = {"slot": slot, **{name: _json(column[slot]) for name, column in view.columns.items()}}
    return {**row, "text": exp.family.level_to_text(exp.env, view.level(slot))}


def curriculum_levels(exp, state, seed: int = 0, limit: int = 16) -> dict[str, Any]:
    """The levels the curriculum shows (``ShowsLevels``) in a checkpoint's state, best first
    with the view's columns (a buffer's score and staleness, an archive's programs and
    estimates), and the view's summary; ``kind: none`` for a curriculum that shows none."""
    view = _view(exp, state, seed)
    if view is None:
        return {"kind": "none", "levels": [], "size": 0, "capacity": 0}
    limit = max(1, min(int(limit), MAX_BUFFER_LEVELS))
    order = view.order()
    return {
        "kind": view.kind,
        "levels": [_row(exp, view, slot) for slot in order[:limit]],
        "size": len(order),
        "capacity": view.capacity,
        **{k: _json(v) for k, v in view.summary.items()},
    }


LOCATED_COLUMNS = ("score", "staleness")  # what the inbox page says of a found level


def locate(exp, state, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Every level the curriculum keeps sent levels in (``TakesLevels.taken_levels``), by
    its text: the set's kind, the slot, and a score and staleness where it has them."""
    seeds = per_seed(state.curriculum, exp.cfg.run.num_seeds)
    view = taken_levels(exp.curriculum, seeds[min(max(seed, 0), len(seeds) - 1)])
    if view is None:
        return {}
    out = {}
    for slot in np.flatnonzero(np.asarray(view.filled, bool)):
        slot = int(slot)
        row: dict[str, Any] = {"kind": view.kind, "slot": slot}
        row.update({k: _json(view.columns[k][slot]) for k in LOCATED_COLUMNS if k in view.columns})
        out[exp.family.level_to_text(exp.env, view.level(slot))] = row
    return out


def _trajectory(states, length: int) -> dict[str, list]:
    """Per step, the small fields of the env state (the maze's pose, a control task's
    physics), as lists; the played level itself is left out."""
    out: dict[str, list] = {}
    flat = jax.tree_util.tree_flatten_with_path(states)[0]
    for path, leaf in flat:
        name = ".".join(str(getattr(k, "name", getattr(k, "key", k))) for k in path)
        if name.startswith("level") or np.asarray(leaf).ndim == 0:
            continue
        leaf = np.asarray(leaf)[:length]
        if leaf[0].size <= 8:
            out[name] = leaf.astype(np.float64).round(5).tolist()
    return out


@dataclasses.dataclass
class Tryout:
    """Compiled functions of one run's experiment that try a student on one level."""

    exp: Any
    episodes: int

    def __post_init__(self):
        from ued.evaluation.evaluate import LevelEvaluator
        from ued.evaluation.gallery import rollout_states

        exp = self.exp
        self.max_steps = int(exp.env.max_episode_steps(exp.env_params))
        self.evaluate = LevelEvaluator(
            exp.env, exp.env_params, exp.network, self.episodes, self.max_steps, 1
        )
        self.episode = jax.jit(lambda k, p, lv: rollout_states(k, exp, p, lv, self.max_steps))

    def __call__(self, key, params, level) -> dict[str, Any]:
        eval_key, episode_key = jax.random.split(key)
        batch = self.exp.family.stack([level])
        result = self.evaluate(eval_key, params, batch)
        first, states, rewards, dones, successes = jax.device_get(
            self.episode(episode_key, params, level)
        )
        ends = np.flatnonzero(dones)
        length = int(ends[0]) + 1 if ends.size else self.max_steps
        start = jax.tree.map(lambda x: np.asarray(x)[None], first)
        joined = jax.tree.map(lambda a, b: np.concatenate([a, b[:length]]), start, states)
        return {
            "episodes": self.episodes,
            "solve_rate": float(result["solve_rate"][0]),
            "mean_return": float(result["mean_return"][0]),
            "mean_length": float(result["mean_length"][0]),
            "episode": {
                "return": float(rewards[:length].sum()),
                "length": length,
                "solved": bool(ends.size and successes[ends[0]]),
                "steps": _trajectory(joined, length + 1),
            },
        }


def student_params(exp, state, seed: int = 0):
    """One seed's student parameters from a (possibly seeded) state."""
    params = state.student.params
    if exp.cfg.run.num_seeds > 1:
        params = jax.tree.map(lambda x: x[min(max(seed, 0), exp.cfg.run.num_seeds - 1)], params)
    return jax.tree.map(jnp.asarray, params)
