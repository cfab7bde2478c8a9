"""Memory estimates checked before anything large is allocated.

One config value (a grid side, a view size, a batch) can ask for more memory than the
machine has; the process would then be killed (or swap for hours) with no message. The train
driver checks the state's size from ``jax.eval_shape`` before it is built, and the compiled
chunk's buffers (XLA's own memory analysis) before it first runs, against the memory free on
the device (host RAM on a CPU), and refuses with a ``ConfigError`` naming the estimate.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np

from ued.config.config import ConfigError

HINT = (
    "lower ppo.num_envs, ppo.num_steps, run.num_seeds, curriculum.options.buffer.capacity or the "
    "env's sizes (env.options)"
)


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def available_bytes() -> int | None:
    """Memory free for arrays: the default device's free memory, or the host's available
    RAM on a CPU (None when unknown)."""
    device = jax.devices()[0]
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def tree_bytes(tree: Any) -> int:
    """Bytes of every array leaf of ``tree`` (arrays or ``jax.ShapeDtypeStruct``s)."""
    total = 0
    for leaf in jax.tree.leaves(tree):
        dtype = getattr(leaf, "dtype", None)
        if dtype is None:
            continue
        if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            total += 8 * int(np.prod(leaf.shape))
        else:
            total += int(np.prod(leaf.shape)) * np.dtype(dtype).itemsize
    return total


def compiled_bytes(compiled: Any) -> int | None:
    """Arguments + outputs + temporaries of a compiled program (None when not reported)."""
    try:
        m = compiled.memory_analysis()
        return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes)
    except Exception:  # not every backend reports it
        return None


def check_fits(what: str, need: int | None, available: int | None = None) -> None:
    """Raises ``ConfigError`` when ``need`` bytes exceed the free memory."""
    available = available_bytes() if available is None else available
    if need is None or available is None or need <= available:
        return
    raise ConfigError(
        f"{what} needs about {gib(need)}, more than the {gib(available)} free on this "
        f"machine; {HINT}"
    )
