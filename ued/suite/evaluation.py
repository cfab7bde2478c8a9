"""Evaluation of each cell's final checkpoint on the suite's level sets
(``ued.evaluation.evaluate``).

Every experiment sees the same levels and the same episode keys (set ``S`` uses
``fold_in(PRNGKey(evaluation.seed), crc32(S))``, so adding a set changes no other set's
episodes), so differences between experiments are not differences in what was drawn. Each
set is played in its own env (``EvalSet.env``: e.g. the 13x13 standard mazes at horizon 250
by an agent trained on 9x9 mazes at horizon 100; ``ued.config.eval_setup.eval_env``). With
``evaluation.independent_play`` every level is played a second time with independent keys
(``solve_rate_independent``), for the CVaR (``ued.evaluation.stats.cvar_independent``).

Random sets keep solvable levels only: levels are drawn in rounds from the set's seed until
``count`` of them have the family's ``solvable`` level metric set (a family without that
metric counts every level as solvable).
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ued.config.config import ConfigError, call_with_options
from ued.config.eval_setup import (
    ANNOTATED,
    eval_env,
    level_annotations,
    level_horizons,
    split_by_horizon,
)
from ued.evaluation.evaluate import (
    INDEPENDENT,
    METRICS,
    LevelEvaluator,
    random_levels,
    solvable_check,
)
from ued.suite.cells import Cell, read_metrics
from ued.suite.spec import EvalSet, Suite
from ued.suite.support import producible

MAX_ROUNDS = 20  # draws of `count` levels before a random set gives up on solvability
CURVE_POINTS = 100  # points kept of each learning curve in a cell's result
CURVE_METRICS = ("mean_return", "solve_rate", "eval/solve_rate")


def level_set(suite: Suite, spec: EvalSet, exp, env=None) -> tuple[list[str], Any]:
    """(level names, batched levels) of one set for the experiment ``exp``, in ``env``
    (default the experiment's)."""
    family, env = exp.family, env or exp.env
    if spec.kind == "named":
        named = dict(family.named_levels(env))
        if not named:
            raise ConfigError(
                f"evaluation set {spec.name}: family {family.name} has no named levels"
            )
        return list(named), family.stack(list(named.values()))
    if spec.kind == "file":
        try:
            levels = family.read_levels(env, suite.resolve(spec.path))
        except ValueError as err:
            raise ConfigError(f"evaluation set {spec.name}: {err}") from None
        count = len(jax.tree.leaves(levels)[0])
        annotated = level_annotations(suite.resolve(spec.path).read_text(), "name")
        names = [f"{spec.name}/{i}" for i in range(count)]
        if len(annotated) == count and all(annotated) and len(set(annotated)) == count:
            names = list(annotated)  # the file's own ``; name:`` for each level
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


def eval_key(suite: Suite, spec: EvalSet) -> str:
    """A digest of what a set's result depends on besides the checkpoint: the set (a file
    set by its file's bytes), the episodes, the evaluation seed and the second play."""
    ev = suite.evaluation
    fields = {k: v for k, v in vars(spec).items() if k != "note"}
    if spec.kind == "file":
        fields["path"] = hashlib.sha256(suite.resolve(spec.path).read_bytes()).hexdigest()
    text = json.dumps([fields, ev.episodes, ev.seed, ev.independent_play], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def set_key(suite: Suite, name: str):
    return jax.random.fold_in(
        jax.random.PRNGKey(suite.evaluation.seed), zlib.crc32(name.encode()) & 0x7FFFFFFF
    )


def _annotated_horizons(suite: Suite, spec: EvalSet, count: int) -> list:
    if spec.env.get("max_steps") != ANNOTATED:
        return [None] * count
    if spec.kind != "file":
        raise ConfigError(f"evaluation set {spec.name}: max_steps {ANNOTATED} needs a level file")
    return level_horizons(suite.resolve(spec.path).read_text())


def evaluate_checkpoint(
    suite: Suite, cell: Cell, sets: list[EvalSet] | None = None, verbose: bool = True
) -> dict[str, Any]:
    """``{set: {"eval_key", "checkpoint", "names", "env", "max_steps", "producible",
    "seeds": [{metric: [per level]}, ...]}}`` for the cell's newest checkpoint (one entry per
    seed, in seed order) on ``sets`` (default all of the suite's). A set whose ``env`` says
    ``max_steps: annotated`` plays each level at its file's ``; horizon:`` (``max_steps`` is
    then ``annotated`` and ``horizons`` lists them)."""
    from ued.host.checkpoint import load_trained
    from ued.step.parallel import per_seed

    sets = list(suite.evaluation.sets if sets is None else sets)
    step = cell.checkpoints()[-1]
    exp, state, _ = load_trained(cell.directory / "checkpoints" / str(step))
    params = per_seed(state.student.params, exp.cfg.run.num_seeds)
    episodes = suite.evaluation.episodes
    envs: dict[str, tuple] = {}  # one env (and one compiled evaluator) per distinct options

    def env_for(options: dict, name: str):
        text = json.dumps(options, sort_keys=True)
        if text not in envs:
            try:
                envs[text] = eval_env(exp, options=options)
            except ConfigError as err:
                raise ConfigError(f"evaluation set {name}: {err}") from None
        return text, envs[text]

    plans = {}
    for spec in sets:
        sized = {k: v for k, v in spec.env.items() if v != ANNOTATED}
        _, (env, _) = env_for(sized, spec.name)
        names, levels = level_set(suite, spec, exp, env)
        horizons = _annotated_horizons(suite, spec, len(names))
        groups = split_by_horizon(spec.env, horizons, f"evaluation set {spec.name}")
        plans[spec.name] = (
            names,
            levels,
            horizons,
            [(env_for(o, spec.name)[0], idx) for o, idx in groups],
        )
    evaluators = {}
    for text, (env, env_params) in envs.items():
        # One batch size per env (one compilation each): its largest set, at most 1024 episodes.
        sizes = [len(idx) for *_, groups in plans.values() for t, idx in groups if t == text]
        if not sizes:
            continue  # an env only used to load levels (annotated horizons)
        batch = max(1, min(1024 // episodes, max(sizes)))
        max_steps = env.max_episode_steps(env_params)
        evaluators[text] = LevelEvaluator(env, env_params, exp.network, episodes, max_steps, batch)
    out = {}
    for spec in sets:
        names, levels, horizons, groups = plans[spec.name]
        key = set_key(suite, spec.name)
        seeds = []
        for p in params:
            result: dict[str, np.ndarray] = {}
            for text, idx in groups:
                rows = np.asarray(idx)
                part = jax.tree.map(lambda x, rows=rows: x[rows], levels)
                got = evaluators[text](key, p, part)
                if suite.evaluation.independent_play:
                    again = evaluators[text](jax.random.fold_in(key, 1_000_003), p, part)
                    got[INDEPENDENT] = again["solve_rate"]
                for m, values in got.items():
                    result.setdefault(m, np.zeros(len(names)))[idx] = values
            seeds.append({m: [round(float(v), 6) for v in values] for m, values in result.items()})
        steps = sorted({evaluators[text].max_steps for text, _ in groups})
        out[spec.name] = {
            "eval_key": eval_key(suite, spec),
            "checkpoint": step,
            "names": names,
            "env": dict(spec.env),
            "max_steps": steps[0] if len(steps) == 1 else ANNOTATED,
            "producible": producible(exp.cfg, levels),
            "seeds": seeds,
        }
        if len(steps) > 1:
            out[spec.name]["horizons"] = horizons
        if verbose:
            rate = np.mean([np.mean(s["solve_rate"]) for s in seeds])
            print(f"[suite] {cell.name} on {spec.name}: solve rate {rate:.3f}", flush=True)
    return out


def curves(cell: Cell, points: int = CURVE_POINTS) -> dict[str, dict[str, list]]:
    """Per seed: ``{metric: [[env steps], [values]]}`` of the training curves (the return,
    solve rate, the ``levels/*`` analytics of the levels trained on, and the evaluation's
    solve rate when the run evaluated), at most ``points`` evenly spaced rows each."""
    rows = read_metrics(cell)
    out = {}
    for seed in cell.seeds:
        mine = [r for r in rows if r.get("seed", seed) == seed]
        metrics = sorted(
            {k for r in mine for k in r if k in CURVE_METRICS or k.startswith("levels/")}
        )
        seed_curves = {}
        for metric in metrics:
            pts = sorted(
                (r["env_steps"], r[metric])
                for r in mine
                if isinstance(r.get(metric), (int, float)) and np.isfinite(r[metric])
            )
            if not pts:
                continue
            idx = np.unique(np.linspace(0, len(pts) - 1, min(points, len(pts))).round()).astype(int)
            xs, ys = zip(*[pts[i] for i in idx], strict=True)
            seed_curves[metric] = [list(xs), [round(float(y), 6) for y in ys]]
        out[str(seed)] = seed_curves
    return out


def merged(cell_results: list[dict[str, Any]], label: str, set_name: str) -> dict[str, Any]:
    """One experiment's result on one set over its cells: names, seeds and a ``(seeds,
    levels)`` array per metric (seeds in order over the cells)."""
    entry: dict[str, Any] = {"seeds": [], "rows": []}
    for result in cell_results:
        res = result["sets"][set_name]
        entry.setdefault("names", res["names"])
        entry["seeds"] += result["seeds"]
        entry["rows"] += res["seeds"]
        entry.setdefault("max_steps", res.get("max_steps"))
        entry.setdefault("producible", [])
        entry["producible"].append(res.get("producible"))
    rows = entry.pop("rows")
    keys = [m for m in (*METRICS, INDEPENDENT) if all(m in r for r in rows)]
    for m in keys:
        entry[m] = np.asarray([r[m] for r in rows], np.float64)
    entry["label"] = label
    return entry


_NUMBERS = re.compile(
    r"\[\s*((?:-?[\d.eE+-]+|NaN|-?Infinity|null)(?:,\s*(?:-?[\d.eE+-]+|NaN|-?Infinity|null))*)\s*\]"
)


def dumps(data: Any) -> str:
    """JSON with one level of indentation, each list of numbers on one line (results hold
    thousands of per-level values)."""
    text = json.dumps(data, indent=1)
    return _NUMBERS.sub(
        lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text
    )


def write_json(path: Path, data: Any) -> None:
    from ued.suite.cells import write_atomic

    write_atomic(path, dumps(data))
