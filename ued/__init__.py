"""ued: unsupervised environment design in JAX.

``ued.load_config`` and ``ued.make_train`` (``ued.api``) are imported on first use, so that
importing a lower module (``ued.config.options``, ``ued.config.config``) imports no
curricula nor envs.

The sub-packages are layers, listed bottom to top. A module imports only from its own layer
or a lower one, late imports included (a late import hides a cycle, it does not remove it);
the layers named on one row sit side by side and import nothing from each other.
``tests/ued/test_imports.py`` reads this table and checks every import statement against
it. The env families (``envs/``) sit between files and config: they import only
``ued.files``, and the layers from config up may import them::

    files                    files a person named, read and written with limits (safe_io)
    config                   options, the typed config and its loader, experiment YAML read
                             with limits, what an evaluation runs on (eval_setup)
    core                     the train step's pure parts: the student (networks, kernels,
                             ppo), scores, level sets and the buffer, the program archive and
                             specification, the schedule that the seeds of a run share
    curricula                the curriculum contract (base), the registry and each curriculum
    step, evaluation, human  the assembled train step (experiment) and its seeds and devices
                             (parallel); evaluation, galleries and statistics; levels that
                             people send to a run (inbox, grounding)
    host                     the train driver and what runs around the jitted chunks: run
                             folders, checkpoints, logs, memory limits, signals, XLA flags,
                             the benchmark harness, level-model training
    suite, studio            the experiment suite; the studio (a local web app)
    api                      the front door, re-exported here: load_config, make_train
"""

from ued.host import xla_flags as _xla_flags

# Before any backend starts: see ued/host/xla_flags.py (a deadlock of CPU collectives).
_xla_flags.apply()

__version__ = "0.1.0"

_API = ("Train", "load_config", "make_train")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from ued import api

        return getattr(api, name)
    raise AttributeError(f"module 'ued' has no attribute {name!r}")
