"""Write a held-out level file: N levels of a family's generator, drawn with a fixed seed.

    python scripts/make_levels.py FAMILY GENERATOR N OUT.txt [--seed 0] [--env KEY=VALUE ...]
        [--gen KEY=VALUE ...] [--include-unsolvable] [--name PREFIX]

For example the maze's 9x9 held-out set of the default run:

    python scripts/make_levels.py maze random_walls 50 envs/maze/levels/random_9x9.txt \\
        --seed 2026 --env max_size=9 --gen num_walls=12 --name random_9x9/

GENERATOR may also be ``programs``: levels of the family's program space, each from a
program drawn uniformly inside its widest bounds (``--gen stage=S``: a widening stage's),
e.g. the corpus of a level model (``scripts/train_level_model.py``).

Only solvable levels are kept (the family's ``solvable`` metric, the maze's BFS) unless
``--include-unsolvable``. Each level is written after ``;`` comment lines with its name and
its level metrics (e.g. ``; shortest_path: 7``), so the file reads both as a plain level file
(``eval.levels: FILE.txt``, ``scripts/evaluate.py --levels FILE.txt``) and as an annotated
catalogue. A file drawn with a seed the training run never uses holds levels the student
has not trained on (the chance that a random level repeats one trained on is what the
generator's space makes it; say so when reporting).

OUT is written atomically (a temporary file renamed over it), and only ever replaces a
regular file: an OUT that is a folder, a device, a FIFO or lies where nothing can be written
is refused before any level is drawn.

Exit codes: 0 written; 2 bad arguments (an unknown family, generator or option, or an OUT
that cannot be written).
"""

from __future__ import annotations

import argparse
import sys

import yaml

from ued.config.options import ConfigError  # (ued.config.config would import JAX before --help)
from ued.files.safe_io import FileRefused, check_output, write_atomic

MAX_FILE_LEVELS = 100_000  # envs.core.MAX_FILE_LEVELS (not imported: parsing needs no JAX)
MAX_SEED = 2**31 - 1  # PRNGKey(seed) repeats itself past 2**32


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("family")
    parser.add_argument("generator")
    parser.add_argument("count", type=int)
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--gen", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--include-unsolvable", action="store_true")
    parser.add_argument("--name", default="", help="prefix of each level's name")
    args = parser.parse_args(argv)
    if not 0 <= args.seed <= MAX_SEED:
        parser.error(f"--seed must be in [0, {MAX_SEED}], got {args.seed}")
    return args


def options(pairs: list[str], flag: str) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} {pair!r}: expected KEY=VALUE")
        out[key] = yaml.safe_load(value)
    return out


def program_generator(family, env, stage: int | None = None):
    """``key -> level`` of the family's program space: a uniform program inside the widest
    bounds (or ``stage``'s), then one level of it."""
    import jax

    space = family.programs(env)
    if stage is None:
        low, high = space.low, space.high
    elif 0 <= stage < space.num_stages:
        low, high = (b[stage] for b in space.stage_bounds())
    else:
        raise ValueError(f"stage={stage}; the space has stages 0..{space.num_stages - 1}")

    def generate(key):
        program_key, level_key = jax.random.split(key)
        return space.generate(level_key, space.sample_in(program_key, low, high))

    return generate


def write(args: argparse.Namespace) -> str:
    """The file's text (see the module doc)."""
    import jax
    import numpy as np

    from envs.core import families
    from ued.config.config import call_with_options
    from ued.evaluation.evaluate import random_levels, solvable_check

    if not 1 <= args.count <= MAX_FILE_LEVELS:
        raise ConfigError(f"N={args.count}; must be in [1, {MAX_FILE_LEVELS}]")
    registry = families()
    if args.family not in registry:
        raise ConfigError(f"family {args.family!r}; registered: {sorted(registry)}")
    family = registry[args.family]
    programs = args.generator == "programs" and family.programs is not None
    if args.generator not in family.generators and not programs:
        allowed = sorted(family.generators) + (["programs"] if family.programs else [])
        raise ConfigError(f"generator {args.generator!r}; {family.name} has {allowed}")
    env_options, gen_options = options(args.env, "--env"), options(args.gen, "--gen")
    env = call_with_options(family.make_env, env_options, "--env")
    if programs:
        generator = call_with_options(program_generator, gen_options, "--gen", family, env)
    else:
        factory = family.generators[args.generator]
        generator = call_with_options(factory, gen_options, "--gen", env)
    accept = None if args.include_unsolvable else solvable_check(family, env)
    try:
        levels = random_levels(jax.random.PRNGKey(args.seed), generator, args.count, accept)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    metrics = jax.vmap(lambda level: family.level_metrics(env, level))(levels)
    command = " ".join(["python scripts/make_levels.py", *sys.argv[1:]])
    lines = [
        f"; {args.count} levels of {family.name}'s {args.generator} generator "
        f"{gen_options or ''}, env {env_options or '{}'}, seed {args.seed}"
        + ("" if args.include_unsolvable else ", solvable only"),
        f"; written by: {command}",
        "",
    ]
    width = len(str(args.count - 1))
    for i, level in enumerate(family.unstack(levels)):
        lines.append(f"; name: {args.name}{i:0{width}d}")
        for key, values in metrics.items():
            value = float(np.asarray(values)[i])
            lines.append(f"; {key}: {value:g}")
        lines += [family.level_to_text(env, level), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        check_output(args.out, "OUT")  # before any level is drawn
        text = write(args)
        write_atomic(args.out, text, "OUT")
    except (ConfigError, FileRefused) as err:
        print(f"make_levels: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.count} levels to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
