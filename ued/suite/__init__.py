"""Benchmark curricula against each other: experiments x seeds at one env-step budget.

``run_suite`` trains every cell (one ordinary run folder per experiment and seed group,
seeds in one compiled program), skipping finished cells and resuming interrupted ones,
evaluates every final checkpoint on every level set, and writes ``results.json``,
``table.md`` and the figures into the suite's output folder. See ``ued.suite.spec`` for the
suite file, ``ued.suite.report`` for the statistics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ued.suite.cells import Cell, make_cells, run_cells
from ued.suite.spec import Suite, load

__all__ = ["Cell", "Suite", "load", "make_cells", "plan", "format_plan", "run_suite"]


def plan(suite: Suite, cells: list[Cell], sps: dict[str, dict[str, float]] | None = None):
    """One row per cell: status, updates, student env steps left and, with measured
    ``sps`` (label -> ``{"sps", "compile_seconds"}``, all seeds of a cell together), the
    estimated wall seconds of what is left."""
    rows = []
    for cell in cells:
        status = cell.status()
        total = cell.total_updates
        done = {"finished": total, "resumable": (cell.checkpoints() or [0])[-1]}.get(status, 0)
        spu = cell.config().steps_per_update
        left = (total - done) * spu * cell.num_seeds
        row: dict[str, Any] = {"cell": cell.name, "status": status, "seeds": cell.seeds,
                               "updates": total, "done": done, "env_steps_left": left}  # fmt: skip
        measured = (sps or {}).get(cell.label)
        if measured:
            row["sps"] = measured["sps"]
            compile_seconds = measured.get("compile_seconds", 0.0) if left else 0.0
            row["seconds"] = left / measured["sps"] + compile_seconds
        rows.append(row)
    return rows


def format_plan(suite: Suite, rows: list[dict]) -> str:
    lines = [
        f"suite {suite.name}: {len(suite.experiments)} experiments x {suite.seeds} seeds, "
        f"{suite.env_steps:,} student env steps per seed, {len(rows)} cells",
        f"{'cell':<28} {'status':<10} {'updates':>12} {'env steps left':>15} {'steps/s':>9} "
        f"{'estimate':>9}",
    ]
    for r in rows:
        sps = f"{r['sps']:.0f}" if "sps" in r else "-"
        est = _duration(r["seconds"]) if "seconds" in r else "-"
        lines.append(
            f"{r['cell']:<28} {r['status']:<10} {r['done']:>5}/{r['updates']:<6} "
            f"{r['env_steps_left']:>15,} {sps:>9} {est:>9}"
        )
    if all("seconds" in r for r in rows):
        total = sum(r["seconds"] for r in rows)
        lines.append(f"estimated training wall time: {_duration(total)} (evaluation not included)")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    minutes = int(round(seconds / 60))
    return f"{minutes // 60}h{minutes % 60:02d}m"


def run_suite(suite: Suite, out: str | Path, plots: bool = True, verbose: bool = True):
    """Trains what is left, then evaluates and reports if every cell finished.

    Returns ``{"status", "cells", "results", "files"}``; ``status`` is ``interrupted`` when
    a cell was stopped by a signal (rerun to resume it; nothing is evaluated then).
    """
    from ued.suite.evaluation import evaluate_cells
    from ued.suite.report import build_results, write_report

    out = Path(out)
    cells = make_cells(suite, out)
    status, visited = run_cells(cells, verbose)
    if status != "finished":
        return {"status": status, "cells": visited, "results": None, "files": []}
    evals = evaluate_cells(suite, cells, verbose)
    results = build_results(suite, cells, evals)
    files = write_report(results, out)
    if plots:
        from ued.suite.plots import write_plots

        files += write_plots(cells, results, evals, out / "plots")
    return {"status": status, "cells": visited, "results": results, "files": files}
