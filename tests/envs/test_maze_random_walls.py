"""Random walls drawn with replacement (JaxUED, minimax) or as distinct cells (ued's default)."""

import jax
import numpy as np
import pytest

from envs.core import get_family
from envs.maze.generators import make_random_walls

MAZE = get_family("maze")


@pytest.fixture(scope="module")
def env():
    return MAZE.make_env(max_size=13)


def walls_of(env, **options):
    generate = jax.jit(jax.vmap(make_random_walls(env, **options)))
    return generate(jax.random.split(jax.random.PRNGKey(0), 2000))


def test_distinct_walls_by_default(env):
    levels = walls_of(env, num_walls=25)
    np.testing.assert_array_equal(np.asarray(levels.wall_map).sum((1, 2)), 25)


def test_with_replacement_matches_the_expected_count(env):
    levels = walls_of(env, num_walls=25, with_replacement=True)
    counts = np.asarray(levels.wall_map).sum((1, 2))
    # E[distinct cells] of 25 uniform draws over 169 cells: 169 (1 - (168/169)^25) = 23.24.
    expected = 169 * (1 - (168 / 169) ** 25)
    assert abs(counts.mean() - expected) < 0.1, counts.mean()
    assert counts.max() <= 25 and counts.min() < 25
    valid = jax.vmap(lambda lv: MAZE.is_valid(env, lv))(levels)
    assert np.asarray(valid).all()


def test_with_replacement_and_min_walls(env):
    levels = walls_of(env, num_walls=10, min_walls=0, with_replacement=True)
    counts = np.asarray(levels.wall_map).sum((1, 2))
    assert counts.min() == 0 and counts.max() <= 10
