"""Benchmark curricula against each other: experiments x seeds at one budget.

``run_suite`` trains every cell (one ordinary run folder per experiment and seed group,
seeds in one compiled program), skipping finished cells and resuming interrupted ones,
evaluates each final checkpoint on every level set as soon as the cell is trained, and
writes the cell's result into the results folder (``ued.suite.results``; a cell with a
committed result is done). When every cell has a result it writes ``results.json``,
``table.md`` and the figures there, from the committed results alone. See
``ued.suite.spec`` for the suite file, ``ued.suite.report`` for the statistics.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ued.suite import results as cell_results
from ued.suite.cells import Cell, make_cells
from ued.suite.spec import Suite, load

__all__ = ["Cell", "Suite", "load", "make_cells", "plan", "format_plan", "make_report", "run_suite"]


def default_results_dir(suite: Suite) -> Path:
    return Path("docs") / "results" / suite.name


def plan(
    suite: Suite,
    cells: list[Cell],
    sps: dict[str, dict[str, float]] | None = None,
    results_dir: str | Path | None = None,
):
    """One row per cell: status (``committed`` when its result is in ``results_dir``),
    updates, student env steps left and, with measured ``sps`` (label -> ``{"sps",
    "compile_seconds"}``, all seeds of a cell together), the estimated wall seconds of what
    is left (for a ``student_updates`` budget, the first round's: curricula that skip
    gradient steps run longer)."""
    rows = []
    results_dir = Path(results_dir) if results_dir is not None else default_results_dir(suite)
    for cell in cells:
        status = cell_results.status(suite, cell, results_dir)
        total = cell.total_updates
        finished = status in ("finished", "committed", "partial")
        done = total if finished else 0
        if status == "resumable":
            done = (cell.checkpoints() or [0])[-1]
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
    budget = suite.budget_kind.replace("_", " ")
    lines = [
        f"suite {suite.name}: {len(suite.experiments)} experiments x {suite.seeds} seeds, "
        f"{suite.budget_value:,} {budget} per seed, {len(rows)} cells",
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


def run_suite(
    suite: Suite,
    out: str | Path,
    plots: bool = True,
    verbose: bool = True,
    results_dir: str | Path | None = None,
    only: tuple[str, ...] = (),
):
    """Trains and evaluates what has no committed result, then reports if every cell has.

    ``out`` holds the run folders (caches), ``results_dir`` (default
    ``docs/results/<suite>``) the cells' results and the report. ``only`` restricts the
    cells run to those labels (another machine may take the others). Returns ``{"status",
    "cells", "results", "files"}``; ``status`` is ``interrupted`` when a cell was stopped by
    a signal (rerun to resume it), ``incomplete`` when cells outside ``only`` have no
    result yet, else ``finished``.
    """
    from ued.suite.cells import run_cell
    from ued.suite.evaluation import evaluate_checkpoint

    out = Path(out)
    results_dir = Path(results_dir) if results_dir is not None else default_results_dir(suite)
    cells = make_cells(suite, out)
    unknown = sorted(set(only) - {c.label for c in cells})
    if unknown:
        from ued.config.config import ConfigError

        raise ConfigError(f"--only {unknown}: not labels of the suite ({[c.label for c in cells]})")
    visited = []
    for cell in cells:
        if only and cell.label not in only:
            continue
        train_config = cell.train_config()
        previous = cell_results.load(results_dir, cell)
        missing = cell_results.missing_sets(suite, cell, previous, train_config)
        if not missing:
            visited.append({"cell": cell.name, "action": "committed", "status": "finished"})
            if verbose:
                print(f"[suite] {cell.name}: result committed before, skipped", flush=True)
            continue
        same_training = cell_results.trained_as(previous, train_config)
        if same_training and cell.status() == "finished" and cell.checkpoints():
            record = {**cell.record(), "action": "evaluated"}
        else:
            if same_training:
                missing, previous = list(suite.evaluation.sets), None  # no checkpoint: retrain
            record = run_cell(cell, verbose)
            if verbose and record["action"] == "skipped":
                print(f"[suite] {cell.name}: finished before, evaluating", flush=True)
        visited.append({"cell": cell.name, **record})
        if record["status"] != "finished":
            return {"status": "interrupted", "cells": visited, "results": None, "files": []}
        evaluated = evaluate_checkpoint(suite, cell, missing, verbose)
        cell_results.write(suite, cell, results_dir, train_config, evaluated, previous)
        if verbose:
            print(f"[suite] {cell.name}: wrote {cell_results.path(results_dir, cell)}", flush=True)
    committed = [cell_results.load(results_dir, c) for c in cells]
    complete = all(
        r is not None and not cell_results.missing_sets(suite, c, r, c.train_config())
        for c, r in zip(cells, committed, strict=True)
    )
    if not complete:
        return {"status": "incomplete", "cells": visited, "results": None, "files": []}
    return {"status": "finished", "cells": visited, **make_report(suite, cells, results_dir, plots)}


def make_report(suite: Suite, cells: list[Cell], results_dir: str | Path, plots: bool = True):
    """``{"results", "files"}``: ``results.json``, ``table.md`` and (with ``plots``) the
    figures in ``results_dir``, computed from the committed cell results alone."""
    from ued.suite.report import build_results, write_report

    results_dir = Path(results_dir)
    committed = [cell_results.load(results_dir, c) for c in cells]
    results = build_results(suite, committed)
    files = write_report(results, results_dir)
    if plots:
        from ued.suite.plots import write_plots

        files += write_plots(results, committed, results_dir / "plots")
    return {"results": results, "files": files}
