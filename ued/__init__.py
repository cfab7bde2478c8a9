"""ued: unsupervised environment design in JAX."""

from ued import xla_flags as _xla_flags

# Before any backend starts: see ued/xla_flags.py (a deadlock of CPU collectives).
_xla_flags.apply()

__version__ = "0.1.0"
