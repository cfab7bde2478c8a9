"""``results.json`` and ``table.md`` of a suite, from the committed cell results alone.

Per experiment and level set, over the (seeds, levels) matrix of per-level values, with the
seed as the unit (``ued.evaluation.stats``; two-level bootstrap for a set whose levels are a
sample):
- solve rate and return: mean and IQM with 95% intervals;
- ``cvar_10``: per seed, the mean solve rate of its worst 10% of levels (at least one),
  ranked on one play and measured on an independent second play (SFL's estimator; biased
  high by about 0.05 for the true worst decile at 10 episodes and solve rates near 0.9, as
  the same-play one is biased low by as much: ``ued.evaluation.stats.cvar_independent``), then
  the mean over seeds with its interval over seeds. Without a second play (``independent_play:
  false``) the same-play estimator is used and marked so;
- against the baseline: ``difference`` of mean solve rates with a Welch interval over seeds
  (it *separates* when it excludes 0), and ``improvement``, the probability that a seed's
  mean solve rate on the set beats a baseline seed's (over all seed pairs), with the exact
  Mann-Whitney p-value.
Every figure carries its number of seeds. Sets are reported in two groups, in-distribution
first; each out-of-distribution set says how many of its levels each experiment's training
could produce at all (``ued.suite.support``).
Per experiment: wall seconds of training (all attempts) and the machines, env steps by kind
and student gradient updates per seed, and student env steps per wall second.
``results.json`` also holds the raw per-seed, per-level solve rates, returns and lengths of
every set (``raw``), from which all of the above can be recomputed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ued.evaluation import stats
from ued.evaluation.evaluate import INDEPENDENT, METRICS
from ued.files.safe_io import write_atomic
from ued.suite.evaluation import dumps, merged
from ued.suite.spec import GROUPS, Suite

CVAR_FRACTION = 0.10
GROUP_TITLES = {"in_distribution": "In distribution", "out_of_distribution": "Out of distribution"}


def _by_label(suite: Suite, committed: list[dict[str, Any]]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {e.label: [] for e in suite.experiments}
    for result in committed:
        out[result["label"]].append(result)
    for label, results in out.items():
        results.sort(key=lambda r: r["seeds"][0])
        if not results:
            raise ValueError(f"no committed result for experiment {label}")
    return out


def run_stats(by_label: dict[str, list[dict]]) -> dict[str, dict[str, Any]]:
    """Per label: seeds, wall seconds, machines, env steps by kind (mean per seed and per
    seed), student gradient updates per seed, student env steps per wall second."""
    out = {}
    for label, results in by_label.items():
        seeds, per_seed, updates, wall, machines, dates = [], [], [], 0.0, [], []
        for r in results:
            seeds += r["seeds"]
            per_seed += r.get("env_steps") or [{} for _ in r["seeds"]]
            record = r.get("record") or {}
            updates += record.get("student_updates") or [None] * len(r["seeds"])
            wall += record.get("wall_seconds") or 0.0
            for attempt in record.get("attempts") or []:
                if attempt.get("machine") and attempt["machine"] not in machines:
                    machines.append(attempt["machine"])
                if attempt.get("date"):
                    dates.append(attempt["date"])
        kinds = sorted({k for t in per_seed for k in t})
        mean_steps = {k: float(np.mean([t.get(k, 0.0) for t in per_seed])) for k in kinds}
        student = sum(t.get("student", 0.0) for t in per_seed)
        out[label] = {
            "seeds": seeds,
            "training_levels": training_levels(results),
            "wall_seconds": wall,
            "env_steps": mean_steps,
            "env_steps_per_seed": per_seed,
            "student_updates": updates,
            "steps_per_second": student / wall if wall else float("nan"),
            "machines": machines,
            "dates": sorted(set(dates)),
        }
    return out


TRAINING_LEVEL_METRICS = ("levels/num_walls", "levels/shortest_path", "levels/solvable")
PHASE = 0.2  # the first and last fifth of training


def training_levels(results: list[dict]) -> dict[str, dict[str, list[float]]]:
    """Per ``levels/*`` metric of the levels trained on: each seed's mean over the first and
    over the last fifth of its training curve (the points of the committed curves): whether
    a curriculum's levels grew harder is a measured diagnosis, not a guess."""
    out: dict[str, dict[str, list[float]]] = {}
    for metric in TRAINING_LEVEL_METRICS:
        first, last = [], []
        for r in results:
            for curve in (r.get("curves") or {}).values():
                if metric not in curve or not curve[metric][1]:
                    continue
                xs, ys = np.asarray(curve[metric][0], float), np.asarray(curve[metric][1], float)
                span = xs[-1] - xs[0]
                first.append(float(ys[xs <= xs[0] + PHASE * span].mean()))
                last.append(float(ys[xs >= xs[-1] - PHASE * span].mean()))
        if first:
            out[metric] = {"first": first, "last": last}
    return out


def set_stats(data: dict, baseline: dict | None, sampled: bool, seed: int, resamples: int):
    """Aggregates of one experiment on one set (see the module docstring)."""
    solve, ret = data["solve_rate"], data["mean_return"]
    out: dict[str, Any] = {
        "seeds": len(data["seeds"]),
        "solve_rate": stats.aggregate(solve, seed, resamples, levels=sampled, bounds=(0, 1)),
        "return": stats.aggregate(ret, seed, resamples, levels=sampled),
        "per_level_solve_rate": [round(float(v), 4) for v in solve.mean(axis=0)],
    }
    if INDEPENDENT in data:
        cvar = stats.cvar_aggregate(solve, data[INDEPENDENT], CVAR_FRACTION, seed, resamples,
                                    levels=sampled)  # fmt: skip
        cvar["estimator"] = "independent play"
    else:
        per_seed = np.asarray([stats.cvar(row, CVAR_FRACTION) for row in solve])
        agg = stats.aggregate(per_seed[:, None], seed, resamples, bounds=(0, 1))
        cvar = {"mean": agg["mean"], "mean_ci": agg["mean_ci"], "seeds": per_seed.tolist(),
                "runs": len(per_seed), "estimator": "same play (biased low)"}  # fmt: skip
    out["cvar_10"] = cvar
    if baseline is not None:
        base = baseline["solve_rate"]
        out["difference"] = stats.difference(solve, base, sampled, resamples=resamples, seed=seed)
        out["improvement"] = stats.probability_of_improvement_seeds(
            solve.mean(axis=1), base.mean(axis=1)
        )
    return out


def _producible(entries: list[dict | None]) -> dict | None:
    entries = [e for e in entries if e is not None]
    return entries[0] if entries else None


def build_results(
    suite: Suite, committed: list[dict[str, Any]], resamples: int = stats.RESAMPLES
) -> dict[str, Any]:
    """The whole report as one JSON-ready dict, from the cells' committed results."""
    by_label = _by_label(suite, committed)
    runs = run_stats(by_label)
    sets = {}
    for spec in suite.evaluation.sets:
        data = {label: merged(results, label, spec.name) for label, results in by_label.items()}
        base = data[suite.baseline]
        sampled = spec.levels_sampled
        sets[spec.name] = {
            "kind": spec.kind,
            "group": spec.group,
            "env": dict(spec.env),
            "max_steps": base.get("max_steps"),
            "sampled": sampled,
            "note": spec.note,
            "levels": base["names"],
            "producible": {label: _producible(d["producible"]) for label, d in data.items()},
            "experiments": {
                label: set_stats(
                    d,
                    None if label == suite.baseline else base,
                    sampled,
                    suite.evaluation.seed,
                    resamples,
                )  # fmt: skip
                for label, d in data.items()
            },
            "raw": {
                label: {
                    "seeds": d["seeds"],
                    **{m: np.round(d[m], 4).tolist() for m in (*METRICS, INDEPENDENT) if m in d},
                }
                for label, d in data.items()
            },
        }
    machines = []
    for run in runs.values():
        machines += [m for m in run["machines"] if m not in machines]
    dates = sorted({d for run in runs.values() for d in run["dates"]})
    return {
        "suite": suite.name,
        "baseline": suite.baseline,
        "budget": {suite.budget_kind: suite.budget_value},
        "env_steps_per_seed": suite.env_steps or None,
        "seeds": suite.seeds,
        "episodes": suite.evaluation.episodes,
        "independent_play": suite.evaluation.independent_play,
        "confidence": stats.CONFIDENCE,
        "bootstrap_resamples": resamples,
        "machines": machines,
        "dates": [dates[0], dates[-1]] if dates else [],
        "training_wall_seconds": sum(r["wall_seconds"] for r in runs.values()),
        "groups": {g: [s.name for s in suite.evaluation.sets if s.group == g] for g in GROUPS},
        "runs": runs,
        "sets": sets,
    }


# --- text --------------------------------------------------------------------------------------


def ci_text(entry: dict, key: str = "mean", fmt: str = ".2f") -> str:
    low, high = entry[f"{key}_ci"]
    value = format(entry[key], fmt)
    if low != low:  # NaN: a single seed has no interval
        return value
    return f"{value} [{low:{fmt}}, {high:{fmt}}]"


def difference_text(entry: dict) -> str:
    d = entry.get("difference")
    if d is None:
        return "(baseline)"
    low, high = d["ci"]
    sign = "+" if d["value"] >= 0 else ""
    if low != low:
        return f"{sign}{d['value']:.2f}"
    mark = " *" if low > 0 or high < 0 else ""
    return f"{sign}{d['value']:.2f} [{low:+.2f}, {high:+.2f}]{mark}"


def poi_text(entry: dict) -> str:
    poi = entry.get("improvement")
    if poi is None:
        return "(baseline)"
    p = poi["p_value"]
    return f"{poi['value']:.2f} (p={p:.2f})" if p == p else f"{poi['value']:.2f}"


def steps_text(n: float) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"


def budget_text(results: dict) -> str:
    kind, value = next(iter(results["budget"].items()))
    if kind == "env_steps":
        return f"{steps_text(value)} student env steps per seed"
    return f"{value:,} student gradient updates per seed"


def machine_text(machine: dict) -> str:
    return (
        f"{machine.get('devices', '')} ({machine.get('processor', '')}, "
        f"{machine.get('cpu_count', '?')} cores), JAX {machine.get('jax', '?')}"
    )


def machines_text(machines: list[dict]) -> str:
    """The machines a suite's cells trained on, each kind once, with how many of that kind
    where the cells ran on several (float rounding differs between them, so a seed's
    training is reproducible bit for bit only on its own machine)."""
    counts: dict[str, int] = {}
    for m in machines:
        text = machine_text(m)
        counts[text] = counts.get(text, 0) + 1
    parts = [t if n == 1 else f"{t} ({n} machines of this kind)" for t, n in counts.items()]
    return "; ".join(parts) or "unknown"


def set_heading(name: str, res: dict) -> str:
    env = ", ".join(f"{k} {v}" for k, v in res["env"].items())
    extra = f"; env {env}" if env else ""
    sample = "a sample of levels" if res["sampled"] else "fixed levels"
    return (
        f"### {name} ({res['kind']}, {len(res['levels'])} levels, horizon "
        f"{res['max_steps']}{extra}; {sample})"
    )


def producible_text(res: dict) -> str:
    parts = []
    for label, p in res["producible"].items():
        if p is None or p.get("levels") is None:
            parts.append(f"{label} ?")
        else:
            parts.append(f"{label} {p['levels']}/{p['of']} ({p['how']})")
    return "Levels each curriculum's training can produce at all: " + "; ".join(parts) + "."


def format_table(results: dict[str, Any]) -> str:
    """``table.md``: the sets in two groups (in-distribution first), then the costs."""
    lines = [f"# Suite {results['suite']}", ""]
    machines = machines_text(results["machines"])
    dates = " to ".join(dict.fromkeys(results["dates"])) or "unknown"
    lines.append(
        f"{budget_text(results)}, {results['seeds']} seeds per experiment; "
        f"{results['episodes']} episodes per level"
        f"{' (and a second, independent play for the CVaR)' if results['independent_play'] else ''}"
        f". Machine: {machines}. Trained {dates}, "
        f"{results['training_wall_seconds'] / 60:.1f} min of training in all."
    )
    lines += [
        "",
        "n: seeds. Means over (seed, level) with 95% intervals over seeds (Student t on the "
        "seed bootstrap's standard error; for a sample of levels the bootstrap resamples "
        "seeds, then levels). CVaR 10%: each seed's worst tenth of levels ranked on one play "
        f"and measured on another, mean over seeds. Difference: mean solve rate minus "
        f"{results['baseline']}'s, Welch interval over seeds (* when it excludes 0). "
        "P(improve): over all seed pairs, a seed's mean solve rate on the set above a "
        f"{results['baseline']} seed's (exact Mann-Whitney p).",
    ]
    for group in GROUPS:
        names = results["groups"].get(group, [])
        if not names:
            continue
        lines += ["", f"## {GROUP_TITLES[group]}"]
        for name in names:
            res = results["sets"][name]
            lines += ["", set_heading(name, res), ""]
            if res.get("note"):
                lines += [res["note"], ""]
            if group == "out_of_distribution":
                lines += [producible_text(res), ""]
            lines.append(
                "| experiment | n | solve rate | IQM | return | CVaR 10% | difference "
                "| P(improve) |"
            )
            lines.append("|---|---|---|---|---|---|---|---|")
            for label, e in res["experiments"].items():
                lines.append(
                    f"| {label} | {e['seeds']} | {ci_text(e['solve_rate'])} "
                    f"| {ci_text(e['solve_rate'], 'iqm')} | {ci_text(e['return'], 'mean', '.3f')} "
                    f"| {ci_text(e['cvar_10'])} | {difference_text(e)} | {poi_text(e)} |"
                )
    lines += [
        "",
        "## Cost",
        "",
        "| experiment | n | wall time | env steps per seed (by kind) | student gradient updates "
        "per seed | student steps/s |",
        "|---|---|---|---|---|---|",
    ]
    for label, run in results["runs"].items():
        kinds = ", ".join(f"{k} {steps_text(v)}" for k, v in run["env_steps"].items())
        grads = [u for u in run["student_updates"] if u is not None]
        grad_text = f"{np.mean(grads):,.0f} ({min(grads):,}-{max(grads):,})" if grads else "unknown"
        lines.append(
            f"| {label} | {len(run['seeds'])} | {run['wall_seconds'] / 60:.1f} min | {kinds} "
            f"| {grad_text} | {run['steps_per_second']:.0f} |"
        )
    lines += training_levels_table(results)
    return "\n".join(lines) + "\n"


def training_levels_table(results: dict[str, Any]) -> list[str]:
    """``## Levels trained on``: per experiment, the first and last fifth of training's
    level walls, shortest path and solvable fraction, means over seeds (min-max)."""
    rows = {label: run.get("training_levels") or {} for label, run in results["runs"].items()}
    metrics = [m for m in TRAINING_LEVEL_METRICS if any(m in r for r in rows.values())]
    if not metrics:
        return []
    names = [m.split("/", 1)[1] for m in metrics]
    lines = [
        "",
        "## Levels trained on",
        "",
        "Means of the training batch's levels over the first and the last fifth of training "
        "(mean over seeds, min-max).",
        "",
        "| experiment | n | " + " | ".join(f"{n}: first -> last" for n in names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for label, levels in rows.items():
        cells = []
        for metric in metrics:
            if metric not in levels:
                cells.append("-")
                continue
            first, last = levels[metric]["first"], levels[metric]["last"]
            cells.append(f"{np.mean(first):.2f} -> {np.mean(last):.2f} "
                         f"({min(last):.2f}-{max(last):.2f})")  # fmt: skip
        n = len(next(iter(levels.values()))["first"]) if levels else 0
        lines.append(f"| {label} | {n} | " + " | ".join(cells) + " |")
    return lines


def readme_table(results: dict[str, Any], sets: list[str] | None = None) -> str:
    """A compact table for the README: one row per experiment, per set its mean solve rate
    with the interval and the difference to the baseline (in-distribution sets first)."""
    order = [n for g in GROUPS for n in results["groups"].get(g, [])]
    names = [n for n in order if sets is None or n in sets]
    head = ["curriculum", "n"]
    for name in names:
        tag = "ID" if results["sets"][name]["group"] == "in_distribution" else "OOD"
        head += [f"{name} ({tag}): solve rate", "vs " + results["baseline"]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label in results["runs"]:
        n = results["sets"][names[0]]["experiments"][label]["seeds"] if names else 0
        row = [label, str(n)]
        for name in names:
            e = results["sets"][name]["experiments"][label]
            row += [ci_text(e["solve_rate"]), difference_text(e)]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_report(results: dict[str, Any], out: Path) -> list[Path]:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.json", out / "table.md"]
    write_atomic(paths[0], dumps(results), "suite report")
    write_atomic(paths[1], format_table(results), "suite report")
    return paths
