"""The maze family: minigrid-style navigation levels for UED (PAIRED, PLR, ACCEL).

Importing this package registers the family ``"maze"`` with ``envs.core``.
"""

from envs.core import Family, register
from envs.images import save_png
from envs.images import tile as render_grid
from envs.maze.builder import BuilderState, MazeBuilder
from envs.maze.editors import editors
from envs.maze.env import Maze, MazeParams, MazeState, state_to_level
from envs.maze.generators import generators
from envs.maze.level import (
    Level,
    distance_map,
    is_valid,
    level_from_text,
    level_metrics,
    level_to_text,
    levels_from_text,
    levels_from_text_file,
    levels_to_text,
    shortest_path_length,
    stack_levels,
)
from envs.maze.named import named_levels
from envs.maze.render import render
from envs.maze.standard import level_sets

family = register(
    Family(
        name="maze",
        make_env=Maze,
        generators=generators,
        editors=editors,
        named_levels=named_levels,
        render=render,
        level_to_text=level_to_text,
        level_from_text=level_from_text,
        make_builder=MazeBuilder,
        level_sets=level_sets,
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
    "editors",
    "family",
    "generators",
    "is_valid",
    "level_from_text",
    "level_metrics",
    "level_to_text",
    "levels_from_text",
    "levels_from_text_file",
    "levels_to_text",
    "named_levels",
    "render",
    "render_grid",
    "save_png",
    "shortest_path_length",
    "stack_levels",
    "state_to_level",
]
