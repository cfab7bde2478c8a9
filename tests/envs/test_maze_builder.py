"""The maze level builder (PAIRED's adversary env): any action sequence builds a valid level."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.core import get_family
from envs.maze import Maze, MazeBuilder, family


class Runner:
    """Builds a fixed-size batch of levels from action sequences, one jitted vmapped step
    at a time (compiled once per builder, whatever the sequence length)."""

    def __init__(self, builder: MazeBuilder, batch: int):
        self.builder, self.batch = builder, batch
        self._reset = jax.jit(jax.vmap(builder.reset))
        self._step = jax.jit(jax.vmap(builder.step))
        self._level = jax.jit(jax.vmap(builder.to_level))

    def __call__(self, key, actions):
        """actions (B <= batch, S) -> (levels, observations with leaves (S + 1, B, ...),
        time (B,)); only the first B results are returned."""
        actions = np.asarray(actions, np.int32)
        b = actions.shape[0]
        actions = np.pad(actions, ((0, self.batch - b), (0, 0)))
        keys = jax.random.split(key, actions.shape[1] + 1)
        obs, state = self._reset(jax.random.split(keys[0], self.batch))
        seq = [obs]
        for t in range(actions.shape[1]):
            obs, state = self._step(jax.random.split(keys[t + 1], self.batch), state, actions[:, t])
            seq.append(obs)
        seq = jax.tree.map(lambda *xs: np.stack(xs)[:, :b], *seq)
        first = lambda tree: jax.tree.map(lambda x: x[:b], tree)
        return first(self._level(state)), seq, np.asarray(state.time)[:b]


def _valid(env, levels) -> np.ndarray:
    return np.asarray(jax.jit(jax.vmap(lambda level: family.is_valid(env, level)))(levels))


@pytest.fixture(scope="module")
def builder6():
    builder = MazeBuilder(Maze(max_size=6), num_walls=10, noise_dim=3)
    return builder, Runner(builder, batch=128)


def _cell(level, i, name):
    return tuple(int(v) for v in np.asarray(getattr(level, name))[i])


def test_random_action_sequences_give_valid_levels(builder6):
    builder, build = builder6
    n = 128
    # Actions include out-of-range integers, which are clipped into range.
    actions = jax.random.randint(jax.random.key(1), (n, builder.num_steps), -3, 40)
    levels, _, time = build(jax.random.key(0), actions)
    assert builder.num_steps == 12
    assert np.all(np.asarray(_valid(builder.env, levels)))
    walls = np.asarray(levels.wall_map).sum(axis=(1, 2))
    assert walls.max() <= builder.num_walls
    assert np.all(np.asarray(time) == builder.num_steps)
    # Random builders make different levels.
    assert len({np.asarray(levels.wall_map)[i].tobytes() for i in range(n)}) > n // 2


def test_every_action_sequence_on_a_tiny_grid_is_valid():
    # 3x3 grid, 2 walls: all 9**4 sequences.
    builder = MazeBuilder(Maze(max_size=3), num_walls=2, noise_dim=0)
    actions = jnp.asarray(list(itertools.product(range(9), repeat=4)), jnp.int32)
    levels, _, _ = Runner(builder, actions.shape[0])(jax.random.key(0), actions)
    assert np.all(np.asarray(_valid(builder.env, levels)))


def test_all_actions_on_one_cell(builder6):
    builder, build = builder6
    cells = jnp.asarray([0, 7, 14, 35], jnp.int32)  # corners and the middle
    actions = jnp.repeat(cells[:, None], builder.num_steps, axis=1)
    levels, _, _ = build(jax.random.key(2), actions)
    assert np.all(np.asarray(_valid(builder.env, levels)))
    for i, c in enumerate(np.asarray(cells)):
        goal, agent = _cell(levels, i, "goal_pos"), _cell(levels, i, "agent_pos")
        # The repeated wall is one wall (a no-op after the first), cleared by the goal.
        assert not np.asarray(levels.wall_map)[i].any()
        assert goal == (c % 6, c // 6)
        # The agent asked for the goal's cell and went to the nearest free cell.
        assert agent != goal
        assert abs(agent[0] - goal[0]) + abs(agent[1] - goal[1]) == 1


def test_goal_and_agent_on_walls_clear_them(builder6):
    builder, build = builder6
    # Walls on cells 0..9, goal on wall 3, agent on wall 5.
    actions = jnp.asarray([[*range(10), 3, 5]], jnp.int32)
    levels, _, _ = build(jax.random.key(3), actions)
    walls = np.asarray(levels.wall_map)[0]
    assert bool(_valid(builder.env, levels)[0])
    assert _cell(levels, 0, "goal_pos") == (3, 0) and _cell(levels, 0, "agent_pos") == (5, 0)
    assert walls.sum() == 8 and not walls[0, 3] and not walls[0, 5]


def test_full_budget_with_agent_on_goal():
    # 3x3 with the largest budget (7): walls on cells 0..6, goal on wall 0, agent on the goal.
    builder = MazeBuilder(Maze(max_size=3), num_walls=7, noise_dim=2)
    actions = jnp.asarray([[*range(7), 0, 0]], jnp.int32)
    levels, _, _ = Runner(builder, 1)(jax.random.key(4), actions)
    assert bool(_valid(builder.env, levels)[0])
    # Free cells left: 7 = (1, 2) at distance 3 from the goal (0, 0), 8 = (2, 2) at 4.
    assert _cell(levels, 0, "goal_pos") == (0, 0)
    assert _cell(levels, 0, "agent_pos") == (1, 2)


def test_steps_after_the_last_are_no_ops(builder6):
    builder, build = builder6
    actions = jax.random.randint(jax.random.key(5), (1, builder.num_steps + 4), 0, 36)
    longer, _, time = build(jax.random.key(6), actions)
    exact, _, _ = build(jax.random.key(6), actions[:, : builder.num_steps])
    assert int(time[0]) == builder.num_steps
    for a, b in zip(jax.tree.leaves(longer), jax.tree.leaves(exact), strict=True):
        np.testing.assert_array_equal(a, b)


def test_observations_match_the_space_and_show_the_build(builder6):
    builder, build = builder6
    actions = jnp.asarray([[*range(10), 20, 21]], jnp.int32)
    _, obs, _ = build(jax.random.key(7), actions)
    obs = jax.tree.map(lambda x: x[:, 0], obs)  # leaves (S + 1, ...)
    space = builder.observation_space()
    s = builder.num_steps
    assert obs["image"].shape == (s + 1, 6, 6, 3) and obs["image"].dtype == np.uint8
    assert obs["noise"].shape == (s + 1, 3) and obs["noise"].dtype == np.float32
    np.testing.assert_array_equal(obs["time"], np.arange(s + 1))
    assert set(obs) == set(space.spaces)
    for name, sub in space.spaces.items():
        assert obs[name].shape[1:] == tuple(sub.shape) and obs[name].dtype == sub.dtype
        assert all(bool(sub.contains(jnp.asarray(x))) for x in obs[name])
    # Noise is fresh at every step.
    assert len({row.tobytes() for row in obs["noise"]}) == s + 1
    # After 4 steps, 4 walls; the goal shows after step 11, the agent after step 12.
    assert obs["image"][4, ..., 0].sum() == 4
    assert obs["image"][10, ..., 1].sum() == 0 and obs["image"][11, 3, 2, 1] == 1
    assert obs["image"][11, ..., 2].sum() == 0 and obs["image"][12, 3, 3, 2] == 1
    assert builder.action_space().n == 36


def test_family_provides_the_builder_and_checks_options():
    family = get_family("maze")
    env = family.make_env(max_size=7)
    builder = family.make_builder(env, num_walls=5, noise_dim=4)
    assert isinstance(builder, MazeBuilder) and builder.num_steps == 7
    with pytest.raises(ValueError, match="num_walls"):
        family.make_builder(env, num_walls=48)
    with pytest.raises(ValueError, match="noise_dim"):
        family.make_builder(env, num_walls=5, noise_dim=-1)
