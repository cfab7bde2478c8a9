"""dcd's staleness clock (``staleness_clock: replay``): ticks per replayed level, not per
insertion. dcd's level_sampler.py ages every level by one and resets the drawn one in
``_update_staleness``, called when a replay level is sampled; a new level enters the buffer
without aging the others (JaxUED's insert ticks its timestamp: ued's ``level`` clock)."""

import jax
import jax.numpy as jnp
import numpy as np

from tests.ued.test_buffer import EXAMPLE, filled_buffer, levels_from_ids
from ued.core import buffer as B


def test_replay_clock_does_not_tick_on_insertion():
    replay = B.make_buffer_params(staleness_clock="replay")
    buf = B.init(EXAMPLE, 4).replace(clock=jnp.int32(10))
    buf, slots = B.insert(buf, replay, levels_from_ids([7, 8, 9]), jnp.array([1.0, 3.0, 2.0]))
    assert int(buf.clock) == 10  # the "level" clock would be at 13
    np.testing.assert_array_equal(np.asarray(buf.last_sampled)[np.asarray(slots)], [10, 10, 10])


def test_replay_clock_samples_one_level_after_another():
    # As the level clock: the second draw sees the first one's slot fresh.
    params = dict(staleness_coef=1.0, prioritisation="rank", staleness_clock="replay")
    buf = filled_buffer([1.0, 2.0, 3.0, 4.0], last_sampled=[0, 5, 5, 5], clock=5)
    for seed in range(5):
        out, idx, _ = B.sample(buf, B.make_buffer_params(**params), jax.random.key(seed), 2)
        assert int(idx[0]) == 0 and int(idx[1]) != 0
        assert int(out.clock) == 7 and int(out.last_sampled[0]) == 6
