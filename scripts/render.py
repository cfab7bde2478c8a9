"""Pictures of levels and episodes.

Render a level file (one or more levels separated by blank lines) as a PNG grid:

    python scripts/render.py FILE.txt -o OUT.png [--family maze] [--option max_size=15]
        [--max-levels 1024]

Record an episode of a trained student on a level as a GIF:

    python scripts/render.py OUT --rollout LEVEL -o EPISODE.gif [--checkpoint PATH]
        [--index 0] [--max-steps T] [--seed 0] [--fps 8] [--run-seed S]

LEVEL is a named level of the run's family or a level file (``--index`` picks one of its
levels). The run's own env options apply. For a run of several seeds (``run.num_seeds``),
``--run-seed`` picks whose student plays (default: the run's first, ``run.seed``).
Exit codes: 0 done; 2 bad arguments or input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from ued.config.options import ConfigError  # (ued.config.config would import JAX before --help)
from ued.files.safe_io import FileRefused, atomic_output, check_output

MAX_STEPS = 100_000  # --max-steps at most (an episode of a GIF: a frame per step)
MAX_SEED = 2**31 - 1


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="a level file (.txt), or a run folder with --rollout")
    parser.add_argument("-o", "--output", required=True, help="PNG (levels) or GIF (rollout)")
    parser.add_argument("--rollout", metavar="LEVEL", help="named level or level file")
    parser.add_argument("--checkpoint", help="a step folder OUT/checkpoints/<updates>")
    parser.add_argument("--index", type=int, default=0, help="level of a multi-level file")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fps", type=float, default=8.0)
    parser.add_argument("--run-seed", type=int, help="which seed of a multi-seed run plays")
    parser.add_argument("--family", default="maze", help="family of a level file")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--ncols", type=int, default=8, help="pictures per row")
    parser.add_argument("--max-levels", type=int, default=1024, help="levels one file may hold")
    args = parser.parse_args(argv)
    if not 0 < args.fps <= 100:
        parser.error(f"--fps must be in (0, 100], got {args.fps}")
    for name in ("ncols", "max_levels", "max_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.max_steps is not None and args.max_steps > MAX_STEPS:
        parser.error(f"--max-steps must be at most {MAX_STEPS}, got {args.max_steps}")
    if not 0 <= args.seed <= MAX_SEED:
        parser.error(f"--seed must be in [0, {MAX_SEED}], got {args.seed}")
    if args.index < 0:
        parser.error(f"--index must be >= 0, got {args.index}")
    return args


def render_file(args) -> Path:
    """Draws every level of a file into one PNG grid captioned with their indices."""
    from envs import images as images_lib
    from envs.core import get_family
    from ued.config.config import call_with_options

    options = {}
    for text in args.option:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option {text!r} must look like key=value")
        options[key] = yaml.safe_load(value)
    try:
        family = get_family(args.family)
    except KeyError as err:
        raise ConfigError(err.args[0]) from None
    env = call_with_options(family.make_env, options, "--option")
    levels = family.levels_from_file(env, args.source, args.max_levels)
    images = [family.render(env, level) for level in levels]
    captions = [str(i) for i in range(len(levels))]
    with atomic_output(args.output, "-o") as tmp:
        images_lib.save_png(tmp, images_lib.tile(images, args.ncols, captions))
    return Path(args.output)


def render_rollout(args) -> tuple[Path, dict]:
    """Records one episode of the checkpoint's student on ``args.rollout`` as a GIF."""
    import jax

    from envs import images as images_lib
    from ued.evaluation import gallery
    from ued.host.checkpoint import load_trained
    from ued.step.parallel import per_seed

    exp, state, _ = load_trained(args.checkpoint or args.source)
    named = dict(exp.family.named_levels(exp.env))
    if args.rollout in named:
        level = named[args.rollout]
    elif Path(args.rollout).exists():
        levels = exp.family.levels_from_file(exp.env, args.rollout, args.max_levels)
        if not 0 <= args.index < len(levels):
            raise ConfigError(f"--index {args.index}: {args.rollout} has {len(levels)} levels")
        level = levels[args.index]
    else:
        raise ConfigError(
            f"--rollout {args.rollout!r} is neither a level file nor a named level "
            f"({sorted(named)})"
        )
    first, count = exp.cfg.run.seed, exp.cfg.run.num_seeds
    run_seed = first if args.run_seed is None else args.run_seed
    if not first <= run_seed < first + count:
        raise ConfigError(
            f"--run-seed {run_seed}: the run trained seeds {first}..{first + count - 1}"
        )
    params = per_seed(state.student.params, count)[run_seed - first]
    key = jax.random.PRNGKey(args.seed)
    frames, info = gallery.record_episode(key, exp, params, level, args.max_steps)
    with atomic_output(args.output, "-o") as tmp:
        images_lib.save_gif(tmp, frames, args.fps)
    return Path(args.output), info


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    try:
        check_output(args.output, "-o")  # before anything is loaded or drawn
    except FileRefused as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from ued.host.checkpoint import CheckpointError

    try:
        if args.rollout:
            path, info = render_rollout(args)
            outcome = "solved" if info["solved"] else "not solved"
            steps, ret = info["length"], info["return"]
            print(f"[ued] wrote {path}: {steps} steps, return {ret:.3f}, {outcome}")
        else:
            path = render_file(args)
            print(f"[ued] wrote {path}")
    except (CheckpointError, ConfigError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
