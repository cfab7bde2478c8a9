"""A tiny second environment family (a 1-D corridor) that keeps ``ued/`` generic: the
framework's tests build and run the train step on it without importing the maze.

``toy_config`` gives the tests one small config on this family to start from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import spaces

from envs.core import EditSpec, Environment, Family, StepOut, register
from envs.programs import Dim, ProgramSpace
from ued.config import config as config_lib

NAME = "toy_corridor"


@struct.dataclass
class CorridorLevel:
    start: jnp.ndarray  # () int32 agent cell
    goal: jnp.ndarray  # () int32 goal cell
    length: jnp.ndarray  # () int32 cells in use (<= max_length)


@struct.dataclass
class CorridorState:
    level: CorridorLevel  # the level played
    pos: jnp.ndarray  # () int32 agent cell now
    time: jnp.ndarray  # () int32


class Corridor(Environment):
    """Walk left (0) or right (1) to the goal; reward 1 - 0.9 t / T there, else 0.

    Observation: float32 (2 * max_length,), one-hot agent cell then one-hot goal cell.
    """

    def __init__(self, max_length: int = 6, max_steps: int = 12):
        if max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {max_length}")
        self.max_length = max_length
        self.max_steps = max_steps

    def default_params(self):
        return ()

    def _obs(self, pos, goal):
        one = jax.nn.one_hot
        return jnp.concatenate([one(pos, self.max_length), one(goal, self.max_length)])

    def reset_env_to_level(self, key, level, params):
        state = CorridorState(level, level.start, jnp.zeros((), jnp.int32))
        return self._obs(level.start, level.goal), state

    def step_env(self, key, state, action, params):
        level = state.level
        pos = jnp.clip(state.pos + jnp.where(action == 1, 1, -1), 0, level.length - 1)
        time = state.time + 1
        success = pos == level.goal
        reward = jnp.where(success, 1.0 - 0.9 * time / self.max_steps, 0.0)
        done = success | (time >= self.max_steps)
        state = state.replace(pos=pos, time=time)
        return StepOut(self._obs(pos, level.goal), state, reward, done, {"success": success})

    def observation_space(self, params):
        return spaces.Box(0.0, 1.0, (2 * self.max_length,), jnp.float32)

    def action_space(self, params):
        return spaces.Discrete(2)

    def max_episode_steps(self, params):
        return self.max_steps


def example_level(env: Corridor):
    return CorridorLevel(jnp.int32(0), jnp.int32(1), jnp.int32(env.max_length))


def is_valid(env: Corridor, level):
    inside = (level.start < level.length) & (level.goal < level.length)
    return inside & (level.start != level.goal) & (level.start >= 0) & (level.goal >= 0)


def level_metrics(env: Corridor, level):
    return {"distance": jnp.abs(level.goal - level.start).astype(jnp.float32)}


def make_uniform(env: Corridor):
    def sample(key):
        start_key, goal_key = jax.random.split(key)
        n = env.max_length
        start = jax.random.randint(start_key, (), 0, n)
        goal = (start + jax.random.randint(goal_key, (), 1, n)) % n
        return CorridorLevel(start.astype(jnp.int32), goal.astype(jnp.int32), jnp.int32(n))

    return sample


def make_move_goal(env: Corridor) -> EditSpec:
    def edit(key, level):
        goal = (level.start + jax.random.randint(key, (), 1, level.length)) % level.length
        return level.replace(goal=goal.astype(jnp.int32))

    return EditSpec(edit, lambda level: level.length > 2)


def to_text(env, level) -> str:
    cells = ["."] * int(level.length)
    cells[int(level.start)] = "A"
    cells[int(level.goal)] = "G"
    return "".join(cells)


def from_text(env, text: str):
    text = text.strip()
    if text.count("A") != 1 or text.count("G") != 1:
        raise ValueError("line 1: a corridor needs exactly one A and one G")
    return CorridorLevel(
        jnp.int32(text.index("A")), jnp.int32(text.index("G")), jnp.int32(len(text))
    )


def named(env):
    n = env.max_length
    return {
        "far": from_text(env, "A" + "." * (n - 2) + "G"),
        "near": from_text(env, "AG" + "." * (n - 2)),
    }


def render(env, level_or_state):
    level = getattr(level_or_state, "env_state", level_or_state)  # a ReplayState's state
    level = getattr(level, "level", level)  # a state's level
    image = np.zeros((8, 8 * env.max_length, 3), np.uint8)
    goal = int(level.goal)
    image[:, 8 * goal : 8 * goal + 8, 1] = 255
    return image


def describe_corridor(level) -> jnp.ndarray:
    """Descriptors ``(distance, start)`` of a corridor level (the goal's distance wraps)."""
    distance = (level.goal - level.start) % level.length
    return jnp.stack([distance, level.start]).astype(jnp.float32)


def make_programs(env: Corridor) -> ProgramSpace:
    """Programs ``(start, distance)``: the goal lies ``distance`` cells right of the start,
    wrapping around; the widening stages open distances 1..2, then 1..3, then all."""
    n = env.max_length

    def generate(key, program):
        start = program[0].astype(jnp.int32)
        goal = (start + program[1].astype(jnp.int32)) % n
        return CorridorLevel(start, goal.astype(jnp.int32), jnp.int32(n))

    return ProgramSpace(
        dims=(Dim("start", "discrete", 0, n - 1), Dim("distance", "discrete", 1, n - 1)),
        generate=generate,
        describe=describe_corridor,
        descriptor_names=("distance", "start"),
        descriptor_low=(1.0, 0.0),
        descriptor_high=(float(n), float(n)),
        stages=({"distance": (1, 2)}, {"distance": (1, 3)}, {}),
    )


FAMILY = register(
    Family(
        name=NAME,
        make_env=Corridor,
        generators={"uniform": make_uniform},
        editors={"move_goal": make_move_goal},
        named_levels=named,
        example_level=example_level,
        is_valid=is_valid,
        level_metrics=level_metrics,
        level_to_text=to_text,
        level_from_text=from_text,
        render=render,
        programs=make_programs,
    )
)


# The sections every toy test shares: the family's default corridor (6 cells, 12 steps), a
# small MLP student, a few envs and steps, no progress bar and no persistent compile cache.
TOY_BASE = {
    "env": {
        "family": NAME,
        "options": {"max_length": 6, "max_steps": 12},
        "generator": "uniform",
        "generator_options": {},
    },
    "network": {"kind": "mlp", "mlp_sizes": [16], "head_size": 8},
    "ppo": {"num_envs": 4, "num_steps": 8},
    "run": {"progress": False, "compile_cache": ""},
}


def toy_config(**sections: Mapping[str, Any]) -> config_lib.Config:
    """``TOY_BASE`` with ``sections`` merged over it key by key, as a validated Config, e.g.
    ``toy_config(ppo={"num_envs": 8}, run={"dir": str(tmp_path)})``.

    Nested mappings merge (``env={"options": {"max_length": 8}}`` keeps ``max_steps``); other
    values, lists included, replace. Keys neither sets keep the Config defaults, and the
    merge happens before those defaults apply, so e.g. ``curriculum.options`` is exactly what
    is given rather than merged with the default score.
    """
    # The same merge that an experiment file's ``base:`` uses.
    return config_lib.from_dict(config_lib._merge(TOY_BASE, sections))


# A small level buffer that fills and replays within a few updates, scored by positive
# value loss: merge under ``curriculum`` for PLR-style runs.
REPLAY_CURRICULUM = {
    "options": {
        "buffer": {"capacity": 16, "min_fill_ratio": 0.25, "replay_prob": 0.5},
        "score": {"positive_value_loss": 1.0},
    }
}


def with_curriculum(cfg: config_lib.Config, name: str, **options: Any) -> config_lib.Config:
    """``cfg`` with curriculum ``name``: its options kept for PLR-type curricula (``options``
    merged over them), none for DR."""
    data = config_lib.to_dict(cfg)
    kept = data["curriculum"]["options"] if name != "dr" else {}
    data["curriculum"] = {"name": name, "options": config_lib._merge(kept, options)}
    return config_lib.from_dict(data)
