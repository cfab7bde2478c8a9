"""Levels for the studio: what the editor needs of a family, checks, the curriculum's current
levels and trying the student on a level. Levels travel as the family's text format.

The editor knows two kinds of family: ``grid`` (a level with a ``wall_map``, the maze:
walls, goal, agent and direction on a grid up to ``max_size``) and ``params`` (a control
task: one slider per physical parameter); any other family is edited as text.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ued import inbox as inbox_lib
from ued.grounding import level_store
from ued.parallel import per_seed

MAX_EPISODES = 64  # episodes one try may run
MAX_BUFFER_LEVELS = 64  # levels one buffer request returns


def family_info(exp) -> dict[str, Any]:
    """What the editor needs to draw and check levels of the run's family."""
    env, family = exp.env, exp.family
    example = family.example_level(env)
    out: dict[str, Any] = {
        "family": family.name,
        "example": family.level_to_text(env, example),
        "max_steps": int(env.max_episode_steps(exp.env_params)),
    }
    task = getattr(env, "task", None)
    if hasattr(example, "wall_map"):
        out.update(kind="grid", max_size=int(np.shape(example.wall_map)[0]))
    elif task is not None and hasattr(task, "params"):
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
        out.update(kind="params", params=params)
    else:
        out.update(kind="text")
    return out


def _scalar(x) -> float | None:
    """A float for JSON: None for NaN and infinities."""
    value = float(np.asarray(x).reshape(-1)[0])
    return value if np.isfinite(value) else None


def shortest_path(level) -> list[list[int]]:
    """Cells (x, y) of a shortest agent-to-goal path of a grid level, [] if none."""
    walls = np.asarray(level.wall_map, bool)
    h, w = int(level.height), int(level.width)
    start = tuple(int(v) for v in np.asarray(level.agent_pos))
    goal = tuple(int(v) for v in np.asarray(level.goal_pos))
    parent = {start: None}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        if cell == goal:
            path = []
            while cell is not None:
                path.append(list(cell))
                cell = parent[cell]
            return path[::-1]
        x, y = cell
        for nx, ny in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
            if 0 <= nx < w and 0 <= ny < h and not walls[ny, nx] and (nx, ny) not in parent:
                parent[(nx, ny)] = cell
                queue.append((nx, ny))
    return []


def check(exp, text: str) -> dict[str, Any]:
    """Parses and checks a level: ``valid`` with ``metrics`` (and ``path`` for a grid), or
    ``valid: false`` with ``error`` naming the problem."""
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
    if hasattr(level, "wall_map"):
        out["path"] = shortest_path(jax.device_get(level))
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


def curriculum_levels(
    exp, state, seed: int = 0, limit: int = 16, archive: ArchiveView | None = None
) -> dict[str, Any]:
    """The curriculum's levels in a checkpoint's state: a program archive's fittest slots
    (through ``archive``, the run's ``ArchiveView``), a buffer's top levels by score with
    staleness and edit depth, or a grounding set's levels."""
    seeds = per_seed(state.curriculum, exp.cfg.run.num_seeds)
    cstate = seeds[min(max(seed, 0), len(seeds) - 1)]
    limit = max(1, min(int(limit), MAX_BUFFER_LEVELS))
    if archive is not None and hasattr(cstate, "archive"):
        return archive(cstate, limit)
    found = level_store(cstate)
    if found is None:
        return {"kind": "none", "levels": [], "size": 0, "capacity": 0}
    kind, store = found
    store = jax.device_get(store)
    filled = np.asarray(store.filled, bool)
    capacity = int(filled.shape[0])
    rows = []
    if kind == "buffer":
        scores = np.where(np.isfinite(store.scores), store.scores, -np.inf)
        order = [int(i) for i in np.argsort(-scores, kind="stable") if filled[i]][:limit]
        for slot in order:
            level = jax.tree.map(lambda x, s=slot: x[s], store.levels)
            rows.append(
                {
                    "slot": slot,
                    "score": _scalar(store.scores[slot]),
                    "staleness": int(store.clock - store.last_sampled[slot]),
                    "num_edits": int(store.extras.num_edits[slot]),
                    "best_return": _scalar(store.extras.best_return[slot]),
                    "text": exp.family.level_to_text(exp.env, level),
                }
            )
    else:
        for slot in np.flatnonzero(filled)[:limit]:
            level = jax.tree.map(lambda x, s=int(slot): x[s], store.levels)
            rows.append({"slot": int(slot), "text": exp.family.level_to_text(exp.env, level)})
    return {"kind": kind, "levels": rows, "size": int(filled.sum()), "capacity": capacity}


