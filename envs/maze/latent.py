"""The maze's ``latent`` program space: a program is a point of a trained generative model's
latent space, and a level is what the model decodes there.

A program is a latent vector ``z`` in the box ``[-box, box]^L`` (``L`` the model's latent
size; dims ``z0 .. z{L-1}``, continuous). ``generate(key, z)`` decodes ``z`` with the model
(``envs.level_model``, a VAE trained by ``scripts/train_level_model.py``) into one logit per
cell for walls, agent and goal, samples a level from them and repairs it, so every level is
valid by construction:

- walls: each cell is a wall with probability ``sigmoid(logit / temperature)``; the level
  covers the whole ``max_size`` grid (the maze's border is implicit: outside is wall);
- the agent: one cell drawn from the agent logits among the free cells (when there is none,
  the agent's likeliest cell is cleared);
- the goal: one cell drawn from the goal logits among the other free cells (cleared the
  same way when none is left); the agent faces a random direction.

Near the prior (``|z|`` about 1) the decoded levels resemble the corpus; farther out they
leave it. The widening ladder opens the box at 1, 2 and then ``box`` (default 3) standard
deviations. Descriptors are the maze space's (``envs.maze.programs.describe``).

``codec(env)`` is the grid encoding the model is trained on: channels ``wall`` (walls and
padding, Bernoulli), ``agent`` and ``goal`` (one cell each, categorical).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from envs import level_model as lm
from envs.maze.env import Maze
from envs.maze.level import Level, blocked_map, cell_mask
from envs.maze.programs import describe, make_programs
from envs.programs import Dim, ProgramSpace

CHANNELS = (("wall", "bernoulli"), ("agent", "categorical"), ("goal", "categorical"))


def to_grid(level: Level) -> chex.Array:
    """(H, W, 3) float32: walls (padding counted as wall), the agent's and the goal's cell."""
    shape = level.wall_map.shape
    return jnp.stack(
        [blocked_map(level), cell_mask(level.agent_pos, shape), cell_mask(level.goal_pos, shape)],
        axis=-1,
    ).astype(jnp.float32)


def _cell(index: chex.Array, width: int) -> chex.Array:
    return jnp.stack([index % width, index // width]).astype(jnp.int32)


def make_raw_level(n: int):
    def raw_level(logits: chex.Array) -> Level:
        """The model's own level: walls where the logit is positive, agent and goal at their
        likeliest cells; no repair (it may be invalid)."""
        walls = logits[..., 0] > 0
        return Level(
            wall_map=walls,
            agent_pos=_cell(jnp.argmax(logits[..., 1].reshape(-1)), n),
            agent_dir=jnp.zeros((), jnp.int32),
            goal_pos=_cell(jnp.argmax(logits[..., 2].reshape(-1)), n),
            width=jnp.int32(n),
            height=jnp.int32(n),
        )

    return raw_level


def make_repair(n: int, temperature: float = 1.0):
    def repair(key: chex.PRNGKey, logits: chex.Array) -> Level:
        """A level sampled from the logits and made valid (see the module docstring)."""
        k_wall, k_agent, k_goal, k_dir = jax.random.split(key, 4)
        if temperature > 0:
            walls = jax.random.uniform(k_wall, (n, n)) < jax.nn.sigmoid(
                logits[..., 0] / temperature
            )
        else:
            walls = logits[..., 0] > 0
        flat = walls.reshape(-1)

        def pick(k, score, allowed):
            # Among the allowed cells; with none allowed, the likeliest cell of all.
            masked = jnp.where(allowed, score, -jnp.inf)
            if temperature > 0:
                drawn = jax.random.categorical(k, masked / temperature)
            else:
                drawn = jnp.argmax(masked)
            return jnp.where(allowed.any(), drawn, jnp.argmax(score))

        agent = pick(k_agent, logits[..., 1].reshape(-1), ~flat)
        flat = flat.at[agent].set(False)
        others = jnp.arange(n * n) != agent
        goal_score = jnp.where(others, logits[..., 2].reshape(-1), -jnp.inf)
        goal = pick(k_goal, goal_score, ~flat & others)
        flat = flat.at[goal].set(False)
        return Level(
            wall_map=flat.reshape(n, n),
            agent_pos=_cell(agent, n),
            agent_dir=jax.random.randint(k_dir, (), 0, 4, dtype=jnp.int32),
            goal_pos=_cell(goal, n),
            width=jnp.int32(n),
            height=jnp.int32(n),
        )

    return repair


def codec(env: Maze, temperature: float = 1.0) -> lm.LevelCodec:
    """The maze's grid encoding for a level model (see the module docstring)."""
    n = env.max_size
    return lm.LevelCodec(
        channels=CHANNELS,
        shape=(n, n),
        to_grid=to_grid,
        raw_level=make_raw_level(n),
        repair=make_repair(n, temperature),
    )


def make_latent_programs(
    env: Maze, model: str = "", sha256: str = "", box: float = 3.0, temperature: float = 1.0
) -> ProgramSpace:
    """The latent space of the level model in folder ``model`` (whose hash must be
    ``sha256``); see the module docstring."""
    if not model:
        raise ValueError("model: the folder of a trained level model is required "
                         "(scripts/train_level_model.py)")  # fmt: skip
    actual = lm.model_hash(model)
    if sha256 != actual:
        raise ValueError(
            f"model {model!r} has SHA-256 {actual}, but the config says sha256={sha256!r}: "
            "set sha256 to the model's hash (a run refuses a model it was not started with)"
        )
    if not box > 0 or temperature < 0:
        raise ValueError(f"box={box} must be > 0 and temperature={temperature} >= 0")
    spec, params, _ = lm.load(model)
    n = env.max_size
    if spec.family != "maze" or (spec.height, spec.width) != (n, n):
        raise ValueError(
            f"model {model!r} was trained on {spec.family} levels of {spec.height}x{spec.width}; "
            f"this env's levels are maze {n}x{n}"
        )
    module = spec.module()
    repair = make_repair(n, temperature)
    params = jax.tree.map(jnp.asarray, params)

    def generate(key: chex.PRNGKey, program: chex.Array) -> Level:
        logits = module.apply(params, program.astype(jnp.float32), method=module.decode)
        return repair(key, logits)

    names = tuple(f"z{i}" for i in range(spec.latent_dim))
    dims = tuple(Dim(name, "continuous", -box, box) for name in names)
    stages = tuple({name: (-r, r) for name in names} for r in (1.0, 2.0) if r < box) + ({},)
    maze = make_programs(env)  # its descriptors and their ranges
    return ProgramSpace(
        dims=dims,
        generate=generate,
        describe=describe,
        descriptor_names=maze.descriptor_names,
        descriptor_low=maze.descriptor_low,
        descriptor_high=maze.descriptor_high,
        stages=stages,
        mutation_scale=0.1,
    )
