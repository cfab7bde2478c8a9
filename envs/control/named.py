"""Named evaluation levels: a held-out grid at and beyond each parameter's training range.

For every parameter ``p`` (the others at their defaults):

- ``{p}_low`` / ``{p}_high``: the edges of the training range (seen in training);
- ``{p}_very_low`` / ``{p}_very_high``: the ``test`` values beyond it (held out);

plus ``default`` (the standard task) and the task's hand-picked combinations (e.g.
CartPole's ``long_heavy_pole``). The grid uses each task's documented ranges, not an env's
``ranges`` override, so evaluations stay comparable across runs.
"""

from __future__ import annotations

from envs.control import spec
from envs.control.env import ControlEnv
from envs.control.spec import Level, Task


def named_values(task: Task) -> dict[str, dict[str, float]]:
    """name -> {parameter: value} of every named level (unset parameters are defaults)."""
    out: dict[str, dict[str, float]] = {"default": {}}
    for p in task.params:
        out[f"{p.name}_low"] = {p.name: p.train[0]}
        out[f"{p.name}_high"] = {p.name: p.train[1]}
        out[f"{p.name}_very_low"] = {p.name: p.test[0]}
        out[f"{p.name}_very_high"] = {p.name: p.test[1]}
    out.update({name: dict(values) for name, values in task.named.items()})
    return out


def named_levels(env: ControlEnv) -> dict[str, Level]:
    """The evaluation levels of the env's task (see the module docstring)."""
    return {name: spec.make_level(env.task, **v) for name, v in named_values(env.task).items()}
