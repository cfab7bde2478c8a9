"""ued: unsupervised environment design in JAX.

``ued.load_config`` and ``ued.make_train`` (``ued.api``) are imported on first use, so that
importing a lower module (``ued.options``, ``ued.config``) imports no curricula nor envs.
"""

from ued import xla_flags as _xla_flags

# Before any backend starts: see ued/xla_flags.py (a deadlock of CPU collectives).
_xla_flags.apply()

__version__ = "0.1.0"

_API = ("Train", "load_config", "make_train")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from ued import api

        return getattr(api, name)
    raise AttributeError(f"module 'ued' has no attribute {name!r}")
