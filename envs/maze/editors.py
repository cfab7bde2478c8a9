"""Maze level editors: ``make_<name>(env) -> EditSpec(edit, feasible)``.

Each edit changes one cell inside the level area, keeps shapes, dtypes and validity, and is
a no-op when ``feasible(level)`` is False (so a weighted ``envs.editing.menu`` can skip it).
Editors keep levels valid, not solvable: a wall may cut the agent off from the goal.

``add_wall``, ``remove_wall``, ``flip_wall`` and the moves pick among the cells where the
edit changes something. ``set_cell`` is dcd's ACCEL editor (facebookresearch/dcd
``envs/multigrid/adversarial.py``, ``mutate_level`` with ``editor_actions``
``walls_none_goal``): a uniformly chosen cell of the level area becomes a wall, a free cell
or the goal, with equal probability, whatever it held. Walls therefore accumulate from an
empty room (a third of edits add one, a third clear a cell that is a wall only as often as
walls are common: about 25 walls on 13x13 after 100 edits), where the add/remove menu's walls
random-walk near a handful.
"""

from __future__ import annotations

from collections.abc import Callable

import chex
import jax
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


def make_set_cell(env: Maze, goal: bool = True) -> EditSpec:
    """dcd's editor: a uniformly random cell of the level area becomes a wall, a free cell
    or (with ``goal``, dcd's ``walls_none_goal``; without, ``walls_none``) the goal, each
    equally likely. An agent or goal on the cell is moved to a random free cell (dcd clears
    the cell and places the missing agent or goal afterwards); setting what a cell already
    holds leaves the level as it is (dcd's no-op edits). Infeasible only when the level has
    no cell to place a displaced agent or goal on (then unchanged)."""
    if not isinstance(goal, bool):
        raise ValueError(f"set_cell option goal={goal!r}; must be true or false")
    num_actions = 3 if goal else 2  # 0 wall, 1 free, 2 goal

    def feasible(level: Level) -> chex.Array:
        inside, _, _ = _masks(level)
        return inside.sum() >= 3

    def edit(key: chex.PRNGKey, level: Level) -> Level:
        cell_key, action_key, goal_key, agent_key = jax.random.split(key, 4)
        inside, agent, _ = _masks(level)
        pos = pick_cell(cell_key, inside)
        cell = cell_mask(pos, inside.shape)
        action = jax.random.randint(action_key, (), 0, num_actions)
        walls = jnp.where(action == 0, level.wall_map | cell, level.wall_map & ~cell)
        on_goal = jnp.all(pos == level.goal_pos)
        on_agent = jnp.all(pos == level.agent_pos)
        # The goal: set here (action 2), displaced (a wall or a cleared cell on it), or kept.
        goal_lost = on_goal & (action != 2)
        free = inside & ~walls
        goal_options = free & ~agent
        new_goal = jnp.where(
            action == 2,
            pos,
            jnp.where(goal_lost, pick_cell(goal_key, goal_options), level.goal_pos),
        )
        goal_ok = (action == 2) | ~goal_lost | jnp.any(goal_options)
        # The agent: displaced by anything set on its cell, to a free cell not the goal's.
        agent_options = free & ~cell_mask(new_goal, inside.shape)
        new_agent = jnp.where(on_agent, pick_cell(agent_key, agent_options), level.agent_pos)
        agent_ok = ~on_agent | jnp.any(agent_options)
        edited = level.replace(
            wall_map=walls,
            goal_pos=new_goal.astype(jnp.int32),
            agent_pos=new_agent.astype(jnp.int32),
        )
        ok = goal_ok & agent_ok
        return jax.tree.map(lambda e, o: jnp.where(ok, e, o), edited, level)

    return EditSpec(edit=edit, feasible=feasible)


editors: dict[str, Callable[[Maze], EditSpec]] = {
    "set_cell": make_set_cell,
    "add_wall": make_add_wall,
    "remove_wall": make_remove_wall,
    "flip_wall": make_flip_wall,
    "move_goal": make_move_goal,
    "move_agent": make_move_agent,
}
