"""Train a small generative model of a family's levels, for its latent program space.

    python scripts/train_level_model.py FAMILY CORPUS.txt [MORE.txt ...] --out DIR
        [--space latent] [--env KEY=VALUE ...] [--exclude FILE ...] [--latent 8]
        [--epochs 30] [--max-minutes 2] [--batch 256] [--lr 1e-3] [--beta 1]
        [--held-out 0.1] [--seed 0] [--samples 2000] [--no-progress]

The corpus is one or more level files, e.g. written by ``scripts/make_levels.py`` from the
family's generators and program space (the maze's 9x9 corpus of the shipped model):

    python scripts/make_levels.py maze random_walls 6000 c_walls.txt --env max_size=9 \\
        --gen num_walls=8 --seed 101
    python scripts/make_levels.py maze programs 12000 c_programs.txt --env max_size=9 --seed 102

(README, "Program curricula", lists the whole recipe). Any level of a scored set is
dropped first: the family's shipped level files and named sets, and every ``--exclude``
file. The model (a VAE, ``envs.level_model``) trains on all but a ``--held-out`` share,
with a progress bar, for ``--epochs`` or ``--max-minutes``, whichever ends first; DIR gets
``model.json`` (architecture, env, the report) and ``params/`` (orbax). The report (printed
and saved) gives the held-out reconstruction accuracy, the validity of decoded levels
before repair, their novelty (fraction not in the corpus) and solvable fraction. Last, it
prints the ``curriculum.options`` an experiment needs, with the model's SHA-256.

Exit codes: 0 trained; 2 bad arguments (unknown family or space, unreadable corpus).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import numpy as np
import yaml

from envs import level_model as lm
from envs.core import families
from envs.programs import space_codec
from ued.config.config import ConfigError, call_with_options
from ued.host import level_model as train_lib


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("family")
    parser.add_argument("corpus", nargs="+", help="level files")
    parser.add_argument("--out", required=True, help="model folder to write")
    parser.add_argument("--space", default="latent", help="the family's latent space")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="FILE",
        help="a scored level file whose levels the corpus must not hold",
    )
    parser.add_argument("--latent", type=int, default=8, help="latent dims")
    parser.add_argument("--features", type=int, default=16, help="conv channels")
    parser.add_argument("--hidden", type=int, default=64, help="dense units")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--max-minutes", type=float, default=2.0)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--beta", type=float, default=1.0, help="KL weight")
    parser.add_argument("--held-out", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=2000, help="decoded levels measured")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)  # fmt: skip


def env_options(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--env {pair!r}: expected KEY=VALUE")
        out[key] = yaml.safe_load(value)
    return out


def run(args: argparse.Namespace) -> dict:
    registry = families()
    if args.family not in registry:
        raise ConfigError(f"family {args.family!r}; registered: {sorted(registry)}")
    family = registry[args.family]
    try:
        make_codec = space_codec(family.name, args.space)
    except KeyError as err:
        raise ConfigError(err.args[0]) from None
    if not 0 < args.held_out < 1:
        raise ConfigError(f"--held-out {args.held_out}: must be in (0, 1)")
    options = env_options(args.env)
    env = call_with_options(family.make_env, options, "--env")
    codec = make_codec(env)
    try:
        levels, source, summary = train_lib.read_corpus(family, env, args.corpus, args.exclude)
    except (OSError, ValueError) as err:
        raise ConfigError(f"corpus: {err}") from None
    texts = {family.level_to_text(env, lv) for lv in family.unstack(levels)}
    grids = np.asarray(jax.jit(jax.vmap(codec.to_grid))(levels))
    n = grids.shape[0]
    order = np.random.default_rng(args.seed).permutation(n)
    held = max(int(round(args.held_out * n)), 1)
    held_grids, train_grids = grids[order[:held]], grids[order[held:]]
    held_sources = {
        Path(path).name: source[order[:held]] == i for i, path in enumerate(args.corpus)
    }
    print(f"[ued] corpus: {summary['levels']} levels ({summary['dropped_scored']} scored "
          f"levels dropped), {train_grids.shape[0]} to train, {held} held out")  # fmt: skip
    spec = lm.ModelSpec(
        family=family.name,
        env_options=options,
        height=codec.shape[0],
        width=codec.shape[1],
        channels=codec.channels,
        latent_dim=args.latent,
        features=args.features,
        hidden=args.hidden,
    )
    params, history = train_lib.train(
        spec, train_grids, held_grids, epochs=args.epochs, batch=args.batch, lr=args.lr,
        beta=args.beta, seed=args.seed, max_seconds=60 * args.max_minutes,
        progress=not args.no_progress,
    )  # fmt: skip
    report = train_lib.evaluate(
        spec, params, codec, family, env, held_grids, texts, samples=args.samples,
        seed=args.seed, held_sources=held_sources,
    )  # fmt: skip
    report = {"corpus": summary, "training": history, **report}
    digest = lm.save(args.out, spec, params, report)
    return {"report": report, "sha256": digest}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        result = run(args)
    except ConfigError as err:
        print(f"train_level_model: {err}", file=sys.stderr)
        return 2
    report = {k: v for k, v in result["report"].items() if k not in ("training", "corpus")}
    print(json.dumps(report, indent=1))
    options = {"program_space": args.space,
               "space_options": {"model": args.out, "sha256": result["sha256"]}}  # fmt: skip
    print(f"[ued] wrote {args.out}; an experiment uses it with\n"
          + yaml.safe_dump({"curriculum": {"options": options}}, sort_keys=False))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
