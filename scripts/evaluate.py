"""Evaluate a trained student from a checkpoint.

    python scripts/evaluate.py OUT [--checkpoint PATH] [--levels SET|FILE.txt ...]
        [--random GENERATOR:N ...] [--no-named] [--episodes 10] [--max-steps T]
        [--max-size N] [--batch-envs 1024] [--seed 0] [--max-levels 100000] [-o FILE.json]

OUT is a run folder; its newest usable checkpoint is evaluated (or ``--checkpoint
OUT/checkpoints/<updates>``). Level sets: the family's named levels (unless ``--no-named``),
each ``--levels`` set (``standard``: the literature's mazes; ``standard_large``: dcd's
and minimax's larger ones; ``both``: named and standard; or a text file of levels separated
by blank lines) and each ``--random GENERATOR:N`` held-out set of N generated levels, solvable
ones only unless ``--include-unsolvable`` (the run's generator options apply when GENERATOR
is the run's generator).

A shipped set is played in its own env unless ``--max-size`` / ``--max-steps`` say
otherwise (``ued.config.eval_setup.SET_ENV``): ``standard`` in a 13x13 grid at 250 steps (JaxUED's
and SFL's horizon; minimax and dcd use ``--max-steps 450``), whatever size and horizon the
run trained at; ``standard_large`` in a 99x99 grid, each level at the horizon its file
annotates (dcd's). The other sets use the run's env with ``--max-size`` / ``--max-steps``.
The table and the JSON give each set's horizon.

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

import numpy as np

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


def _named(exp, env) -> tuple | None:
    named = dict(exp.family.named_levels(env))
    return (list(named), exp.family.stack(list(named.values()))) if named else None


def level_sets(exp, args) -> dict[str, tuple]:
    """Set name -> (level names or None, batched levels, [(env, env_params, level indices
    or None for all)]): each set with the env(s) it is played in (the module docstring)."""
    import jax

    from ued.config.config import ConfigError, call_with_options
    from ued.config.eval_setup import (
        ANNOTATED,
        eval_env,
        expand,
        is_set_name,
        level_horizons,
        load_level_sets,
        set_env_options,
        set_file,
        split_by_horizon,
    )
    from ued.evaluation.evaluate import random_levels, solvable_check

    cache: dict[str, tuple] = {}

    def env_for(options: dict):  # one env object per options: one evaluator, one compile
        text = json.dumps(options, sort_keys=True)
        if text not in cache:
            cache[text] = eval_env(exp, options=options)
        return cache[text]

    run_options = {"max_steps": args.max_steps, "max_size": args.max_size}
    run_env = env_for({k: v for k, v in run_options.items() if v is not None})
    sets = {}
    if not args.no_named and (named := _named(exp, run_env[0])):
        sets["named"] = (*named, [(*run_env, None)])
    for spec in args.levels:
        for item in expand(spec) if is_set_name(spec) else [spec]:
            label = item if is_set_name(item) else f"file:{Path(item).name}"
            if label in sets:
                continue
            if item == "named":
                if named := _named(exp, run_env[0]):
                    sets["named"] = (*named, [(*run_env, None)])
                continue
            options = set_env_options(exp, item, args.max_steps, args.max_size)
            env, _ = env_for({k: v for k, v in options.items() if v != ANNOTATED})
            if is_set_name(item):
                levels = load_level_sets(exp.family, env, item)[item]
                names, stacked = list(levels), list(levels.values())
            else:
                stacked = exp.family.levels_from_file(env, item, args.max_levels)
                names = [f"{Path(item).stem}/{i}" for i in range(len(stacked))]
            path = set_file(exp.family, item)
            horizons = level_horizons(path.read_text()) if path is not None else []
            if len(horizons) != len(names):
                horizons = [None] * len(names)
            groups = split_by_horizon(options, horizons, f"--levels {item}")
            envs = [(*env_for(o), None if len(groups) == 1 else idx) for o, idx in groups]
            sets[label] = (names, exp.family.stack(stacked), envs)
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
            exp.family.generators[name], options, "generator_options", run_env[0]
        )
        key = jax.random.fold_in(jax.random.PRNGKey(args.seed), i)
        accept = None if args.include_unsolvable else solvable_check(exp.family, run_env[0])
        levels = random_levels(key, generator, int(count), accept)
        sets[f"random:{name}"] = (None, levels, [(*run_env, None)])
    return sets


def evaluate_set(evaluators, key, params, levels, envs, independent: bool):
    """Per-level results of one seed on one set, each part played in its env."""
    import jax

    from ued.evaluation.evaluate import INDEPENDENT

    n = len(jax.tree.leaves(levels)[0])
    out: dict[str, np.ndarray] = {}
    for env, _, idx in envs:
        rows = np.arange(n) if idx is None else np.asarray(idx)
        part = levels if idx is None else jax.tree.map(lambda x, rows=rows: x[rows], levels)
        evaluator = evaluators[id(env)]
        got = evaluator(key, params, part)
        if independent:  # a second, independent play for the unbiased CVaR
            got[INDEPENDENT] = evaluator(jax.random.fold_in(key, 1_000_003), params, part)[
                "solve_rate"
            ]
        for metric, values in got.items():
            out.setdefault(metric, np.zeros(n, np.float32))[rows] = values
    return out


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    from ued.files.safe_io import FileRefused, check_output, write_atomic

    try:
        if args.output:  # refused before anything is loaded or evaluated
            check_output(args.output, "-o")
    except FileRefused as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    import jax

    from ued.config.config import ConfigError
    from ued.evaluation.evaluate import LevelEvaluator, format_table, seeds_result
    from ued.host.checkpoint import CheckpointError, load_trained
    from ued.step.parallel import per_seed

    try:
        exp, state, snapshot = load_trained(args.checkpoint or args.run)
        output = Path(args.output) if args.output else snapshot.path.parent.parent / "eval.json"
        check_output(output, "-o" if args.output else "the evaluation file")
        sets = level_sets(exp, args)
    except (CheckpointError, ConfigError, ValueError, OSError, FileRefused) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not sets:
        print("error: no levels to evaluate", file=sys.stderr)
        return 2
    # One batch size for every set, so evaluation compiles once per env.
    largest = max(len(jax.tree.leaves(levels)[0]) for _, levels, _ in sets.values())
    batch = max(1, min(args.batch_envs // args.episodes, largest))
    evaluators = {}
    for _, _, envs in sets.values():
        for env, env_params, _ in envs:
            if id(env) not in evaluators:
                evaluators[id(env)] = LevelEvaluator(
                    env, env_params, exp.network, args.episodes,
                    env.max_episode_steps(env_params), batch_levels=batch,
                )  # fmt: skip
    results, key = {}, jax.random.PRNGKey(args.seed + 1)
    t0 = time.perf_counter()
    num_seeds = exp.cfg.run.num_seeds
    params = per_seed(state.student.params, num_seeds)
    for i, (name, (names, levels, envs)) in enumerate(sets.items()):
        set_key = jax.random.fold_in(key, i)
        independent = name.startswith("random:")
        per_seed_results = [
            evaluate_set(evaluators, set_key, p, levels, envs, independent) for p in params
        ]
        results[name] = seeds_result(per_seed_results, names)
        horizons = sorted({evaluators[id(env)].max_steps for env, _, _ in envs})
        results[name]["max_steps"] = horizons[0] if len(horizons) == 1 else horizons
        results[name]["max_size"] = getattr(envs[0][0], "max_size", None)
    seconds = time.perf_counter() - t0
    seeds = f", mean of {num_seeds} seeds" if num_seeds > 1 else ""
    print(
        f"[ued] {snapshot.path} ({snapshot.step} updates), {args.episodes} episodes per "
        f"level{seeds}"
    )
    print(format_table(results))
    for name, result in results.items():
        size = f", {result['max_size']}x{result['max_size']} grid" if result["max_size"] else ""
        print(f"[ued] {name}: horizon {result['max_steps']}{size}")
    run_horizon = exp.env.max_episode_steps(exp.env_params)
    report = {
        "checkpoint": str(snapshot.path),
        "updates": snapshot.step,
        "env_steps": snapshot.meta.get("env_steps"),
        "episodes": args.episodes,
        "max_steps": args.max_steps or run_horizon,
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
