"""Each cell's evaluated result, the suite's durable artefact: ``RESULTS/cells/<label>/
seeds<a>-<b>.json`` (``RESULTS`` is ``docs/results/<suite>`` by default).

A cell result holds everything the report needs, so that a suite can be finished on another
machine and recomputed from the repository alone: the cell's ``train_config`` (its resolved
training config, seeds and budget, flat; ``Cell.train_config``) and its digest
``train_key``, its record (wall seconds and machine
of every training attempt, updates, env steps by kind and student gradient updates per
seed), its training curves, and per set the per-seed, per-level solve rates, returns,
lengths and the second play's solve rates, with that set's ``eval_key``.

A cell whose committed result was trained as the cell is (``cells.same_training``: options
added to ued since, at their defaults, do not count) and has every set's ``eval_key`` is
done: the suite neither trains nor evaluates it. With the same training but a new or
changed set, only that set is evaluated, from the run folder's checkpoint when it is there (else the
cell is trained again). Commit the files as they appear; run folders are caches.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

from ued.suite.cells import Cell, config_digest, env_steps_per_seed, read_metrics, same_training
from ued.suite.evaluation import curves, eval_key, write_json
from ued.suite.spec import Suite


def path(results_dir: Path, cell: Cell) -> Path:
    return Path(results_dir) / "cells" / cell.label / f"{cell.directory.name}.json"


def load(results_dir: Path, cell: Cell) -> dict[str, Any] | None:
    try:
        return json.loads(path(results_dir, cell).read_text())
    except (OSError, ValueError):
        return None


def trained_as(result: dict[str, Any] | None, train_config: dict[str, Any]) -> bool:
    """Whether a committed ``result`` was trained with ``train_config`` (see the module
    docstring)."""
    if not result:
        return False
    if "train_config" not in result:
        return result.get("train_key") == config_digest(train_config)
    return same_training(result["train_config"], train_config)


def missing_sets(
    suite: Suite, cell: Cell, result: dict[str, Any] | None, train_config: dict[str, Any]
):
    """The suite's sets this committed ``result`` lacks (all of them when it was trained
    otherwise, or is absent)."""
    if not trained_as(result, train_config):
        return list(suite.evaluation.sets)
    have = result.get("sets", {})
    return [
        s
        for s in suite.evaluation.sets
        if have.get(s.name, {}).get("eval_key") != eval_key(suite, s)
    ]


def status(suite: Suite, cell: Cell, results_dir: Path) -> str:
    """``committed`` (a result for every set), ``partial`` (a result, some sets missing),
    or the run folder's status (``finished``, ``resumable``, ``new``)."""
    result, train_config = load(results_dir, cell), cell.train_config()
    if trained_as(result, train_config):
        return "partial" if missing_sets(suite, cell, result, train_config) else "committed"
    return cell.status()


def write(
    suite: Suite,
    cell: Cell,
    results_dir: Path,
    train_config: dict[str, Any],
    evaluated: dict[str, Any],
    previous: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Writes the cell's result: its record and curves from the run folder, the sets just
    ``evaluated`` and those of ``previous`` (a result of the same training) still wanted."""
    record = cell.record()
    keep = {}
    if trained_as(previous, train_config):
        wanted = {s.name for s in suite.evaluation.sets}
        keep = {k: v for k, v in previous.get("sets", {}).items() if k in wanted}
    rows = read_metrics(cell)
    result = {
        "suite": suite.name,
        "label": cell.label,
        "seeds": cell.seeds,
        "train_key": config_digest(train_config),
        "train_config": train_config,
        "config": _relative(cell.config_path),
        "overrides": [o for o in cell.overrides if not o.startswith("run.dir=")],
        "budget": cell.budget,
        "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "record": {
            k: record.get(k)
            for k in (
                "updates",
                "env_steps_per_seed",
                "target_env_steps",
                "student_updates",
                "wall_seconds",
                "compile_seconds",
                "attempts",
            )  # fmt: skip
        },
        "env_steps": env_steps_per_seed(rows, cell.seeds)
        if rows
        else (previous or {}).get("env_steps", []),
        "curves": curves(cell) if rows else (previous or {}).get("curves", {}),
        "sets": {**keep, **evaluated},
    }
    if not rows and previous:  # evaluated again from a checkpoint without its metrics
        result["record"] = previous.get("record", result["record"])
    write_json(path(results_dir, cell), result)
    return result


def _relative(p: Path) -> str:
    """``p`` relative to the working folder (the repository's root, when run from there)."""
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)
