"""Maze generators, editors and named levels."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.editing import menu, repeat
from envs.maze import Maze, family, shortest_path_length
from envs.maze.named import HAND_MADE, SHORTEST_PATHS

NUM_KEYS = 8
# Everything is wall except the agent's and the goal's cells.
FULL = "\n".join([">G" + "#" * 11] + ["#" * 13] * 12)


@pytest.fixture(scope="module")
def env():
    return Maze()


def _valid(env, levels):
    """(N,) bool: the family's validity of each level of a batch."""
    return jax.vmap(lambda level: family.is_valid(env, level))(levels)


def _keys(n=NUM_KEYS, seed=0):
    return jax.random.split(jax.random.key(seed), n)


def _batch_edit(spec, n=32):
    @jax.jit
    def run(key, level):
        return jax.vmap(spec.edit, in_axes=(0, None))(jax.random.split(key, n), level)

    return run


def _equal(a, b) -> bool:
    return all(
        np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def _assert_spanning_tree(free: np.ndarray) -> None:
    """The free cells are connected and have exactly (cells - 1) open adjacencies."""
    cells = int(free.sum())
    passages = int((free[:, 1:] & free[:, :-1]).sum() + (free[1:, :] & free[:-1, :]).sum())
    assert passages == cells - 1
    # Flood fill in plain Python, independent of the library's BFS.
    seen, todo = set(), [tuple(np.argwhere(free)[0])]
    while todo:
        y, x = todo.pop()
        if (y, x) in seen or not (0 <= y < free.shape[0] and 0 <= x < free.shape[1]):
            continue
        if free[y, x]:
            seen.add((y, x))
            todo += [(y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)]
    assert len(seen) == cells


# --- generators ---------------------------------------------------------------------


@pytest.mark.parametrize("size", [3, 7, 13])
def test_perfect_maze_is_a_spanning_tree(env, size):
    levels = jax.jit(jax.vmap(family.generators["perfect_maze"](env, size=size)))(_keys())
    assert bool(jnp.all(_valid(env, levels)))
    assert bool(jnp.all(levels.width == size)) and bool(jnp.all(levels.height == size))
    assert bool(jnp.all(jax.vmap(shortest_path_length)(levels) >= 0))
    walls = np.asarray(levels.wall_map)
    assert walls[:, size:, :].all() and walls[:, :, size:].all()
    for i in range(NUM_KEYS):
        _assert_spanning_tree(~walls[i, :size, :size])
    assert len({w.tobytes() for w in walls}) > 1 or size == 3


def test_random_walls_counts(env):
    fixed = jax.jit(jax.vmap(family.generators["random_walls"](env, num_walls=30)))(_keys())
    assert np.asarray(fixed.wall_map).sum(axis=(1, 2)).tolist() == [30] * NUM_KEYS
    ranged = family.generators["random_walls"](env, num_walls=10, min_walls=5)
    counts = np.asarray(jax.jit(jax.vmap(ranged))(_keys(32)).wall_map).sum(axis=(1, 2))
    assert counts.min() >= 5 and counts.max() <= 10 and len(set(counts.tolist())) > 1


@pytest.mark.parametrize(
    ("name", "options", "fragment"),
    [
        ("random_walls", {"num_walls": -1}, "num_walls"),
        ("random_walls", {"num_walls": 168}, "num_walls"),
        ("random_walls", {"num_walls": 2.5}, "num_walls"),
        ("random_walls", {"num_walls": 5, "min_walls": 6}, "min_walls"),
        ("perfect_maze", {"size": 8}, "odd"),
        ("perfect_maze", {"size": 15}, "size"),
        ("perfect_maze", {"size": 1}, "size"),
    ],
)
def test_generator_option_errors(env, name, options, fragment):
    with pytest.raises(ValueError, match=fragment):
        family.generators[name](env, **options)


# --- editors ---------------------------------------------------------------------------


def test_add_wall_on_full_level_is_a_noop(env):
    level = family.level_from_text(env, FULL)
    spec = family.editors["add_wall"](env)
    assert not bool(spec.feasible(level))
    edited = _batch_edit(spec)(jax.random.key(0), level)
    assert all(_equal(jax.tree.map(lambda x, i=i: x[i], edited), level) for i in range(32))


def test_flip_wall_never_touches_agent_or_goal(env):
    # The only flippable cell is the middle one.
    level = family.level_from_text(env, ">.G")
    edited = _batch_edit(family.editors["flip_wall"](env))(jax.random.key(1), level)
    walls = np.asarray(edited.wall_map)
    assert not walls[:, 0, 0].any() and not walls[:, 0, 2].any()
    assert walls[:, 0, 1].all()
    np.testing.assert_array_equal(walls[:, 1:, :], True)
    assert (np.asarray(edited.agent_pos) == [0, 0]).all()
    assert (np.asarray(edited.goal_pos) == [2, 0]).all()


def test_move_editors_change_position_to_free_cells(env):
    level = family.level_from_text(env, ">..\n.#.\n..G")
    for name, field, other in (
        ("move_goal", "goal_pos", "agent_pos"),
        ("move_agent", "agent_pos", "goal_pos"),
    ):
        edited = _batch_edit(family.editors[name](env))(jax.random.key(2), level)
        moved = np.asarray(getattr(edited, field))
        assert not (moved == np.asarray(getattr(level, field))).all(axis=1).any()
        assert not (moved == np.asarray(getattr(level, other))).all(axis=1).any()
        assert not (moved == [1, 1]).all(axis=1).any()  # the wall
        assert len({tuple(p) for p in moved.tolist()}) > 1
        assert bool(jnp.all(_valid(env, edited)))
        full = family.level_from_text(env, FULL)
        assert not bool(family.editors[name](env).feasible(full))
        assert _equal(family.editors[name](env).edit(jax.random.key(0), full), full)


def test_menu_picks_only_feasible_editors(env):
    entries = {
        "add": (family.editors["add_wall"](env), 1.0),
        "remove": (family.editors["remove_wall"](env), 1.0),
    }
    run = jax.jit(jax.vmap(menu(entries), in_axes=(0, None)))
    empty, full = family.example_level(env), family.level_from_text(env, FULL)
    added = run(_keys(32), empty)  # nothing to remove: every pick adds a wall
    assert np.asarray(added.wall_map).sum(axis=(1, 2)).tolist() == [1] * 32
    removed = run(_keys(32), full)  # nothing to add: every pick removes one
    full_count = int(np.asarray(full.wall_map).sum())
    assert np.asarray(removed.wall_map).sum(axis=(1, 2)).tolist() == [full_count - 1] * 32
    stuck = family.level_from_text(env, ">G")  # no edit is possible at all
    assert _equal(jax.jit(menu(entries))(jax.random.key(0), stuck), stuck)


def test_repeat_counts_edits(env):
    edit_n = jax.jit(repeat(family.editors["add_wall"](env).edit, max_edits=4))
    level = family.example_level(env)
    assert _equal(edit_n(jax.random.key(0), level, jnp.int32(0)), level)
    for n in (1, 3, 4):
        out = edit_n(jax.random.key(n), level, jnp.int32(n))
        assert int(np.asarray(out.wall_map).sum()) == n
        assert bool(family.is_valid(env, out))


def test_full_menu_with_repeat_keeps_validity(env):
    entries = {name: (make(env), 1.0) for name, make in family.editors.items()}
    edit_n = repeat(menu(entries), max_edits=5)
    levels = jax.jit(jax.vmap(family.generators["random_walls"](env)))(_keys(16, seed=3))
    out = jax.jit(jax.vmap(edit_n))(_keys(16, seed=4), levels, jnp.arange(16) % 6)
    assert bool(jnp.all(_valid(env, out)))
    assert _equal(jax.tree.map(lambda x: x[0], out), jax.tree.map(lambda x: x[0], levels))
    assert not _equal(out, levels)


# --- named levels ---------------------------------------------------------------------


def test_named_levels_fit_the_env_and_match_recorded_paths():
    small, large = family.named_levels(Maze()), family.named_levels(Maze(max_size=25))
    assert set(small) == set(HAND_MADE) and len(HAND_MADE) >= 10
    assert set(large) == set(SHORTEST_PATHS) and set(small) < set(large)
    names = sorted(large)
    batch = family.stack([large[n] for n in names])
    assert bool(jnp.all(_valid(Maze(max_size=25), batch)))
    paths = jax.jit(jax.vmap(shortest_path_length))(batch)
    assert dict(zip(names, paths.tolist(), strict=True)) == {n: SHORTEST_PATHS[n] for n in names}
    for name in ("perfect_maze_15", "perfect_maze_19", "perfect_maze_25"):
        level = large[name]
        size = int(level.width)
        assert size == int(name.rsplit("_", 1)[1]) == int(level.height)
        _assert_spanning_tree(~np.asarray(level.wall_map)[:size, :size])


# --- solution paths -------------------------------------------------------------------


def test_solution_path_known_answer(env):
    level = family.level_from_text(env, ">.#\n..G")
    # Ties between shortest paths go to the first move in order right, left, down, up.
    assert family.solution_path(env, level) == [[0, 0], [1, 0], [1, 1], [2, 1]]
    walled = family.level_from_text(env, ">#G")
    assert family.solution_path(env, walled) == []


def test_solution_path_is_a_shortest_walk_from_agent_to_goal():
    """On named mazes and random-wall levels (some unsolvable), the path has
    ``shortest_path_length`` moves, starts at the agent, ends at the goal and steps to a
    4-neighbouring free cell each move; ``[]`` exactly when the goal is unreachable."""
    env = Maze(max_size=25)
    named = list(family.named_levels(env).values())
    make = family.generators["random_walls"](env, num_walls=250)
    drawn = family.unstack(jax.jit(jax.vmap(make))(_keys(12)))
    levels = [jax.device_get(level) for level in named + drawn]
    lengths = jax.jit(jax.vmap(shortest_path_length))(family.stack(levels)).tolist()
    assert -1 in lengths and max(lengths) > 50  # both cases are exercised
    for level, length in zip(levels, lengths, strict=True):
        path = family.solution_path(env, level)
        if length < 0:
            assert path == []
            continue
        assert len(path) == length + 1
        assert path[0] == level.agent_pos.tolist() and path[-1] == level.goal_pos.tolist()
        walls, w, h = np.asarray(level.wall_map), int(level.width), int(level.height)
        for (x0, y0), (x1, y1) in zip(path[:-1], path[1:], strict=True):
            assert abs(x1 - x0) + abs(y1 - y0) == 1
            assert 0 <= x1 < w and 0 <= y1 < h and not walls[y1, x1]
