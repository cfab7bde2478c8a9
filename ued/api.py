"""The library's front door: a config from files, and the run as pure ``init``/``step``.

``make_train(cfg)`` gives what purejaxrl's ``make_train(config) -> train(key)`` gives: the
whole train step as a pure function of the state, so seeds and traced hyper-parameters are a
``jax.vmap`` away::

    train = make_train(load_config("experiments/maze_plr.yaml"))
    state = jax.jit(train.init)(jax.random.PRNGKey(0))
    step = jax.jit(train.step)
    for t in range(10):
        state, metrics = step(state, t)

The step is the one every run takes (``ued.step.experiment.Experiment.step``, which the host
driver ``ued.host.train`` scans in chunks); ``make_train`` adds no second one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
from jax.custom_batching import sequential_vmap

from ued.config import config as config_lib
from ued.config.config import Config
from ued.core.schedule import Schedule
from ued.curricula import options_of
from ued.step.experiment import Experiment, TrainState, build

Metrics = dict[str, chex.Array]


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """``ued.config.config.load`` with the registered curricula's option types: an experiment file
    (or the defaults when ``path`` is None) plus ``key=value`` overrides."""
    return config_lib.load(path, overrides, options_of)


class Train(NamedTuple):
    """Pure functions of one run of ``experiment.cfg``; see ``make_train``."""

    init: Callable[[chex.PRNGKey], TrainState]
    step: Callable[..., tuple[TrainState, Metrics]]
    experiment: Experiment


def make_train(cfg: Config) -> Train:
    """``Train(init, step, experiment)`` for ``cfg``: pure, jittable and vmappable functions.

    - ``init(key) -> TrainState``: a fresh student, curriculum state and update count 0
      (``Experiment.init``; under ``vmap`` the runs are initialised one after another).
    - ``step(state, update=None, axis_name=None) -> (state, metrics)``: one update, the same
      function ``ued.host.train`` runs (propose levels, roll out, score, update the student).

    **The schedule** (``ued.core.schedule``): a step also reads what the seeds of a run share,
    the update count and the schedule key ``fold_in(schedule_base(s), update)`` from which
    curricula draw shared decisions (PLR's replay-or-new coin). ``s`` is ``cfg``'s
    ``run.schedule_seed`` (or ``run.seed`` when it is -1), fixed when ``make_train`` is
    called, not the key given to ``init``; ``update`` defaults to ``state.updates``. So
    every member of a sweep (keys from ``jax.vmap`` over ``init``, traced hyper-parameters
    in the state) draws the same coins at the same update, as the seeds of one multi-seed
    run do, and member ``i`` is the run with its own key and values alone.

    Under ``jax.vmap``, pass ``update`` unbatched (the loop's counter, e.g. a ``lax.scan``
    over ``jnp.arange(n)`` or ``in_axes=(0, None)``) so that branches on it stay branches
    instead of running both sides; and ``axis_name``, the vmap's ``axis_name``, so that a
    branch on a per-member fact (is this buffer full enough to replay) runs once when some
    member needs it (``Schedule.cond``). Neither changes the results, only the cost.

    Hyper-parameters that are pytree leaves of the state can be swept by ``vmap``: PLR-type
    curricula keep the level buffer's (``replay_prob``, ``temperature``, ...) in
    ``state.curriculum.params`` (``ued.core.buffer_params.BufferParams``). Values fixed in
    ``cfg`` (learning rate, sizes) are constants of the program.
    """
    exp = build(cfg)

    def init(key: chex.PRNGKey) -> TrainState:
        # Under vmap, one run after another (a lax.map): XLA:CPU (jax 0.10) deadlocks running
        # the orthogonal initialisers' QR decompositions batched (as ued.step.parallel.Runner.init
        # says). Unbatched, this is exp.init.
        shapes = jax.eval_shape(exp.init, key)
        leaves = sequential_vmap(lambda k: tuple(jax.tree.leaves(exp.init(k))))(key)
        return jax.tree.unflatten(jax.tree.structure(shapes), leaves)

    def step(
        state: TrainState, update: chex.Array | None = None, axis_name: str | None = None
    ) -> tuple[TrainState, Metrics]:
        update = state.updates if update is None else jnp.asarray(update, jnp.int32)
        schedule = Schedule.at(exp.schedule_base(), update, axis_name)
        return exp.step(state, schedule)

    return Train(init=init, step=step, experiment=exp)
