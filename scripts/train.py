"""Train a student with a curriculum.

    python scripts/train.py [EXPERIMENT.yaml] [section.key=value ...]

With no experiment file it runs the quick-start experiment (experiments/quickstart.yaml):
ACCEL on a 9x9 maze for about 2 minutes on a CPU, evaluated on 50 held-out 9x9 levels
before and during training; it ends with a before -> after table and the run's curves.

Resume a run from its newest checkpoint (run.dir must be given):

    python scripts/train.py EXPERIMENT.yaml run.dir=OUT run.resume=true

The first Ctrl-C (SIGINT) or SIGTERM finishes the current chunk, writes a checkpoint and
exits; a second one aborts at once (the process dies by that signal, e.g. exit status 130
in a shell, and the newest checkpoint is the last one written).

A run folder is locked while a process trains in it (a second one is refused), and a fresh
run never deletes earlier results: into a folder that holds some it is refused unless
run.overwrite=true, which moves them aside to OUT.old-<time>/.

Exit codes: 0 finished; 2 bad config or command line, a run folder in use or holding earlier
results, or a checkpoint this config cannot resume; 3 stopped on a non-finite parameter,
loss or gradient norm (the last good checkpoint is kept); 4 interrupted by SIGINT/SIGTERM
after writing a checkpoint (resume with run.resume=true); 130 interrupted before training
began (nothing written).
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

EXIT_CONFIG, EXIT_NONFINITE, EXIT_INTERRUPTED, EXIT_EARLY_INTERRUPT = 2, 3, 4, 130

QUICKSTART = Path(__file__).resolve().parent.parent / "experiments" / "quickstart.yaml"


def main(argv: list[str]) -> int:
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__)
        return 0
    # A SIGINT inside a C extension's import (jaxlib) can crash the interpreter, so during
    # the imports it is only noted; then ued.host.train installs its own handler.
    noted: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: noted.append(signum))
    try:
        import ued.host.train  # noqa: F401
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        if noted:
            raise KeyboardInterrupt
        return _main(argv)
    except KeyboardInterrupt:  # before ued.host.train's own handler is in place (config loading)
        print("[ued] interrupted before training began; nothing written", file=sys.stderr)
        return EXIT_EARLY_INTERRUPT


def _main(argv: list[str]) -> int:
    from ued.config import config as config_lib
    from ued.curricula import options_of
    from ued.host.chunk_records import NonFiniteError
    from ued.host.stop import Interrupted
    from ued.host.train import train

    path, overrides = QUICKSTART, list(argv)
    if overrides and "=" not in overrides[0]:
        path = Path(overrides.pop(0))
    try:
        cfg = config_lib.load(path, overrides, options_of)
    except config_lib.ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    if path == QUICKSTART and not cfg.run.dir:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        cfg = config_lib.replace(cfg, run={"dir": f"runs/quickstart-{stamp}"})
    try:
        result = train(cfg)
    except config_lib.ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except NonFiniteError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_NONFINITE
    except Interrupted as err:
        print(f"[ued] {err}", file=sys.stderr)
        return EXIT_EARLY_INTERRUPT
    final = result["final"]
    if result["status"] == "interrupted":
        print(
            f"[ued] interrupted at {final.get('updates', result['resumed_from'])} updates; "
            f"checkpoint {result['checkpoint']}; continue with run.resume=true",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    if not final:
        print(f"[ued] nothing to do: the run in {cfg.run.dir} is already complete")
        return 0
    first, seeds = result["first"], cfg.run.num_seeds
    speed = f"{final['sps']:.0f} steps/s"
    if seeds > 1:
        speed = f"{final['sps']:.0f} steps/s per seed ({seeds * final['sps']:.0f} in all)"
        print(f"[ued] means over {seeds} seeds (each seed's rows are in metrics.jsonl)")
    print(
        f"[ued] done: {final['env_steps']} env steps at {speed}; training "
        f"return {first['mean_return']:.3f} -> {final['mean_return']:.3f} and solve rate "
        f"{first['solve_rate']:.2f} -> {final['solve_rate']:.2f} (first -> last chunk)"
        + (f"; run saved in {cfg.run.dir}" if cfg.run.dir else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
