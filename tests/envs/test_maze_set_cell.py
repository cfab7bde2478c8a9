"""dcd's ACCEL editor (``set_cell``): known answers, validity, and walls that accumulate.

From an empty 13x13 room, 20 rounds of 5 edits (no selection in between): dcd's editor sets
a uniformly chosen cell to wall, free or goal, so walls accumulate towards a third of the
cells (about 25 after 100 edits: 56 (1 - exp(-100 / 169)) = 25); ued's add/remove menu picks
among free cells and walls and its wall count random-walks near a handful (ACCEL's growth of
complexity, which ``accel_60b_empty.yaml`` needs, is lost with it).
"""

import jax
import numpy as np
import pytest

from envs.editing import menu, repeat
from envs.maze import family
from envs.maze.editors import editors, make_set_cell
from envs.maze.env import Maze

ENV = Maze(max_size=13)


def walls_after(names, rounds=20, edits=5, n=256):
    edit = repeat(menu({k: (editors[k](ENV), 1.0) for k in names}), edits)
    empty = family.generators["empty_room"](ENV)

    def one(key):
        start_key, edit_key = jax.random.split(key)

        def body(i, level):
            return edit(jax.random.fold_in(edit_key, i), level, edits)

        level = jax.lax.fori_loop(0, rounds, body, empty(start_key))
        return level.wall_map.sum(), family.is_valid(ENV, level)

    walls, valid = jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(0), n))
    return float(walls.mean()), bool(valid.all())


def test_dcd_editor_grows_walls_from_empty_rooms_and_the_menu_does_not():
    dcd, dcd_valid = walls_after(["set_cell"])
    menu_walls, menu_valid = walls_after(["add_wall", "remove_wall", "move_goal"])
    assert dcd_valid and menu_valid
    assert 21 < dcd < 29  # measured 25.0
    assert menu_walls < 10  # measured 6.8


def level(text):
    return family.level_from_text(Maze(max_size=3), text)


def test_set_cell_moves_what_it_overwrites():
    env = Maze(max_size=3)
    spec = make_set_cell(env)
    start = level(">.G\n...\n...")
    seen = {"wall": 0, "goal_moved": 0, "agent_moved": 0}
    for i in range(300):
        out = spec.edit(jax.random.PRNGKey(i), start)
        assert bool(family.is_valid(env, out))
        changed = np.flatnonzero(
            np.asarray(out.wall_map).ravel() != np.asarray(start.wall_map).ravel()
        )
        assert changed.size <= 1  # one cell at most
        seen["wall"] += int(changed.size)
        seen["goal_moved"] += int(np.any(np.asarray(out.goal_pos) != [2, 0]))
        seen["agent_moved"] += int(np.any(np.asarray(out.agent_pos) != [0, 0]))
    # About a third of edits add a wall (on 1 of 9 cells it displaces the agent or goal), the
    # goal action moves the goal on 8 of 9 cells, and the agent moves when its cell is hit.
    assert 70 < seen["wall"] < 130 and seen["goal_moved"] > 80 and 5 < seen["agent_moved"] < 60
    without_goal = make_set_cell(env, goal=False)
    for i in range(50):
        out = without_goal.edit(jax.random.PRNGKey(i), start)
        assert bool(family.is_valid(env, out))
    with pytest.raises(ValueError, match="goal"):
        make_set_cell(env, goal="yes")
