"""Maze level editors: ``make_<name>(env) -> EditSpec(edit, feasible)``.

Each edit changes one cell inside the level area, keeps shapes, dtypes and validity, and is
a no-op when ``feasible(level)`` is False (so a weighted ``envs.editing.menu`` can skip it).
Editors keep levels valid, not solvable: a wall may cut the agent off from the goal.
"""

from __future__ import annotations

from collections.abc import Callable

import chex
import jax.numpy as jnp

from envs.core import EditSpec
from envs.maze.env import Maze
from envs.maze.level import Level, cell_mask, inside_mask, pick_cell


def _masks(level: Level) -> tuple[chex.Array, chex.Array, chex.Array]:
    """(inside, agent, goal) cell masks, each (H, W) bool."""
    shape = level.wall_map.shape
    inside = inside_mask(level.width, level.height, shape)
    return inside, cell_mask(level.agent_pos, shape), cell_mask(level.goal_pos, shape)


def _wall_editor(candidates: Callable[[Level], chex.Array], op: str) -> EditSpec:
    """An editor that applies ``op`` ("add", "remove" or "flip") to one candidate cell."""

    def feasible(level: Level) -> chex.Array:
        return jnp.any(candidates(level))

    def edit(key: chex.PRNGKey, level: Level) -> Level:
        cand = candidates(level)
        target = cell_mask(pick_cell(key, cand), cand.shape) & cand
        walls = level.wall_map
        if op == "add":
            walls = walls | target
        elif op == "remove":
            walls = walls & ~target
        else:
            walls = walls ^ target
        return level.replace(wall_map=walls)

    return EditSpec(edit=edit, feasible=feasible)


def make_add_wall(env: Maze) -> EditSpec:
    """Turns a random free cell (not the agent's or the goal's) into a wall."""

    def candidates(level: Level) -> chex.Array:
        inside, agent, goal = _masks(level)
        return inside & ~level.wall_map & ~agent & ~goal

    return _wall_editor(candidates, "add")


def make_remove_wall(env: Maze) -> EditSpec:
    """Turns a random wall inside the level area into a free cell."""

    def candidates(level: Level) -> chex.Array:
        inside, _, _ = _masks(level)
        return inside & level.wall_map

    return _wall_editor(candidates, "remove")


def make_flip_wall(env: Maze) -> EditSpec:
    """Flips a random cell of the level area that is neither the agent's nor the goal's."""

    def candidates(level: Level) -> chex.Array:
        inside, agent, goal = _masks(level)
        return inside & ~agent & ~goal

    return _wall_editor(candidates, "flip")


def _move_editor(field: str) -> EditSpec:
    """Moves ``field`` (agent_pos or goal_pos) to a random free cell that is neither the
    agent's nor the goal's (so the edit always changes the level when feasible)."""

    def candidates(level: Level) -> chex.Array:
        inside, agent, goal = _masks(level)
        return inside & ~level.wall_map & ~agent & ~goal

    def feasible(level: Level) -> chex.Array:
        return jnp.any(candidates(level))

    def edit(key: chex.PRNGKey, level: Level) -> Level:
        cand = candidates(level)
        new = jnp.where(jnp.any(cand), pick_cell(key, cand), getattr(level, field))
        return level.replace(**{field: new.astype(jnp.int32)})

    return EditSpec(edit=edit, feasible=feasible)


def make_move_goal(env: Maze) -> EditSpec:
    """Moves the goal to a random free cell other than the agent's and its own."""
    return _move_editor("goal_pos")


def make_move_agent(env: Maze) -> EditSpec:
    """Moves the agent (keeping its direction) to a random free cell other than the goal's
    and its own."""
    return _move_editor("agent_pos")


editors: dict[str, Callable[[Maze], EditSpec]] = {
    "add_wall": make_add_wall,
    "remove_wall": make_remove_wall,
    "flip_wall": make_flip_wall,
    "move_goal": make_move_goal,
    "move_agent": make_move_agent,
}
