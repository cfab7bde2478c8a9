"""Cells of a suite: one ordinary run folder per (experiment, seed group), run, skipped or
resumed through ``ued.host.train``.

A cell lives in ``OUT/<label>/seeds<first>-<last>/`` and is a plain run folder (config,
metrics, checkpoints, summary) plus ``cell.json``, the suite's record of it: its status, its
budget, the wall seconds of every training attempt and the machine of each, and the student's
gradient updates per seed. A cell is finished when ``cell.json`` says so for the same budget;
one with checkpoints is resumed (``run.resume=true``); any other starts afresh. A
SIGINT/SIGTERM during a cell lets ``ued.host.train`` checkpoint it, and the suite stops there.

Run folders are caches: the artefact is each cell's evaluated result, which the suite writes
to ``RESULTS/cells/<label>/seeds<first>-<last>.json`` (``ued.suite.results``) as soon as the
cell is trained and evaluated; a cell whose committed result matches its training config
(``Cell.train_config``, ``same_training``) is done and is neither trained nor evaluated
again.

Budgets: ``env_steps`` per seed (``run.total_env_steps``), or ``student_updates`` per seed,
the student's gradient updates (dcd budgets ACCEL so; curricula that skip the gradient on
some updates, Robust PLR's new levels and ACCEL's edits, then run more env steps). A
``student_updates`` cell trains to ``N`` updates' worth of env steps, counts the gradient
updates its seeds took (the optimiser's step count), and resumes with the env-step budget
extended by the missing updates at the observed rate, until every seed has taken at least
``N`` (seeds trained in one program stop together, so some take a few more).
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import math
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ued.config import config as config_lib
from ued.config.config import Config, ConfigError
from ued.config.options import to_dict
from ued.files import safe_io
from ued.suite.spec import ExperimentSpec, Suite

CELL_FILE = "cell.json"
MAX_BUDGET_ROUNDS = 8  # training rounds a student_updates cell may take to reach its budget
# run.* keys that do not change what is trained (where it is written, how often, how shown).
UNTRAINED_RUN_KEYS = ("dir", "resume", "overwrite", "progress", "checkpoint_every",
                      "keep_checkpoints", "chunk_updates", "devices", "compile_cache",
                      "loggers", "total_env_steps", "seed_mode")  # fmt: skip


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict) or not data:
        return {prefix: data} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in data.items():
        out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def config_digest(train_config: dict[str, Any]) -> str:
    text = json.dumps(train_config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def same_training(committed: dict[str, Any], current: dict[str, Any]) -> bool:
    """Whether a committed ``train_config`` trains what ``current`` does. Keys in both must
    agree; a key only in ``current`` (an option added to ued since) must hold its default,
    so that a new option leaves committed results valid; a key only in ``committed`` (an
    option since removed) is ignored. Code changes are not tracked: a result is what the
    code of its commit trained."""
    defaults = _flatten(json.loads(json.dumps(to_dict(Config()), default=str)))
    for key in committed.keys() | current.keys():
        if key in committed and key in current:
            if committed[key] != current[key]:
                return False
        elif key in current and current[key] != defaults.get(key, _NO_DEFAULT):
            return False
    return True


_NO_DEFAULT = object()


def _load(path: Path, overrides: Sequence[str]) -> Config:
    # Here, not at the top: a suite that is only listed imports no curricula (nor JAX).
    from ued.curricula import options_of

    return config_lib.load(path, overrides, options_of)


@dataclasses.dataclass(frozen=True)
class Cell:
    label: str
    first_seed: int
    num_seeds: int
    directory: Path
    config_path: Path
    overrides: tuple  # the experiment's overrides with the suite's run.* keys last
    budget_kind: str = "env_steps"  # or "student_updates"
    budget_value: int = 0

    @property
    def name(self) -> str:
        return f"{self.label}/{self.directory.name}"

    @property
    def seeds(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.num_seeds))

    @property
    def budget(self) -> dict[str, int]:
        return {self.budget_kind: self.budget_value}

    def config(self, resume: bool = False, env_steps: int | None = None) -> Config:
        """The cell's config; ``env_steps`` (per seed) replaces the budget's env steps."""
        steps = env_steps or self.initial_env_steps()
        extra = (f"run.total_env_steps={steps}",)
        extra += (f"run.resume={str(resume).lower()}",) if resume else ()
        try:
            return _load(self.config_path, (*self.overrides, *extra))
        except ConfigError as err:
            raise ConfigError(f"experiment {self.label}: {err}") from None

    def initial_env_steps(self) -> int:
        """The env steps a fresh training round runs: the budget's, or for a
        ``student_updates`` budget that many updates' worth (every update a gradient one)."""
        if self.budget_kind == "env_steps":
            return self.budget_value
        try:
            cfg = _load(self.config_path, self.overrides)
        except ConfigError as err:
            raise ConfigError(f"experiment {self.label}: {err}") from None
        return self.budget_value * cfg.steps_per_update

    def train_config(self) -> dict[str, Any]:
        """What this cell trains, as flat ``{dotted key: value}``: the resolved config (less
        where and how it is written, and the evaluation done while training), its seeds and
        its budget. A committed result trained otherwise is stale (``same_training``)."""
        data = to_dict(self.config())
        data["run"] = {k: v for k, v in data["run"].items() if k not in UNTRAINED_RUN_KEYS}
        data.pop("eval", None)
        flat = _flatten(data)
        flat["suite.seeds"] = self.seeds
        flat["suite.budget"] = self.budget
        return json.loads(json.dumps(flat, default=str))  # as a committed file reads back

    def train_key(self) -> str:
        """A short digest of ``train_config``, for display."""
        return config_digest(self.train_config())

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
        if record.get("status") == "finished" and record.get("budget") == self.budget:
            if self.budget_kind == "env_steps" and record.get("updates") == self.total_updates:
                return "finished"
            done = record.get("student_updates") or [0]
            if self.budget_kind == "student_updates" and min(done) >= self.budget_value:
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
                suite.budget_kind, suite.budget_value,
            )  # fmt: skip
            if not cell.config_path.exists():
                raise ConfigError(f"experiment {exp.label}: no file {cell.config_path}")
            cfg = cell.config()
            if cell.budget_kind == "student_updates" and cfg.ppo.anneal_lr:
                raise ConfigError(
                    f"experiment {exp.label}: a student_updates budget cannot anneal the "
                    "learning rate (ppo.anneal_lr: its schedule is fixed when training "
                    "starts, before the env steps the budget needs are known); use an "
                    "env_steps budget or ppo.anneal_lr=false"
                )
            envs[exp.label] = (cfg.env.family, cfg.env.options)
            cells.append(cell)
    if len(set(map(repr, envs.values()))) > 1:
        raise ConfigError(
            f"experiments must share env.family and env.options to be compared: {envs}"
        )
    return cells


