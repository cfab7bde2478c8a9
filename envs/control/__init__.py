"""Gymnax classic-control tasks whose physics are the level: one family per task.

Importing this package registers the families ``cartpole``, ``pendulum``, ``acrobot``,
``mountain_car`` and ``mountain_car_continuous`` with ``envs.core``. Each shares the same
parts: ``ControlEnv`` (gymnax's dynamics with the level's physical parameters), the
``uniform`` generator, the ``perturb_param`` and ``reset_param`` editors, a grid of named
evaluation levels at and beyond the training ranges, a renderer and a ``name=value`` text
format, all reached through the family (``FAMILIES[name]``). Parameters, ranges and success
definitions are in ``envs.control.tasks``.

Env options (``env.options``): ``max_steps`` (default gymnax's horizon) and ``ranges``
(name -> [low, high], overriding training ranges).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from envs.control import spec
from envs.control.editors import editors
from envs.control.env import ControlEnv, ControlParams, ControlState, gymnax_transition
from envs.control.generators import generators
from envs.control.named import named_levels, named_values
from envs.control.programs import make_programs
from envs.control.render import render
from envs.control.spec import Outcome, Param, Task
from envs.control.tasks import (
    ACROBOT,
    CARTPOLE,
    MOUNTAIN_CAR,
    MOUNTAIN_CAR_CONTINUOUS,
    PENDULUM,
    TASKS,
)
from envs.core import Family, register

# The family's level operations: the task-level helpers of ``spec`` on the env's task.


def _example_level(env: ControlEnv):
    """The standard task (default physics)."""
    return spec.default_level(env.task)


def _is_valid(env: ControlEnv, level):
    return spec.is_valid(env.task, level)


def _level_metrics(env: ControlEnv, level):
    return spec.level_metrics(env.task, level)


def _level_to_text(env: ControlEnv, level) -> str:
    return spec.level_to_text(env.task, level)


def _level_from_text(env: ControlEnv, text: str):
    return spec.level_from_text(env.task, text)


def _levels_from_rows(env: ControlEnv, blocks):
    return spec.levels_from_rows(env.task, blocks)


def _edit_form(env: ControlEnv) -> dict:
    return spec.edit_form(env.task)


def _env_factory(task: Task):
    def make_env(
        max_steps: int | None = None, ranges: Mapping[str, Sequence[float]] | None = None
    ) -> ControlEnv:
        return ControlEnv(task, max_steps=max_steps, ranges=ranges)

    make_env.__name__ = f"make_{task.name}"
    make_env.__doc__ = f"The {task.name} ControlEnv (options: max_steps, ranges)."
    return make_env


def register_task(task: Task) -> Family:
    """Registers ``task`` as a family named ``task.name`` with the shared control parts."""
    return register(
        Family(
            name=task.name,
            make_env=_env_factory(task),
            generators=generators,
            editors=editors,
            named_levels=named_levels,
            example_level=_example_level,
            is_valid=_is_valid,
            level_metrics=_level_metrics,
            level_to_text=_level_to_text,
            level_from_text=_level_from_text,
            levels_from_rows=_levels_from_rows,
            render=render,
            programs=make_programs,
            edit_form=_edit_form,
        )
    )


FAMILIES = {name: register_task(task) for name, task in TASKS.items()}

__all__ = [
    "ACROBOT",
    "CARTPOLE",
    "MOUNTAIN_CAR",
    "MOUNTAIN_CAR_CONTINUOUS",
    "PENDULUM",
    "TASKS",
    "ControlEnv",
    "ControlParams",
    "ControlState",
    "Outcome",
    "Param",
    "Task",
    "FAMILIES",
    "gymnax_transition",
    "named_values",
    "register_task",
]
