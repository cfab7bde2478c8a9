"""Pictures of a run: level galleries (PNG) and recorded episodes (GIF), for any family.

Everything here runs on the host after the jitted work is done; levels are drawn with the
family's own ``render``. A gallery is a grid of level pictures with a caption under each:

- ``buffer_<updates>.png``: the levels a curriculum that shows a buffer
  (``ShowsLevels``, a ``LevelView`` of kind ``buffer``) features, by default its
  highest-scoring levels captioned with rank and score;
- ``programs_<updates>.png``: the same for an archive of generator programs (kind
  ``archive``): a sample level of the fittest program in each descriptor-grid cell,
  captioned with the cell and its fitness;
- ``failures_<updates>.png``: the evaluation levels the student does not always solve,
  worst first, captioned with their solve rates.

A grounding set (levels people sent) has no gallery: its levels are theirs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from envs.images import save_png, tile
from ued.core.networks import distribution
from ued.curricula.base import LevelView, level_view

GALLERY_SIZE = 16  # levels per gallery
GALLERY_COLUMNS = 8
# View kind -> (file name prefix, levels shown).
GALLERIES = {"buffer": ("buffer", GALLERY_SIZE), "archive": ("programs", 2 * GALLERY_SIZE)}


def index(levels: Any, i: int) -> Any:
    """Level ``i`` of a batched level, as host arrays."""
    return jax.tree.map(lambda x: np.asarray(x[i]), levels)


def render_levels(exp, levels: Any, idx: Sequence[int]) -> list[np.ndarray]:
    return [np.asarray(exp.family.render(exp.env, index(levels, int(i)))) for i in idx]


def _fmt(x: float) -> str:
    return f"{x:.3f}" if np.isfinite(x) else str(x)


def view_gallery(exp, view: LevelView | None, k: int = GALLERY_SIZE) -> np.ndarray | None:
    """The view's featured levels (by default its ``k`` highest-scoring filled slots,
    captioned ``#rank score``, or without scores its first filled slots, captioned with the
    slot); None for no view or no filled slot."""
    if view is None:
        return None
    chosen = view.featured
    if chosen is None:
        if view.scores is None:
            chosen = [(i, f"slot {i}") for i in view.order()]
        else:
            scores = np.asarray(view.scores, np.float64)
            chosen = [(i, f"#{r + 1} {_fmt(scores[i])}") for r, i in enumerate(view.order())]
    chosen = list(chosen)[:k]
    if not chosen:
        return None
    images = render_levels(exp, view.levels, [slot for slot, _ in chosen])
    return tile(images, GALLERY_COLUMNS, [caption for _, caption in chosen])


def failure_gallery(
    exp, names: Sequence[str], levels: Any, solve_rates: np.ndarray, k: int = GALLERY_SIZE
) -> np.ndarray | None:
    """Evaluation levels with solve rate below 1, worst first; None when all are solved."""
    rates = np.asarray(solve_rates, np.float64)
    failed = [i for i in np.argsort(rates, kind="stable") if rates[i] < 1.0][:k]
    if not failed:
        return None
    images = render_levels(exp, levels, failed)
    captions = [f"{names[i][:18]} {rates[i]:.2f}" for i in failed]
    return tile(images, GALLERY_COLUMNS, captions)


def write_galleries(
    directory: str | Path,
    exp,
    curriculum,
    updates: int,
    eval_names: Sequence[str] = (),
    eval_levels: Any = None,
    solve_rates: np.ndarray | None = None,
) -> list[Path]:
    """Writes this update's buffer and failure galleries under ``directory``; ``curriculum``
    is one seed's curriculum state (``state.curriculum`` of a single-seed run)."""
    directory = Path(directory)
    written = []
    host = jax.device_get(curriculum)
    view = level_view(exp.curriculum, host)
    if view is not None and view.kind in GALLERIES:
        prefix, size = GALLERIES[view.kind]
        image = view_gallery(exp, view, size)
        if image is not None:
            written.append(save_png(directory / f"{prefix}_{updates:08d}.png", image))
    if eval_names and solve_rates is not None:
        image = failure_gallery(exp, eval_names, eval_levels, solve_rates)
        if image is not None:
            written.append(save_png(directory / f"failures_{updates:08d}.png", image))
    return written


def rollout_states(key, exp, params, level, max_steps: int):
    """One episode of the student on ``level`` without auto-replay (jittable).

    Returns ``(first_state, states, rewards, dones, successes)``: ``states`` leaves have a
    leading (max_steps,) axis; steps after the first ``done`` are to be ignored.
    """
    env, env_params, network = exp.env, exp.env_params, exp.network
    reset_key, run_key = jax.random.split(key)
    obs, state = env.reset_env_to_level(reset_key, level, env_params)

    def step(carry, step_key):
        obs, state, rnn = carry
        act_key, env_key = jax.random.split(step_key)
        batched = jax.tree.map(lambda x: x[None, None], obs)
        rnn, policy, _ = network.apply(params, rnn, batched, jnp.zeros((1, 1), bool))
        action = distribution(policy[0], network.continuous).sample(seed=act_key)[0]
        out = env.step_env(env_key, state, action, env_params)
        return (out.obs, out.state, rnn), (out.state, out.reward, out.done, out.info["success"])

    init = (obs, state, network.initial_carry(1))
    _, (states, rewards, dones, successes) = jax.lax.scan(
        step, init, jax.random.split(run_key, max_steps)
    )
    return state, states, rewards, dones, successes


def record_episode(key, exp, params, level, max_steps: int | None = None):
    """Frames of one episode (start to the first ``done``) and its outcome.

    Returns:
        ``(frames, info)``: uint8 images from ``family.render`` of each state, and
        ``{"return", "length", "solved"}``.
    """
    max_steps = int(max_steps or exp.env.max_episode_steps(exp.env_params))
    run = jax.jit(lambda k, p, lv: rollout_states(k, exp, p, lv, max_steps))
    first, states, rewards, dones, successes = jax.device_get(run(key, params, level))
    ends = np.flatnonzero(dones)
    length = int(ends[0]) + 1 if ends.size else max_steps
    frames = [np.asarray(exp.family.render(exp.env, first))]
    frames += [np.asarray(exp.family.render(exp.env, index(states, t))) for t in range(length)]
    info = {
        "return": float(rewards[:length].sum()),
        "length": length,
        "solved": bool(ends.size and successes[ends[0]]),
    }
    return frames, info
