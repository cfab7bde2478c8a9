"""Train a student with a curriculum.

    python scripts/train.py [EXPERIMENT.yaml] [section.key=value ...]

With no experiment file it runs the quick-start experiment (experiments/quickstart.yaml): a
short run that prints progress and ends with a table of solve rates on the named levels.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ued import config as config_lib
from ued.train import train

QUICKSTART = Path(__file__).resolve().parent.parent / "experiments" / "quickstart.yaml"


def main(argv: list[str]) -> int:
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__)
        return 0
    path, overrides = QUICKSTART, list(argv)
    if overrides and "=" not in overrides[0]:
        path = Path(overrides.pop(0))
    try:
        cfg = config_lib.load(path, overrides)
    except (config_lib.ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if path == QUICKSTART and not cfg.run.dir:
        cfg = config_lib.replace(cfg, run={"dir": "runs/quickstart"})
    try:
        result = train(cfg)
    except config_lib.ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    final = result["final"]
    print(
        f"[ued] done: {final['env_steps']} env steps, mean return {final['mean_return']:.3f}, "
        f"solve rate {final['solve_rate']:.2f}, {final['sps']:.0f} steps/s"
        + (f"; run saved in {cfg.run.dir}" if cfg.run.dir else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
