"""Pytrees shared by the student, the scores and the curricula."""

from __future__ import annotations

from typing import Any

import chex
from flax import struct


@struct.dataclass
class Rollout:
    """A time-major batch of student experience on N levels for T steps.

    ``dones[t, i]`` is True when the episode on level i ended at step t (the env then
    replayed the level, so ``obs[t + 1, i]`` is its start again).
    """

    obs: Any  # (T, N, ...) observations the policy acted on
    actions: chex.Array  # (T, N, ...) actions taken
    log_probs: chex.Array  # (T, N) float32 log pi(a|o) at collection time
    values: chex.Array  # (T, N) float32 V(o)
    rewards: chex.Array  # (T, N) float32
    dones: chex.Array  # (T, N) bool, episode ended at this step
    successes: chex.Array  # (T, N) bool, episode ended by solving the level
    last_value: chex.Array  # (N,) float32 V of the observation after the last step
    advantages: chex.Array  # (T, N) float32 GAE
    targets: chex.Array  # (T, N) float32 value targets (advantages + values)
    init_carry: Any  # recurrent state at t = 0 (leaves (N, ...)); () for feed-forward


@struct.dataclass
class ScoreInputs:
    """What a score function sees: the rollout plus per-level context from the curriculum."""

    rollout: Rollout
    best_return: chex.Array  # (N,) float32 best episodic return ever seen on each level
    level_encoding: chex.Array  # (N, D) float32 flat encoding of each level
    reference_encoding: chex.Array  # (M, D) float32 encodings of levels to compare with
    reference_mask: chex.Array  # (M,) bool, which reference rows are real
