"""Known-answer tests of the maze family: text format, BFS, dynamics, observations."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.maze import Maze, distance_map, family, shortest_path_length

# Agent (0, 0) facing right, goal (3, 2). Shortest path by hand:
# (0,0) -> (1,0) -> (2,0) -> (2,1) -> (2,2) -> (3,2): 5 moves.
HOOK = """
>..#
##.#
...G
"""
WALLED_OFF = """
>.#.
..#G
"""


@pytest.fixture(scope="module")
def env():
    return Maze()


@pytest.fixture(scope="module")
def params(env):
    return env.default_params()


@pytest.fixture(scope="module")
def fns(env):
    return jax.jit(env.reset_to_level), jax.jit(env.step)


@pytest.fixture(scope="module")
def bfs():
    return jax.jit(shortest_path_length)


def _equal(a, b) -> bool:
    return all(
        np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def _run(fns, params, level, actions):
    reset, step = fns
    obs0, state0 = reset(jax.random.key(0), level, params)
    state, outs = state0, []
    for i, action in enumerate(actions):
        out = step(jax.random.key(i + 1), state, jnp.int32(action), params)
        outs.append(out)
        state = out.state
    return (obs0, state0), outs


# --- text format --------------------------------------------------------------------


def test_text_fields_padding_and_round_trip(env):
    level = family.level_from_text(env, HOOK)
    assert (int(level.width), int(level.height)) == (4, 3)
    assert level.agent_pos.tolist() == [0, 0] and int(level.agent_dir) == 0
    assert level.goal_pos.tolist() == [3, 2]
    walls = np.ones((13, 13), bool)
    walls[:3, :4] = [[0, 0, 0, 1], [1, 1, 0, 1], [0, 0, 0, 0]]
    np.testing.assert_array_equal(np.asarray(level.wall_map), walls)
    assert level.wall_map.dtype == jnp.bool_ and level.agent_pos.dtype == jnp.int32
    assert family.level_to_text(env, level) == HOOK.strip()


def test_jaxued_convention_loads(env, bfs):
    # Triple-quoted with surrounding newlines, as JaxUED's prefabs are written; each
    # direction character maps to the minigrid direction index.
    for char, direction in zip(">v<^", range(4), strict=True):
        level = family.level_from_text(env, f"\n..#..\n.{char}#G.\n.....\n")
        assert int(level.agent_dir) == direction
        assert level.agent_pos.tolist() == [1, 1] and level.goal_pos.tolist() == [3, 1]
        assert int(bfs(level)) == 4
    # Indentation and Windows line ends are tolerated too.
    indented = family.level_from_text(env, "    ..#..\r\n    .^#G.\r\n    .....\r\n")
    assert _equal(indented, family.level_from_text(env, "..#..\n.^#G.\n....."))


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (">.x\n..G", ["line 1, column 3", "'x'"]),
        ("\n\n>.x\n..G", ["line 3, column 3"]),
        (">..\n..\n..G", ["line 2, column 3", "ragged"]),
        ("...\n..G", ["no agent"]),
        (">.<\n..G", ["line 1, column 3", "second agent", "line 1, column 1"]),
        (">..\n...", ["no goal"]),
        (">G.\n..G", ["line 2, column 3", "second goal", "line 1, column 2"]),
        (">" + "." * 12 + "G", ["line 1, column 14", "max_size 13"]),
        ("\n".join([">G"] + [".."] * 13), ["line 14, column 1", "14 rows"]),
        (">..\n\n..G", ["line 2", "blank line"]),
        ("\n  \n", ["empty"]),
    ],
)
def test_text_errors_name_line_and_column(env, text, fragments):
    with pytest.raises(ValueError) as err:
        family.level_from_text(env, text)
    for fragment in fragments:
        assert fragment in str(err.value)


def test_multi_level_file(env, tmp_path):
    path = tmp_path / "levels.txt"
    path.write_text(HOOK + "\n\n" + WALLED_OFF)
    levels = family.levels_from_file(env, path)
    assert len(levels) == 2
    assert _equal(levels[0], family.level_from_text(env, HOOK))
    assert _equal(levels[1], family.level_from_text(env, WALLED_OFF))
    text = family.levels_to_text(env, family.stack(levels))
    assert text == HOOK.strip() + "\n\n" + WALLED_OFF.strip() + "\n"
    assert all(
        _equal(a, b) for a, b in zip(family.levels_from_text(env, text), levels, strict=True)
    )
    path.write_text(HOOK + "\n\n>.x\n..G\n")
    with pytest.raises(
        ValueError, match=r"levels\.txt: level 2 \(starting on line 7\): line 7, column 3"
    ):
        family.levels_from_file(env, path)


# --- validity, BFS, metrics -----------------------------------------------------------


def test_shortest_path_known_answers(env, bfs):
    hook, walled = family.level_from_text(env, HOOK), family.level_from_text(env, WALLED_OFF)
    assert int(bfs(hook)) == 5
    assert int(bfs(walled)) == -1
    batch = jax.jit(jax.vmap(shortest_path_length))(family.stack([hook, walled]))
    assert batch.tolist() == [5, -1]
    dist = np.asarray(distance_map(~hook.wall_map, hook.agent_pos))
    assert dist[2, 3] == 5 and dist[1, 0] == -1 and dist[0, 0] == 0
    m = jax.jit(lambda level: family.level_metrics(env, level))(hook)
    assert {k: float(v) for k, v in m.items()} == {
        "shortest_path": 5.0,
        "num_walls": 4.0,
        "solvable": 1.0,
    }
    assert float(family.level_metrics(env, walled)["solvable"]) == 0.0


def test_bfs_never_uses_padding(env, bfs):
    # If the padding row below were free, the agent could walk round the wall.
    level = family.level_from_text(env, ">#G\n.#.")
    assert int(bfs(level)) == -1
    unpadded = level.replace(wall_map=level.wall_map.at[2:, :].set(False))
    assert int(bfs(unpadded)) == -1


def test_is_valid_cases(env):
    level = family.level_from_text(env, HOOK)
    assert bool(family.is_valid(env, level))
    bad = {
        "agent on wall": level.replace(agent_pos=jnp.array([0, 1], jnp.int32)),
        "goal on agent": level.replace(goal_pos=level.agent_pos),
        "agent outside width": level.replace(agent_pos=jnp.array([4, 0], jnp.int32)),
        "goal off grid": level.replace(goal_pos=jnp.array([-1, 0], jnp.int32)),
        "bad direction": level.replace(agent_dir=jnp.array(4, jnp.int32)),
        "free padding": level.replace(wall_map=level.wall_map.at[5, 5].set(False)),
        "zero width": level.replace(width=jnp.array(0, jnp.int32)),
    }
    for name, lv in bad.items():
        assert not bool(family.is_valid(env, lv)), name
    assert not bool(family.is_valid(Maze(max_size=9), level))  # another env's grid size


# --- dynamics ---------------------------------------------------------------------------


def test_reward_at_goal_after_known_actions(env, params, fns):
    level = family.level_from_text(env, HOOK)
    # forward, forward, right (face down), forward, forward, left (face right), forward
    _, outs = _run(fns, params, level, [2, 2, 1, 2, 2, 0, 2])
    poses = [(o.state.env_state.agent_pos.tolist(), int(o.state.env_state.agent_dir)) for o in outs]
    assert poses[:6] == [
        ([1, 0], 0),
        ([2, 0], 0),
        ([2, 0], 1),
        ([2, 1], 1),
        ([2, 2], 1),
        ([2, 2], 0),
    ]
    assert [bool(o.done) for o in outs] == [False] * 6 + [True]
    assert [float(o.reward) for o in outs[:6]] == [0.0] * 6
    assert float(outs[-1].reward) == pytest.approx(1 - 0.9 * 7 / 250)
    assert [bool(o.info["success"]) for o in outs] == [False] * 6 + [True]


def test_turning_and_walls_block(env, params, fns):
    level = family.level_from_text(env, HOOK)
    _, outs = _run(fns, params, level, [0, 0, 0, 0, 1, 2, 1, 2])
    dirs = [int(o.state.env_state.agent_dir) for o in outs]
    assert dirs == [3, 2, 1, 0, 1, 1, 2, 2]
    # Facing down into a wall, then facing left into the grid edge: no move.
    assert all(o.state.env_state.agent_pos.tolist() == [0, 0] for o in outs)
    assert [int(o.state.env_state.time) for o in outs] == list(range(1, 9))


def test_state_holds_the_level_and_the_current_pose(env, params, fns):
    level = family.level_from_text(env, HOOK)
    _, outs = _run(fns, params, level, [2, 1])
    state = outs[-1].state.env_state
    assert _equal(state.level, level)  # the level played, start pose included
    now = state.current_level()
    assert now.agent_pos.tolist() == [1, 0] and int(now.agent_dir) == 1
    assert _equal(now.replace(agent_pos=level.agent_pos, agent_dir=level.agent_dir), level)


def test_padding_blocks_even_if_not_marked_wall(env, params, fns):
    level = family.level_from_text(env, "..>\nG..")
    _, outs = _run(fns, params, level, [2])
    assert outs[0].state.env_state.agent_pos.tolist() == [2, 0]
    unpadded = level.replace(wall_map=jnp.zeros_like(level.wall_map))
    _, outs = _run(fns, params, unpadded, [2])
    assert outs[0].state.env_state.agent_pos.tolist() == [2, 0]


def test_step_compiles_once_for_all_level_sizes(env, params):
    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(state, action):
        return env.step(jax.random.key(0), state, action, params)

    for text in (HOOK, WALLED_OFF, ">G", "\n".join(["." * 13] * 12 + ["G" + "." * 11 + "<"])):
        _, state = env.reset_to_level(jax.random.key(0), family.level_from_text(env, text), params)
        assert step(state, jnp.int32(0)).state.env_state.time.tolist() == 1


def test_time_limit_ends_with_zero_reward(params):
    env = Maze(max_steps=5)
    reset, step = jax.jit(env.reset_to_level), jax.jit(env.step)
    level = family.level_from_text(env, HOOK)
    _, outs = _run((reset, step), params, level, [0] * 5)
    assert [bool(o.done) for o in outs] == [False] * 4 + [True]
    assert all(float(o.reward) == 0.0 for o in outs)
    assert not bool(outs[-1].info["success"])
    assert int(outs[-1].state.env_state.time) == 0  # replayed from the start
    assert env.max_episode_steps(params) == 5


def test_auto_replay_restores_initial_state_and_obs(env, params, fns):
    level = family.level_from_text(env, HOOK)
    (obs0, state0), outs = _run(fns, params, level, [2, 2, 1, 2, 2, 0, 2])
    last = outs[-1]
    assert bool(last.done)
    assert _equal(last.state.env_state, last.state.init_state)
    assert _equal(last.state.env_state, state0.env_state)
    assert _equal(last.obs, obs0)
    assert not _equal(outs[-2].obs, obs0)


# --- observations -------------------------------------------------------------------------


def test_egocentric_view_known_answers(env, params, fns):
    level = family.level_from_text(env, HOOK)
    (obs, _), outs = _run(fns, params, level, [1])
    # Facing right from (0, 0): rows are distance ahead 4..0, columns left..right.
    wall_right = [
        [1, 1, 1, 1, 1],
        [1, 1, 1, 1, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 0, 1, 0],
        [1, 1, 0, 1, 0],
    ]
    goal_right = np.zeros((5, 5), np.uint8)
    goal_right[1, 4] = 1
    assert obs["image"].shape == (5, 5, 3) and obs["image"].dtype == jnp.uint8
    np.testing.assert_array_equal(obs["image"][..., 0], wall_right)
    np.testing.assert_array_equal(obs["image"][..., 1], goal_right)
    np.testing.assert_array_equal(obs["image"][..., 2], 0)
    assert int(obs["direction"]) == 0 and obs["direction"].dtype == jnp.int32
    # After turning right (facing down); the goal is out of view.
    wall_down = [[1] * 5, [1] * 5, [0, 0, 0, 1, 1], [0, 1, 1, 1, 1], [0, 0, 0, 1, 1]]
    image = outs[0].obs["image"]
    np.testing.assert_array_equal(image[..., 0], wall_down)
    np.testing.assert_array_equal(image[..., 1], 0)
    assert int(outs[0].obs["direction"]) == 1


def test_fully_observed(params):
    env = Maze(fully_observed=True)
    level = family.level_from_text(env, HOOK)
    obs, _ = env.reset_to_level(jax.random.key(0), level, params)
    image = np.asarray(obs["image"])
    assert image.shape == (13, 13, 3) and image.dtype == np.uint8
    np.testing.assert_array_equal(image[..., 0], np.asarray(level.wall_map))
    assert image[..., 1].sum() == 1 and image[2, 3, 1] == 1
    assert image[..., 2].sum() == 1 and image[0, 0, 2] == 1
    space = env.observation_space(params)
    assert space.spaces["image"].shape == (13, 13, 3)


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"view_size": 4}, "view_size"),
        ({"view_size": 0}, "view_size"),
        ({"max_size": 1}, "max_size"),
        ({"max_size": 13.0}, "max_size"),
        ({"max_steps": 0}, "max_steps"),
        ({"fully_observed": 1}, "fully_observed"),
    ],
)
def test_env_option_errors(options, name):
    with pytest.raises(ValueError, match=name):
        Maze(**options)