def _overrides(suite: Suite, exp: ExperimentSpec, first: int, count: int, directory: Path):
    # Every cell draws its shared decisions (ued.core.schedule) from the suite's first seed, so a
    # seed's result does not depend on how the seeds are grouped into cells
    # (seeds_per_run) or on how a cell runs them (run.seed_mode).
    return (
        *suite.overrides,
        *exp.overrides,
        f"run.seed={first}",
        f"run.schedule_seed={suite.first_seed}",
        f"run.num_seeds={count}",
        f"run.dir={directory}",
    )


def machine() -> dict[str, Any]:
    """Where a cell ran: host OS and CPU, core count, JAX's version and devices."""
    import jax

    devices = jax.devices()
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": f"{len(devices)} x {devices[0].device_kind}" if devices else "",
    }


def student_updates(state, cfg: Config) -> list[int]:
    """The student's gradient updates per seed, from its optimiser's step count (each
    gradient update takes ``epochs x num_minibatches`` optimiser steps)."""
    import numpy as np

    steps = np.atleast_1d(np.asarray(state.student.step, np.int64))
    per_update = cfg.ppo.epochs * cfg.ppo.num_minibatches
    return [int(s) // per_update for s in steps]


def _next_env_steps(cell: Cell, cfg: Config, done: list[int], updates: int) -> int:
    """Env steps per seed for the next round of a ``student_updates`` cell: the missing
    gradient updates at the slowest seed's observed rate (at least one update more)."""
    slowest = max(1, min(done))
    missing = cell.budget_value - min(done)
    more = max(1, math.ceil(missing * updates / slowest))
    return (updates + more) * cfg.steps_per_update


def run_cell(cell: Cell, verbose: bool = True) -> dict[str, Any]:
    """Trains (or resumes) one cell to its budget; returns its updated ``cell.json``."""
    from ued.host.train import train  # JAX starts here, not when a suite is only listed

    status = cell.status()
    record = cell.record()
    if status == "finished":
        return {**record, "action": "skipped"}
    resume = first_resume = status == "resumable"
    if record.get("budget") != cell.budget:
        record = {k: v for k, v in record.items() if k not in ("target_env_steps",)}
    target = record.get("target_env_steps") if resume else None
    cell.directory.mkdir(parents=True, exist_ok=True)
    attempts = list(record.get("attempts", [])) if resume else []
    host = machine()
    rounds = 0
    while True:
        cfg = cell.config(resume=resume, env_steps=target)
        if verbose:
            how = f"resuming from {cell.checkpoints()[-1]} updates" if resume else "starting"
            print(f"[suite] {cell.name}: {how} ({cfg.total_updates} updates)", flush=True)
        t0 = time.perf_counter()
        result = train(cfg, verbose=verbose)
        seconds = time.perf_counter() - t0
        attempts.append({"seconds": seconds, "from": result["resumed_from"], "machine": host,
                         "date": datetime.date.today().isoformat()})  # fmt: skip
        final = result["final"]
        updates = final.get("updates", result["resumed_from"])
        done = student_updates(result["state"], cfg)
        record = {
            "status": result["status"],
            "label": cell.label,
            "seeds": cell.seeds,
            "budget": cell.budget,
            "updates": updates,
            "env_steps_per_seed": final.get("env_steps"),
            "target_env_steps": cfg.run.total_env_steps,
            "student_updates": done,
            "wall_seconds": sum(a["seconds"] for a in attempts),
            "compile_seconds": result.get("compile_seconds"),
            # How the cell's seeds ran (run.seed_mode, resolved: vmap or sequential), or None.
            "seed_mode": result.get("seed_mode"),
            "attempts": attempts,
        }
        write_atomic(cell.directory / CELL_FILE, json.dumps(record, indent=1))
        rounds += 1
        short = cell.budget_kind == "student_updates" and min(done) < cell.budget_value
        if result["status"] != "finished" or not short:
            break
        if rounds >= MAX_BUDGET_ROUNDS:
            raise ConfigError(
                f"{cell.name}: {min(done)} of {cell.budget_value} student updates after "
                f"{rounds} rounds; does this curriculum take gradient steps?"
            )
        target, resume = _next_env_steps(cell, cfg, done, updates), True
        if verbose:
            print(
                f"[suite] {cell.name}: {min(done)} of {cell.budget_value} student updates; "
                f"extending to {target:,} env steps per seed",
                flush=True,
            )
    return {**record, "action": "resumed" if first_resume else "trained"}


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
    per_seed = env_steps_per_seed(rows, seeds)
    keys = sorted({k for t in per_seed for k in t})
    return {k: sum(t.get(k, 0.0) for t in per_seed) / max(1, len(per_seed)) for k in keys}


def env_steps_per_seed(rows: list[dict], seeds: list[int]) -> list[dict[str, float]]:
    """Each seed's env steps by kind (the running totals of its last chunk row)."""
    per_seed = []
    for seed in seeds:
        mine = [r for r in rows if r.get("seed", seed) == seed and "sps" in r]
        last = max(mine, key=lambda r: r["updates"]) if mine else {}
        per_seed.append(
            {k.split("/", 1)[1]: float(v) for k, v in last.items() if k.startswith("env_steps/")}
        )
    return per_seed


def write_atomic(path: Path, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file, so a signal never leaves half
    (and a device, FIFO or folder at ``path`` is refused, never replaced)."""
    safe_io.write_atomic(path, text, "suite result")


def read_metrics(cell: Cell) -> list[dict]:
    path = cell.directory / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
