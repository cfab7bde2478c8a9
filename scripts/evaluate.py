"""Evaluate a trained student from a checkpoint.

    python scripts/evaluate.py OUT [--checkpoint PATH] [--levels SET|FILE.txt ...]
        [--random GENERATOR:N ...] [--no-named] [--episodes 10] [--max-steps T]
        [--max-size N] [--batch-envs 1024] [--seed 0] [--max-levels 100000] [-o FILE.json]

OUT is a run folder; its newest usable checkpoint is evaluated (or ``--checkpoint
OUT/checkpoints/<updates>``). Level sets: the family's named levels (unless ``--no-named``),
each ``--levels`` set (``standard``: the literature's mazes; ``standard_large``: dcd's
and minimax's larger ones, which need ``--max-size 99``; ``both``: named and standard; or a
text file of levels separated by blank lines) and each ``--random
GENERATOR:N`` held-out set of N generated levels (the run's generator options apply when
        [--max-size N] [--batch-envs 1024] [--seed 0] [--max-levels 100000] [-o FILE.json]

A run trained with ``run.num_seeds = S > 1`` is evaluated seed by seed on the same levels and
episodes' keys: each set's ``summary`` is then the mean over seeds of the per-seed summaries,
with ``summary_std`` (across seeds), ``seeds`` (each seed's summary, in the order ``run.seed``,
``run.seed + 1``, ...) and per-level values averaged over seeds.

Exit codes: 0 done; 2 bad arguments, level file or checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# The arguments are parsed before JAX is imported (``--help`` and a bad argument answer at
# once); these bounds are checked there.
MAX_FILE_LEVELS = 100_000  # envs.core.MAX_FILE_LEVELS, the default of --max-levels
BOUNDS = {  # option -> largest value
    "episodes": 10_000,  # episodes per level run at once: memory grows with them
    "max_steps": 100_000,
    "batch_envs": 65_536,
    "max_levels": 1_000_000,
    "seed": 2**31 - 1,
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run folder (or a checkpoint folder)")
    parser.add_argument("--checkpoint", help="a step folder OUT/checkpoints/<updates>")
    parser.add_argument(
        "--levels", action="append", default=[], metavar="SET|FILE.txt",
        help="standard, standard_large, both, named, or a level file",
    )  # fmt: skip
    parser.add_argument("--random", action="append", default=[], metavar="GENERATOR:N")
    parser.add_argument("--no-named", action="store_true", help="skip the named levels")
    parser.add_argument(
        "--include-unsolvable", action="store_true", help="keep unsolvable random levels"
    )
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--max-steps", type=int, default=None, help="default: the env's")
    parser.add_argument("--max-size", type=int, default=None, help="default: the env's")
    parser.add_argument(
        "--batch-envs", type=int, default=1024, help="about this many episodes run at once"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-levels", type=int, default=MAX_FILE_LEVELS, help="per set")
    parser.add_argument("-o", "--output", help="JSON path (default OUT/eval.json)")
    args = parser.parse_args(argv)
    for name in ("episodes", "max_steps", "max_size", "batch_envs", "max_levels"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    for name, high in BOUNDS.items():
        value = getattr(args, name)
        if value is not None and not (0 if name == "seed" else 1) <= value <= high:
            low = 0 if name == "seed" else 1
            parser.error(f"--{name.replace('_', '-')} must be in [{low}, {high}], got {value}")
    return args


def level_sets(exp, args, env=None) -> dict[str, tuple[list[str] | None, object]]:
    """Set name -> (level names or None, batched levels), on ``env`` (default the run's)."""
    import jax

    from ued.config import ConfigError, call_with_options
    from ued.eval_setup import is_set_name, load_level_sets
    from ued.evaluate import random_levels, solvable_check

    env = env or exp.env
    sets = {}
    if not args.no_named:
        named = dict(exp.family.named_levels(env))
        if named:
            sets["named"] = (list(named), exp.family.stack(list(named.values())))
    for spec in args.levels:
        if is_set_name(spec):
            for label, levels in load_level_sets(exp.family, env, spec).items():
                if levels and label not in sets:
                    sets[label] = (list(levels), exp.family.stack(list(levels.values())))
            continue
        levels = exp.family.levels_from_file(env, spec, args.max_levels)
        names = [f"{Path(spec).stem}/{i}" for i in range(len(levels))]
        sets[f"file:{Path(spec).name}"] = (names, exp.family.stack(levels))
    for i, spec in enumerate(args.random):
        name, _, count = spec.partition(":")
        if name not in exp.family.generators or not count.isdigit() or int(count) < 1:
            raise ConfigError(
                f"--random {spec!r}: expected GENERATOR:N with N >= 1 and GENERATOR one of "
                f"{sorted(exp.family.generators)}"
            )
        if int(count) > args.max_levels:
            raise ConfigError(f"--random {spec!r}: N is over --max-levels {args.max_levels}")
        options = exp.cfg.env.generator_options if name == exp.cfg.env.generator else {}
        generator = call_with_options(
            exp.family.generators[name], options, "generator_options", env
        )
        key = jax.random.fold_in(jax.random.PRNGKey(args.seed), i)
        accept = None if args.include_unsolvable else solvable_check(exp.family, env)
        sets[f"random:{name}"] = (None, random_levels(key, generator, int(count), accept))
    return sets


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from ued.safe_io import FileRefused, check_output, write_atomic

    try:
        if args.output:  # refused before anything is loaded or evaluated
            check_output(args.output, "-o")
    except FileRefused as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    import jax

    from ued.checkpoint import CheckpointError, load_trained
    from ued.config import ConfigError
    from ued.eval_setup import eval_env
    from ued.evaluate import INDEPENDENT, LevelEvaluator, format_table, seeds_result
    from ued.parallel import per_seed

    try:
        exp, state, snapshot = load_trained(args.checkpoint or args.run)
        output = Path(args.output) if args.output else snapshot.path.parent.parent / "eval.json"
        check_output(output, "-o" if args.output else "the evaluation file")
        env, env_params = eval_env(exp, max_steps=args.max_steps, max_size=args.max_size)
        sets = level_sets(exp, args, env)
    except (CheckpointError, ConfigError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not sets:
        print("error: no levels to evaluate", file=sys.stderr)
        return 2
    max_steps = env.max_episode_steps(env_params)
    # One batch size for every set, so evaluation compiles once.
    largest = max(len(jax.tree.leaves(levels)[0]) for _, levels in sets.values())
    batch = max(1, min(args.batch_envs // args.episodes, largest))
    evaluator = LevelEvaluator(
        env, env_params, exp.network, args.episodes, max_steps, batch_levels=batch
    )
    results, key = {}, jax.random.PRNGKey(args.seed + 1)
    t0 = time.perf_counter()
    num_seeds = exp.cfg.run.num_seeds
    params = per_seed(state.student.params, num_seeds)
    for i, (name, (names, levels)) in enumerate(sets.items()):
        set_key = jax.random.fold_in(key, i)
        per_seed_results = [evaluator(set_key, p, levels) for p in params]
        if name.startswith("random:"):  # a second, independent play for the unbiased CVaR
            again = jax.random.fold_in(set_key, 1_000_003)
            per_seed_results = [
                {**r, INDEPENDENT: evaluator(again, p, levels)["solve_rate"]}
                for r, p in zip(per_seed_results, params, strict=True)
            ]
        results[name] = seeds_result(per_seed_results, names)
    seconds = time.perf_counter() - t0
    seeds = f", mean of {num_seeds} seeds" if num_seeds > 1 else ""
    print(
        f"[ued] {snapshot.path} ({snapshot.step} updates), {args.episodes} episodes per "
        f"level{seeds}"
    )
    print(format_table(results))
    report = {
        "checkpoint": str(snapshot.path),
        "updates": snapshot.step,
        "env_steps": snapshot.meta.get("env_steps"),
        "episodes": args.episodes,
        "max_steps": max_steps,
        "seed": args.seed,
        "num_seeds": num_seeds,
        "seconds": seconds,
        "sets": results,
    }
    try:
        write_atomic(
            output, json.dumps(report, indent=1), "-o" if args.output else "the evaluation file"
        )
    except FileRefused as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"[ued] wrote {output} in {seconds:.1f}s of evaluation")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
