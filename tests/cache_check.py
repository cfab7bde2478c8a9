"""Trains experiments one after another in this process against one persistent compilation
cache, on the CPU's default device count (``ued.step.parallel.configure_host_devices``).

    python tests/cache_check.py CACHE_DIR experiments/maze_dr.yaml experiments/maze_accel.yaml:full

Run twice with the same CACHE_DIR (``tests/scripts/test_compile_cache.py``): the second
process loads every chunk program from the cache, which is how a second run of
``maze_accel.yaml`` used to abort in a deadlock of its CPU collectives (``ued/host/xla_flags.py``).
Prints one ``ok <file> <devices>`` line per experiment; an abort ends the process early.
"""

import sys
from pathlib import Path

# The repository root first: tests/envs would otherwise shadow the envs package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402

from ued.api import load_config  # noqa: E402
from ued.host.train import train  # noqa: E402

COMMON = ["ppo.num_envs=8", "run.checkpoint_every=0", "eval.levels=none"]
# ":full": the setting in which a second maze_accel run aborted every time before the fix
# (32 updates of 8 x 64 steps in chunks of 10, the shipped network).
FULL = ["ppo.num_steps=64", "run.total_env_steps=16384", "run.chunk_updates=10"]
# Otherwise small enough to compile quickly, with several chunks of the whole step (replay,
# edits and the buffer's branches included): 24 updates of 8 x 16 steps in chunks of 8.
SMALL = ["ppo.num_steps=16", "run.total_env_steps=3072", "run.chunk_updates=8"]


def overrides(path: str, full: bool) -> list[str]:
    if full:
        return COMMON + FULL
    small = COMMON + SMALL
    if load_config(path).network.kind == "conv_lstm":
        small.append("network.lstm_size=32")
    return small


def main(cache_dir: str, items: list[str]) -> None:
    for item in items:
        path, _, mode = item.partition(":")
        extra = overrides(path, mode == "full") + [f"run.compile_cache={cache_dir}"]
        result = train(load_config(path, extra), verbose=False)
        assert result["status"] == "finished", result["status"]
        print("ok", path, len(jax.devices()), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
