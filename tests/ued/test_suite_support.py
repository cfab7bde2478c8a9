"""Which levels a curriculum's training can produce at all (``ued.suite.support``): known
answers on the maze, by wall count and size in the training grid."""

import jax

from envs.maze import family
from envs.maze.env import Maze
from envs.maze.named import perfect_maze_text
from ued.config import config as config_lib
from ued.curricula import support_of
from ued.curricula.base import Support
from ued.suite.support import producible

SMALL = {"env": {"options": {"max_size": 9}, "generator_options": {"num_walls": 12}}}


def cfg(curriculum, **env):
    data = config_lib._merge(SMALL, {"curriculum": curriculum, "env": env})
    return config_lib.from_dict(data)


def levels(texts, size=9):
    env = Maze(max_size=size)
    return family.stack([family.level_from_text(env, t) for t in texts])


def test_support_by_walls_and_size():
    perfect = perfect_maze_text(9, 21)  # 32 walls
    twelve = "\n".join(["#" * 9, "#" * 3 + "." * 6] + [">" + "." * 7 + "G"] + ["." * 9] * 6)
    batch = levels([perfect, twelve])
    assert int(family.level_metrics(Maze(max_size=9), jax.tree.map(lambda x: x[1], batch))[
        "num_walls"]) == 12  # fmt: skip
    dr = producible(cfg({"name": "dr"}), batch)
    assert (dr["levels"], dr["of"], dr["how"]) == (1, 2, "12 walls")
    accel = cfg({"name": "accel", "options": {"editors": {"set_cell": 1.0}}})
    assert producible(accel, batch)["levels"] == 2
    only_goal = cfg({"name": "accel", "options": {"editors": {"move_goal": 1.0}}})
    assert producible(only_goal, batch)["levels"] == 1  # its starts: the generator's
    paired = cfg({"name": "paired", "options": {"builder": {"num_walls": 29}}})
    assert producible(paired, batch)["levels"] == 1  # 32 walls are too many
    assert producible(cfg({"name": "programs"}), batch)["levels"] == 2
    perfect_dr = cfg({"name": "dr"}, generator="perfect_maze", generator_options={})
    assert producible(perfect_dr, batch)["levels"] == 1
    big = levels([perfect_maze_text(13, 1)], size=13)
    out = producible(accel, big)
    assert out["levels"] == 0 and out["how"] == "larger than the 9x9 training grid"


def test_support_is_what_the_curriculum_declares():
    assert support_of("plr_parallel", {}) == Support("generator")
    accel = support_of("accel", {"start_from": "empty", "editors": {"move_goal": 1.0}})
    assert accel == Support("edits", start="empty_room", editors=("move_goal",))
    assert support_of("paired", {"builder": {"num_walls": 7}}).builder == {"num_walls": 7}
    assert support_of("no_such_curriculum", {}) is None
    # A curriculum that declares nothing is not analysed, whatever its levels.
    batch = levels([perfect_maze_text(9, 21)])
    out = producible(cfg({"name": "target_difficulty"}), batch)
    assert out == {"levels": None, "of": 1, "how": "curriculum target_difficulty: not analysed"}
    only_goal_from_empty = cfg(
        {"name": "accel", "options": {"start_from": "empty", "editors": {"move_goal": 1.0}}}
    )
    assert producible(only_goal_from_empty, batch)["how"] == "no walls"


def test_training_levels_are_the_first_and_last_fifth_of_each_seeds_curve():
    from ued.suite.report import training_levels, training_levels_table

    xs = list(range(11))
    cell = {"curves": {"0": {"levels/num_walls": [xs, xs]},
                       "1": {"levels/num_walls": [xs, [2 * x for x in xs]]}}}  # fmt: skip
    levels = training_levels([cell, {"curves": {}}])
    # First fifth: x <= 2 (mean 1, and 2 for the doubled seed); last fifth: x >= 8.
    assert levels == {"levels/num_walls": {"first": [1.0, 2.0], "last": [9.0, 18.0]}}
    table = training_levels_table({"runs": {"dr": {"training_levels": levels},
                                            "sfl": {"training_levels": {}}}})  # fmt: skip
    assert "| dr | 2 | 1.50 -> 13.50 (9.00-18.00) |" in table
    assert "| sfl | 0 | - |" in table
    assert training_levels_table({"runs": {"dr": {}}}) == []


def test_machines_of_one_kind_are_named_once_with_their_count():
    from ued.suite.report import machines_text

    cpu = {"devices": "1 x cpu", "processor": "x86_64", "cpu_count": 2, "jax": "0.10.2"}
    other_host = {**cpu, "platform": "Linux-a"}  # same kind, another machine
    gpu = {"devices": "1 x gpu", "processor": "x86_64", "cpu_count": 16, "jax": "0.10.2"}
    assert machines_text([cpu]) == "1 x cpu (x86_64, 2 cores), JAX 0.10.2"
    assert machines_text([cpu, other_host, gpu]) == (
        "1 x cpu (x86_64, 2 cores), JAX 0.10.2 (2 machines of this kind); "
        "1 x gpu (x86_64, 16 cores), JAX 0.10.2"
    )
    assert machines_text([]) == "unknown"
