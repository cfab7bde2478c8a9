"""``results.json`` and ``table.md`` of a suite: robust aggregates over seeds (``ued.stats``).

Per experiment and level set, over the (seeds, levels) matrix of per-level values:
- solve rate and return: mean and IQM with 95% stratified-bootstrap intervals (levels are
  the strata);
- ``cvar_10``: per seed, the mean solve rate of its worst 10% of levels (at least one),
  then the mean over seeds with a bootstrap interval over seeds. Taking the worst levels
  seed by seed keeps the estimate unbiased; the worst levels of the seed-averaged rates
  would overstate it (a minimum of means is at least the mean of minima);
- ``improvement``: the probability that the experiment's solve rate on a level beats the
  baseline's (ties count half), averaged over levels, with its interval.
Per experiment: wall seconds of training (all attempts), env steps by kind per seed and
student env steps per wall second (all seeds).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ued import stats
from ued.suite.cells import Cell, env_steps_by_kind, read_metrics
from ued.suite.spec import Suite

CVAR_FRACTION = 0.10


def run_stats(cells: list[Cell]) -> dict[str, dict[str, Any]]:
    """Per label: seeds, wall seconds, env steps by kind (per seed) and steps per second."""
    out: dict[str, dict[str, Any]] = {}
    for cell in cells:
        record = cell.record()
        entry = out.setdefault(
            cell.label, {"seeds": [], "wall_seconds": 0.0, "env_steps": {}, "student_steps": 0}
        )
        entry["seeds"] += cell.seeds
        entry["wall_seconds"] += record.get("wall_seconds", 0.0)
        kinds = env_steps_by_kind(read_metrics(cell), cell.seeds)
        for kind, value in kinds.items():
            entry["env_steps"][kind] = entry["env_steps"].get(kind, 0.0) + value * cell.num_seeds
        entry["student_steps"] += kinds.get("student", 0.0) * cell.num_seeds
    for entry in out.values():
        n = len(entry["seeds"])
        entry["env_steps"] = {k: v / n for k, v in entry["env_steps"].items()}  # per seed
        wall = entry["wall_seconds"]
        entry["steps_per_second"] = entry.pop("student_steps") / wall if wall else float("nan")
    return out


def set_stats(matrices: dict[str, np.ndarray], baseline: dict[str, np.ndarray] | None, seed: int):
    """Aggregates of one experiment on one set (see the module docstring)."""
    solve, ret = matrices["solve_rate"], matrices["mean_return"]
    per_seed_cvar = np.asarray([stats.cvar(row, CVAR_FRACTION) for row in solve])
    cvar_agg = stats.aggregate(per_seed_cvar, seed=seed)
    out = {
        "solve_rate": stats.aggregate(solve, seed=seed),
        "return": stats.aggregate(ret, seed=seed),
        "cvar_10": {"mean": cvar_agg["mean"], "mean_ci": cvar_agg["mean_ci"],
                    "seeds": per_seed_cvar.tolist()},
        "per_level_solve_rate": solve.mean(axis=0).tolist(),
    }  # fmt: skip
    if baseline is not None:
        out["improvement"] = stats.improvement(solve, baseline["solve_rate"], seed=seed)
    return out


def build_results(suite: Suite, cells: list[Cell], evals: dict[str, dict]) -> dict[str, Any]:
    """The whole report as one JSON-ready dict."""
    runs = run_stats(cells)
    sets = {}
    for s in suite.evaluation.sets:
        base = evals[suite.baseline][s.name]
        names = base["names"]
        sets[s.name] = {
            "kind": s.kind,
            "levels": names,
            "experiments": {
                label: set_stats(
                    by_set[s.name], None if label == suite.baseline else base, suite.evaluation.seed
                )
                for label, by_set in evals.items()
            },
        }
    return {
        "suite": suite.name,
        "baseline": suite.baseline,
        "env_steps_per_seed": suite.env_steps,
        "episodes": suite.evaluation.episodes,
        "confidence": stats.CONFIDENCE,
        "bootstrap_resamples": stats.RESAMPLES,
        "runs": runs,
        "sets": sets,
    }


def _ci(entry: dict, key: str, fmt: str = ".2f") -> str:
    low, high = entry[f"{key}_ci"]
    value = format(entry[key], fmt)
    if low != low:  # NaN: a single seed has no interval
        return value
    return f"{value} [{low:{fmt}}, {high:{fmt}}]"


def _steps(n: float) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"


def format_table(results: dict[str, Any]) -> str:
    """``table.md``: one table per level set, then the runs' costs."""
    lines = [f"# Suite {results['suite']}", ""]
    lines.append(
        f"{_steps(results['env_steps_per_seed'])} student env steps per seed; "
        f"{results['episodes']} episodes per level; 95% stratified-bootstrap intervals "
        f"({results['bootstrap_resamples']} resamples) in brackets; P(improve) is against "
        f"{results['baseline']}."
    )
    for name, res in results["sets"].items():
        lines += ["", f"## {name} ({res['kind']}, {len(res['levels'])} levels)", ""]
        lines.append(
            "| experiment | seeds | solve rate (mean) | solve rate (IQM) | return (mean) "
            "| return (IQM) | CVaR 10% solve | P(improve) |"
        )
        lines.append("|---|---|---|---|---|---|---|---|")
        for label, e in res["experiments"].items():
            poi = e.get("improvement")
            poi_text = "(baseline)"
            if poi is not None:
                low, high = poi["ci"]
                poi_text = f"{poi['value']:.2f}" + (
                    "" if low != low else f" [{low:.2f}, {high:.2f}]"
                )
            lines.append(
                f"| {label} | {e['solve_rate']['runs']} | {_ci(e['solve_rate'], 'mean')} "
                f"| {_ci(e['solve_rate'], 'iqm')} | {_ci(e['return'], 'mean', '.3f')} "
                f"| {_ci(e['return'], 'iqm', '.3f')} | {_ci(e['cvar_10'], 'mean')} | {poi_text} |"
            )
    lines += ["", "## Cost", "", "| experiment | seeds | wall time | env steps per seed (by kind) "
              "| student steps/s |", "|---|---|---|---|---|"]  # fmt: skip
    for label, run in results["runs"].items():
        kinds = ", ".join(f"{k} {_steps(v)}" for k, v in run["env_steps"].items())
        minutes = run["wall_seconds"] / 60
        lines.append(
            f"| {label} | {len(run['seeds'])} | {minutes:.1f} min | {kinds} "
            f"| {run['steps_per_second']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def write_report(results: dict[str, Any], out: Path) -> list[Path]:
    paths = [out / "results.json", out / "table.md"]
    paths[0].write_text(json.dumps(results, indent=1))
    paths[1].write_text(format_table(results))
    return paths
