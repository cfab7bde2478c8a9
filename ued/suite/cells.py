"""Cells of a suite: one ordinary run folder per (experiment, seed group), run, skipped or
resumed through ``ued.train``.

A cell lives in ``OUT/<label>/seeds<first>-<last>/`` and is a plain run folder (config,
metrics, checkpoints, summary) plus ``cell.json``, the suite's record of it: its status and
the wall seconds of every training attempt. A cell is finished when ``cell.json`` says so
for the same number of updates; one with checkpoints is resumed (``run.resume=true``); any
other starts afresh. A SIGINT/SIGTERM during a cell lets ``ued.train`` checkpoint it, and
the suite stops there.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from ued import config as config_lib
from ued.config import Config, ConfigError
from ued.suite.spec import ExperimentSpec, Suite

CELL_FILE = "cell.json"


@dataclasses.dataclass(frozen=True)
class Cell:
    label: str
    first_seed: int
    num_seeds: int
    directory: Path
    config_path: Path
    overrides: tuple  # the experiment's overrides with the suite's run.* keys last

    @property
    def name(self) -> str:
        return f"{self.label}/{self.directory.name}"

    @property
    def seeds(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.num_seeds))

    def config(self, resume: bool = False) -> Config:
        extra = (f"run.resume={str(resume).lower()}",) if resume else ()
        try:
            return config_lib.load(self.config_path, (*self.overrides, *extra))
        except ConfigError as err:
            raise ConfigError(f"experiment {self.label}: {err}") from None

    def record(self) -> dict[str, Any]:
        path = self.directory / CELL_FILE
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):  # none yet, or unreadable: the checkpoints decide
            return {}

    def checkpoints(self) -> list[int]:
        folder = self.directory / "checkpoints"
        if not folder.is_dir():
            return []
        return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())

    def status(self) -> str:
        """``finished``, ``resumable`` (has a checkpoint) or ``new``."""
        record = self.record()
        if record.get("status") == "finished" and record.get("updates") == self.total_updates:
            return "finished"
        return "resumable" if self.checkpoints() else "new"

    @property
    def total_updates(self) -> int:
        return self.config().total_updates


def make_cells(suite: Suite, out: str | Path) -> list[Cell]:
    """Every (experiment, seed group) of the suite, configs validated; every experiment must
    share the env (family and options) so that the evaluation sets are the same levels."""
    out = Path(out)
    cells, envs = [], {}
    for exp in suite.experiments:
        for first, count in suite.seed_groups():
            directory = out / exp.label / f"seeds{first}-{first + count - 1}"
            cell = Cell(
                exp.label, first, count, directory, suite.resolve(exp.config),
                _overrides(suite, exp, first, count, directory),
            )  # fmt: skip
            if not cell.config_path.exists():
                raise ConfigError(f"experiment {exp.label}: no file {cell.config_path}")
            cfg = cell.config()
            envs[exp.label] = (cfg.env.family, cfg.env.options)
            cells.append(cell)
    if len(set(map(repr, envs.values()))) > 1:
        raise ConfigError(
            f"experiments must share env.family and env.options to be compared: {envs}"
        )
    return cells


def _overrides(suite: Suite, exp: ExperimentSpec, first: int, count: int, directory: Path):
    # Every cell draws its shared decisions (ued.schedule) from the suite's first seed, so a
    # seed's result does not depend on how the seeds are grouped into cells
    # (seeds_per_run) or on how a cell runs them (run.seed_mode).
    return (
        *suite.overrides,
        *exp.overrides,
        f"run.seed={first}",
        f"run.schedule_seed={suite.first_seed}",
        f"run.num_seeds={count}",
        f"run.total_env_steps={suite.env_steps}",
        f"run.dir={directory}",
    )


def run_cell(cell: Cell, verbose: bool = True) -> dict[str, Any]:
    """Trains (or resumes) one cell to its budget; returns its updated ``cell.json``."""
    from ued.train import train  # JAX starts here, not when a suite is only listed

    status = cell.status()
    record = cell.record()
    if status == "finished":
        return {**record, "action": "skipped"}
    resume = status == "resumable"
    cfg = cell.config(resume=resume)
    cell.directory.mkdir(parents=True, exist_ok=True)
    if verbose:
        how = f"resuming from {cell.checkpoints()[-1]} updates" if resume else "starting"
        print(f"[suite] {cell.name}: {how} ({cfg.total_updates} updates)", flush=True)
    # run.seed_mode (default auto) chooses how the cell's seeds share the machine: the
    # faster way on this backend (ued.parallel.resolve_seed_mode); train prints which.
    t0 = time.perf_counter()
    result = train(cfg, verbose=verbose)
    seconds = time.perf_counter() - t0
    attempts = [*record.get("attempts", []), {"seconds": seconds, "from": result["resumed_from"]}]
    if not resume:
        attempts = attempts[-1:]  # a fresh start discards what an earlier attempt left
    final = result["final"]
    record = {
        "status": result["status"],
        "label": cell.label,
        "seeds": cell.seeds,
        "updates": final.get("updates", result["resumed_from"]),
        "env_steps_per_seed": final.get("env_steps"),
        "wall_seconds": sum(a["seconds"] for a in attempts),
        "compile_seconds": result.get("compile_seconds"),
        # How the cell's seeds ran (run.seed_mode, resolved: vmap or sequential), or None.
        "seed_mode": result.get("seed_mode"),
        "attempts": attempts,
    }
    write_atomic(cell.directory / CELL_FILE, json.dumps(record, indent=1))
    return {**record, "action": "resumed" if resume else "trained"}


def run_cells(cells: list[Cell], verbose: bool = True) -> tuple[str, list[dict]]:
    """Runs the cells in order until one is interrupted; returns the suite's status
    (``finished`` or ``interrupted``) and each visited cell's record with its ``action``."""
    done = []
    for cell in cells:
        record = run_cell(cell, verbose)
        done.append({"cell": cell.name, **record})
        if verbose and record["action"] == "skipped":
            print(f"[suite] {cell.name}: finished before, skipped", flush=True)
        if record["status"] != "finished":
            return "interrupted", done
    return "finished", done


def env_steps_by_kind(rows: list[dict], seeds: list[int]) -> dict[str, float]:
    """Env steps of each kind per seed (mean over seeds), from the running totals that every
    chunk row carries (``env_steps/student``, PAIRED's ``env_steps/antagonist`` and
    ``env_steps/builder``, SFL's ``env_steps/curriculum_eval``, and ``env_steps/all``)."""
    per_seed = []
    for seed in seeds:
        mine = [r for r in rows if r.get("seed", seed) == seed and "sps" in r]
        last = max(mine, key=lambda r: r["updates"]) if mine else {}
        per_seed.append(
            {k.split("/", 1)[1]: float(v) for k, v in last.items() if k.startswith("env_steps/")}
        )
    keys = sorted({k for t in per_seed for k in t})
    return {k: sum(t.get(k, 0.0) for t in per_seed) / max(1, len(per_seed)) for k in keys}


def write_atomic(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file, so a signal never leaves half."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_metrics(cell: Cell) -> list[dict]:
    path = cell.directory / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
