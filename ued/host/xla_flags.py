"""XLA flags that ued needs set before JAX creates its backends.

**Collectives on several CPU devices.** ued splits a CPU into one XLA device per core
(``ued.step.parallel.configure_host_devices``) and shards the env batch over them, so a train step
holds collectives (the gradient all-reduce, the ``any`` of a BFS ``while`` loop over the
batch, ...). XLA:CPU's concurrency-optimized scheduler (on by default in jaxlib 0.10) lets each
device's thunk executor start independent collectives in whatever order their inputs become
ready, so the two devices can wait in two different collectives: a deadlock that XLA ends by
aborting the process after 40 s (``rendezvous.cc: Termination timeout for all reduce ...``).
An executable loaded from the persistent compilation cache did so every time on
``experiments/maze_accel.yaml`` (the first run passed, the second aborted at its third chunk);
a freshly compiled one did so now and then on a loaded machine. With the scheduler off, the
collectives run in program order on every device and the same runs pass (measured: three
cached runs in a row, and the tests in ``tests/scripts/test_compile_cache.py``).

``apply()`` adds the flag to ``XLA_FLAGS`` unless the user set that option there already. It
runs when ``ued`` is imported, which every entry point does before its first JAX computation;
XLA reads ``XLA_FLAGS`` once, when its first backend starts.
"""

from __future__ import annotations

import os

ORDERED_CPU_COLLECTIVES = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def apply(environ: dict | None = None) -> bool:
    """Adds ``ORDERED_CPU_COLLECTIVES`` to ``XLA_FLAGS``; False if the option was set already."""
    environ = os.environ if environ is None else environ
    flags = environ.get("XLA_FLAGS", "")
    if "xla_cpu_enable_concurrency_optimized_scheduler" in flags:
        return False
    environ["XLA_FLAGS"] = f"{flags} {ORDERED_CPU_COLLECTIVES}".strip()
    return True
