"""Evaluation of each cell's final checkpoint on the suite's level sets (``ued.evaluate``).

Every experiment sees the same levels and the same episode keys (set ``i`` uses
``fold_in(PRNGKey(evaluation.seed), i)``), so differences between experiments are not
differences in what was drawn. Random sets keep solvable levels only: levels are drawn in
rounds from the set's seed until ``count`` of them have the family's ``solvable`` level
metric set (a family without that metric counts every level as solvable). Results are
cached in the cell's ``suite_eval.json``, keyed by what produced them, so a rerun of the
suite evaluates only what changed.
"""

from __future__ import annotations

import json
from typing import Any

import jax
import numpy as np

from ued.config import ConfigError, call_with_options
from ued.evaluate import METRICS, LevelEvaluator, random_levels, solvable_check
from ued.suite.cells import Cell, write_atomic
from ued.suite.spec import EvalSet, Suite

EVAL_FILE = "suite_eval.json"
MAX_ROUNDS = 20  # draws of `count` levels before a random set gives up on solvability


def level_set(suite: Suite, spec: EvalSet, exp) -> tuple[list[str], Any]:
    """(level names, batched levels) of one set for the experiment ``exp``."""
    family, env = exp.family, exp.env
    if spec.kind == "named":
        named = dict(family.named_levels(env))
        if not named:
            raise ConfigError(
                f"evaluation set {spec.name}: family {family.name} has no named levels"
            )
        return list(named), family.stack(list(named.values()))
    if spec.kind == "file":
        levels = family.read_levels(env, suite.resolve(spec.path))
        names = [f"{spec.name}/{i}" for i in range(len(jax.tree.leaves(levels)[0]))]
        return names, levels
    if spec.generator not in family.generators:
        raise ConfigError(
            f"evaluation set {spec.name}: generator {spec.generator!r} is not one of "
            f"{sorted(family.generators)}"
        )
    where = f"evaluation set {spec.name} options"
    generator = call_with_options(family.generators[spec.generator], spec.options, where, env)
    accept = solvable_check(family, env)
    try:
        key = jax.random.PRNGKey(spec.seed)
        levels = random_levels(key, generator, spec.count, accept, max_rounds=MAX_ROUNDS)
    except ValueError as err:
        raise ConfigError(f"evaluation set {spec.name} ({spec.generator}): {err}") from None
    return [f"{spec.name}/{i}" for i in range(spec.count)], levels


def _fingerprint(suite: Suite, spec: EvalSet, step: int) -> str:
    ev = suite.evaluation
    return json.dumps([repr(spec), ev.episodes, ev.seed, step], sort_keys=True)


def evaluate_cell(suite: Suite, cell: Cell, verbose: bool = True) -> dict[str, Any]:
    """``{set: {"names": [...], "seeds": [{metric: [per level]}, ...]}}`` for the cell's
    newest checkpoint (one entry per seed, in seed order), from the cache when it matches."""
    from ued.checkpoint import load_trained
    from ued.parallel import per_seed

    path = cell.directory / EVAL_FILE
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    step = cell.checkpoints()[-1]
    wanted = {s.name: _fingerprint(suite, s, step) for s in suite.evaluation.sets}
    if all(cache.get(n, {}).get("fingerprint") == f for n, f in wanted.items()):
        return {n: cache[n] for n in wanted}
    exp, state, snapshot = load_trained(cell.directory / "checkpoints" / str(step))
    sets = {s.name: level_set(suite, s, exp) for s in suite.evaluation.sets}
    episodes = suite.evaluation.episodes
    largest = max(len(names) for names, _ in sets.values())
    batch = max(1, min(1024 // episodes, largest))  # one batch size: one compilation
    max_steps = exp.env.max_episode_steps(exp.env_params)
    evaluator = LevelEvaluator(exp.env, exp.env_params, exp.network, episodes, max_steps, batch)
    params = per_seed(state.student.params, exp.cfg.run.num_seeds)
    key = jax.random.PRNGKey(suite.evaluation.seed)
    out = {}
    for i, spec in enumerate(suite.evaluation.sets):
        names, levels = sets[spec.name]
        set_key = jax.random.fold_in(key, i)
        seeds = [evaluator(set_key, p, levels) for p in params]
        out[spec.name] = {
            "fingerprint": wanted[spec.name],
            "checkpoint": step,
            "names": names,
            "seeds": [{m: [float(v) for v in s[m]] for m in METRICS} for s in seeds],
        }
        if verbose:
            rate = np.mean([np.mean(s["solve_rate"]) for s in seeds])
            print(f"[suite] {cell.name} on {spec.name}: solve rate {rate:.3f}", flush=True)
    write_atomic(path, json.dumps(out))
    return out


def evaluate_cells(suite: Suite, cells: list[Cell], verbose: bool = True) -> dict[str, dict]:
    """Per experiment label and set: ``names`` and a ``(seeds, levels)`` array per metric,
    seeds in order over the label's cells."""
    merged: dict[str, dict] = {}
    for cell in cells:
        result = evaluate_cell(suite, cell, verbose)
        sets = merged.setdefault(cell.label, {})
        for name, res in result.items():
            entry = sets.setdefault(name, {"names": res["names"], "seeds": []})
            entry["seeds"].extend(res["seeds"])
    for sets in merged.values():
        for entry in sets.values():
            seeds = entry.pop("seeds")
            for m in METRICS:
                entry[m] = np.asarray([s[m] for s in seeds], np.float64)
    return merged
