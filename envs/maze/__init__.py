"""The maze family: minigrid-style navigation levels for UED (PAIRED, PLR, ACCEL).

Importing this package registers the family ``"maze"`` with ``envs.core``; its level
operations are reached through ``family`` (e.g. ``family.level_from_text(env, text)``).
"""

from envs.core import Family, register
from envs.maze import level as _level
from envs.maze.builder import BuilderState, MazeBuilder
from envs.maze.editors import editors
from envs.maze.env import Maze, MazeParams, MazeState
from envs.maze.generators import generators
from envs.maze.level import Level, distance_map, shortest_path_length
from envs.maze.named import named_levels
from envs.maze.programs import make_programs
from envs.maze.render import render
from envs.maze.standard import level_sets

family = register(
    Family(
        name="maze",
        make_env=Maze,
        generators=generators,
        editors=editors,
        named_levels=named_levels,
        example_level=_level.example_level,
        is_valid=_level.is_valid,
        level_metrics=_level.level_metrics,
        level_to_text=_level.level_to_text,
        level_from_text=_level.level_from_text,
        levels_from_rows=_level.levels_from_rows,
        render=render,
        make_builder=MazeBuilder,
        level_sets=level_sets,
        programs=make_programs,
        edit_form=_level.edit_form,
        solution_path=_level.solution_path,
    )
)

__all__ = [
    "BuilderState",
    "Level",
    "Maze",
    "MazeBuilder",
    "MazeParams",
    "MazeState",
    "distance_map",
    "family",
    "shortest_path_length",
]