class ArchiveView:
    """A program curriculum's archive, read from a curriculum state (one seed's): its
    occupied slots fittest first, each with its program, estimates, grid cell and a sample
    level generated from the program with a fixed key. Compiled once per run."""

    def __init__(self, exp):
        cur = exp.curriculum
        self.exp, self.cur, self.space = exp, cur, cur.space
        generate = jax.vmap(cur.space.generate, in_axes=(None, 0))
        self.sample = jax.jit(lambda programs: generate(jax.random.PRNGKey(0), programs))
        self.view = jax.jit(cur.archive_view)

    def __call__(self, cstate, limit: int) -> dict[str, Any]:
        from ued import program_archive as arc

        exp, cur, space = self.exp, self.cur, self.space
        fit, cell, _ = jax.device_get(self.view(cstate))
        a = jax.device_get(cstate.archive)
        filled = np.asarray(a.filled, bool)
        fit = np.asarray(fit, np.float64)
        ranked = np.where(filled & ~np.isnan(fit), fit, -np.inf)
        order = [int(i) for i in np.argsort(-ranked, kind="stable") if filled[i]][:limit]
        levels = jax.device_get(self.sample(jnp.asarray(a.programs)))
        spread = np.asarray(arc.spread(a.lp, a.lp_sq))
        count = int(cstate.count)
        r, grid = cur.options.grid_resolution, cur.grid
        names = space.descriptor_names
        rows = []
        for slot in order:
            c = int(cell[slot])
            level = jax.tree.map(lambda x, s=slot: x[s], levels)
            rows.append(
                {
                    "slot": slot,
                    "program": space.to_dict(a.programs[slot]),
                    "fitness": _scalar(fit[slot]),
                    "lp": _scalar(a.lp[slot]),
                    "lp_spread": _scalar(spread[slot]),
                    "solvable": _scalar(a.solvable[slot]),
                    "descriptors": {n: _scalar(a.descriptor[slot, i]) for i, n in enumerate(names)},
                    "cell": [(c // r**i) % r for i in reversed(range(len(grid)))],
                    "age": max(count - int(a.last_seen[slot]), 0),
                    "born": int(a.born[slot]),
                    "text": exp.family.level_to_text(exp.env, level),
                }
            )
        occupied = len({int(cell[i]) for i in np.flatnonzero(filled)})
        stage = int(cstate.stage)
        return {
            "kind": "archive",
            "levels": rows,
            "size": int(filled.sum()),
            "capacity": int(filled.shape[0]),
            "stage": stage,
            "num_stages": space.num_stages,
            # The specification's bounds: with ``spec: model`` they leave the ladder and the
            # stage counts widenings past its end.
            "stage_bounds": cur.current_bounds(cstate),
            "widen_events": int(cstate.widen_events),
            "grid": [names[i] for i in grid],
            "grid_resolution": r,
            "occupied_cells": occupied,
            "num_cells": cur.num_cells,
            "coverage": occupied / cur.num_cells,
            "updates": count,
        }


def has_archive(exp) -> bool:
    """Whether the run's curriculum keeps a program archive (``ued.curricula.programs``)."""
    cur = exp.curriculum
    return hasattr(cur, "archive_view") and hasattr(cur, "space")


def locate(exp, state, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Every level the curriculum holds, by its text: slot, and for a buffer its score and
    staleness (to find where sent levels are now)."""
    seeds = per_seed(state.curriculum, exp.cfg.run.num_seeds)
    found = level_store(seeds[min(max(seed, 0), len(seeds) - 1)])
    if found is None:
        return {}
    kind, store = found
    store = jax.device_get(store)
    out = {}
    for slot in np.flatnonzero(np.asarray(store.filled, bool)):
        slot = int(slot)
        level = jax.tree.map(lambda x, s=slot: x[s], store.levels)
        row: dict[str, Any] = {"kind": kind, "slot": slot}
        if kind == "buffer":
            row.update(
                score=_scalar(store.scores[slot]),
                staleness=int(store.clock - store.last_sampled[slot]),
            )
        out[exp.family.level_to_text(exp.env, level)] = row
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
        from ued.evaluate import LevelEvaluator
        from ued.gallery import rollout_states

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
