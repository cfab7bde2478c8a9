"""The host driver: builds the step, runs jitted chunks, logs, evaluates, checkpoints.

Host code only drives chunks of jitted steps; nothing here runs per env step. A run folder
(``run.dir``) holds ``config.yaml``, ``metrics.jsonl``/``metrics.csv``, ``summary.json``,
``checkpoints/<updates>/`` and ``gallery/``.

- Chunks end on multiples of ``eval.interval`` and ``run.checkpoint_every`` (the last chunk
  of a kind runs a traced number of updates, so one compiled program serves them all).
  Every update is a pure function of the train state, so a run resumed from a checkpoint
  continues bit for bit.
- ``run.resume=true`` continues from the newest usable checkpoint (see ``ued.checkpoint``
  for which config changes are allowed); rows of ``metrics.jsonl``/``.csv`` logged after
  that checkpoint are dropped, and the resumed run appends its own.
- The first SIGINT/SIGTERM finishes the current chunk, writes a checkpoint and returns with
  ``status="interrupted"``; a second one aborts at once (the default signal action).
- A non-finite parameter, loss or gradient norm (the step's ``nonfinite`` metric) raises
  ``NonFiniteError`` naming the update and the quantity; nothing of that chunk is saved, so
  the newest checkpoint is the last good state.
"""

from __future__ import annotations

import csv
import json
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ued import config as config_lib
from ued import gallery, parallel
from ued.checkpoint import Checkpointer, check_compatible, into_state
from ued.config import Config, ConfigError
from ued.evaluate import LevelEvaluator, format_table, set_result, stack
from ued.experiment import NONFINITE, Experiment, TrainState, build
from ued.logging import CsvLogger, JsonlLogger, Logger, MultiLogger
from ued.parallel import Runner


class NonFiniteError(FloatingPointError):
    """A parameter, loss or gradient norm became NaN or infinite."""


def enable_compile_cache(path: str) -> None:
    """Turns on JAX's persistent compilation cache so a rerun of a config starts fast."""
    if not path:
        return
    directory = Path(path).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


class Evaluator:
    """Jitted evaluation of the student on the family's named levels."""

    def __init__(self, exp: Experiment):
        named = dict(exp.family.named_levels(exp.env)) if exp.cfg.eval.levels == "named" else {}
        self.names = list(named)
        self.levels = stack(list(named.values())) if named else None
        self.per_level: dict[str, np.ndarray] = {}  # the last evaluation, (L,) per metric
        max_steps = exp.env.max_episode_steps(exp.env_params)
        episodes = exp.cfg.eval.episodes
        self._eval = LevelEvaluator(
            exp.env, exp.env_params, exp.network, episodes, max_steps, len(self.names)
        )

    def __call__(self, key, params) -> dict[str, float]:
        """``eval/<level>/<metric>`` for each level and ``eval/<metric>`` means."""
        if self.levels is None:
            return {}
        self.per_level = self._eval(key, params, self.levels)
        out = {}
        for i, name in enumerate(self.names):
            for metric, values in self.per_level.items():
                out[f"eval/{name}/{metric}"] = float(values[i])
        for metric, values in self.per_level.items():
            out[f"eval/{metric}"] = float(np.mean(values))
        return out


def summarize_chunk(metrics: dict[str, Any], active: int | None = None) -> dict[str, float]:
    """Mean over the chunk's first ``active`` updates; NaN entries (a branch that did not
    apply) are ignored. The ``nonfinite`` flag is checked, not logged."""
    out = {}
    for key, value in jax.device_get(metrics).items():
        if key == "nonfinite":
            continue
        value = np.asarray(value, dtype=np.float64)[:active]
        finite = value[np.isfinite(value)]
        out[key] = float(finite.mean()) if finite.size else float("nan")
    return out


def check_finite(metrics: dict[str, Any], first_update: int, active: int) -> None:
    """Raises ``NonFiniteError`` naming the first update (1-based) whose flag is set."""
    flags = np.nan_to_num(np.asarray(metrics.get("nonfinite", []), np.float64)[:active])
    bad = np.flatnonzero(flags)
    if bad.size:
        mask = int(flags[bad[0]])
        names = [name for i, name in enumerate(NONFINITE) if mask >> i & 1]
        losses = {k: float(np.asarray(v)[bad[0]]) for k, v in metrics.items() if "loss" in k}
        raise NonFiniteError(
            f"non-finite {' and '.join(names)} at update {first_update + int(bad[0]) + 1} "
            f"(losses then: {losses})"
        )


class StopSignal:
    """Context manager: the first SIGINT/SIGTERM sets ``requested``; a second one aborts."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, verbose: bool = True):
        self.requested: str | None = None
        self.verbose = verbose
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        self.requested = signal.Signals(signum).name
        for sig in self.SIGNALS:  # the next signal gets the default action: abort now
            signal.signal(sig, signal.SIG_DFL)
        if self.verbose:
            print(
                f"\n[ued] {self.requested}: finishing this chunk and writing a checkpoint; "
                "send it again to abort at once",
                file=sys.stderr,
                flush=True,
            )

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def make_logger(cfg: Config, run_dir: Path | None) -> Logger:
    """JSONL and CSV in the run folder, plus the optional ``run.loggers``."""
    if run_dir is None:
        return MultiLogger([])
    loggers: list[Logger] = [
        JsonlLogger(run_dir / "metrics.jsonl"),
        CsvLogger(run_dir / "metrics.csv"),
    ]
    from ued import logging as log_lib

    try:
        if "tensorboard" in cfg.run.loggers:
            loggers.append(log_lib.TensorBoardLogger(run_dir / "tb"))
        if "wandb" in cfg.run.loggers:
            config = config_lib.to_dict(cfg)
            loggers.append(log_lib.WandbLogger(config, dir=str(run_dir), name=run_dir.name))
    except ImportError as err:
        extra = "tensorboard" if "tensorboard" in str(err).lower() else "wandb"
        message = f"run.loggers: {err}; install it with pip install 'ued[{extra}]'"
        raise ConfigError(message) from err
    return MultiLogger(loggers)


def prune_metrics(run_dir: Path, updates: int | None) -> None:
    """Drops metric rows logged after ``updates`` (all of them with None)."""
    for name in ("metrics.jsonl", "metrics.csv"):
        path = run_dir / name
        if not path.exists():
            continue
        if updates is None:
            warnings.warn(f"starting afresh: removing {path} of an earlier run", stacklevel=2)
            path.unlink()
            continue
        if name.endswith(".jsonl"):
            lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
            kept = [ln for ln in lines if json.loads(ln).get("updates", 0) <= updates]
            path.write_text("".join(ln + "\n" for ln in kept))
        else:
            with path.open(newline="") as f:
                reader = csv.DictReader(f)
                columns = list(reader.fieldnames or [])
                rows = [r for r in reader if float(r.get("updates") or 0) <= updates]
            with path.open("w", newline="") as f:
                writer = csv.DictWriter(f, columns)
                writer.writeheader()
                writer.writerows(rows)


def _start(runner: Runner, ckpt: Checkpointer | None, run_dir: Path | None, verbose: bool):
    """The initial state: restored when ``run.resume`` finds a checkpoint, else fresh."""
    cfg = runner.exp.cfg
    snapshot = None
    if ckpt is not None and ckpt.steps and not cfg.run.resume:
        raise ConfigError(
            f"run.dir={cfg.run.dir} already has checkpoints {ckpt.steps}; pass run.resume=true "
            "to continue that run, or choose another run.dir"
        )
    if ckpt is not None and cfg.run.resume:
        snapshot = ckpt.load_latest()
        if snapshot is None:
            message = f"run.resume: no checkpoint in {ckpt.directory}; starting afresh"
            warnings.warn(message, RuntimeWarning, stacklevel=2)
    key = runner.seed_keys(cfg.run.seed)
    if snapshot is None:
        if run_dir is not None:
            prune_metrics(run_dir, None)
        return runner.init(key), 0
    like = jax.eval_shape(runner.init, key)
    for message in check_compatible(snapshot, cfg, like):
        warnings.warn(message, RuntimeWarning, stacklevel=2)
    if run_dir is not None:
        prune_metrics(run_dir, snapshot.step)
    if verbose:
        print(f"[ued] resuming from {snapshot.path} ({snapshot.step} updates)", flush=True)
    state = jax.device_put(into_state(like, snapshot.leaves), runner.state_sharding())
    return state, snapshot.step


def train(cfg: Config, logger: Logger | None = None, verbose: bool = True) -> dict[str, Any]:
    """Runs ``cfg`` to ``run.total_env_steps``; returns the last metrics and evaluation.

    The result has ``first`` and ``final`` (the first and last records of this call),
    ``eval``, ``state``, ``status`` (``"finished"`` or ``"interrupted"``), ``resumed_from``
    (updates; 0 for a fresh run),
    ``checkpoint`` (the last saved step folder, or None) and timings.
    """
    if cfg.run.resume and not cfg.run.dir:
        raise ConfigError("run.resume=true needs run.dir: the folder of the run to continue")
    if cfg.run.num_seeds > 1:
        raise ConfigError(
            "run.num_seeds > 1: the training driver runs one seed per process for now; "
            "ued.parallel.make_runner vmaps seeds in one program (see scripts/benchmark.py)"
        )
    parallel.initialize_distributed()
    parallel.configure_host_devices(cfg)
    enable_compile_cache(cfg.run.compile_cache)
    runner = parallel.make_runner(build(cfg))
    run_dir = Path(cfg.run.dir) if cfg.run.dir else None
    ckpt = None
    if run_dir is not None:
        ckpt = Checkpointer(run_dir / "checkpoints", cfg.run.keep_checkpoints)
    try:
        t0 = time.perf_counter()
        state, start = _start(runner, ckpt, run_dir, verbose)
        jax.block_until_ready(state)
        init_seconds = time.perf_counter() - t0
        if run_dir is not None:
            config_lib.dump(cfg, run_dir / "config.yaml")
        logger = logger or make_logger(cfg, run_dir)
        driver = _Driver(runner, ckpt, run_dir, logger, verbose)
        with StopSignal(verbose) as stop:
            result = driver.run(state, stop)
        result.update(init_seconds=init_seconds, resumed_from=start)
    except NonFiniteError as err:
        last = "no checkpoint was written"
        if ckpt is not None:
            ckpt.wait()
            steps = ckpt.steps
            last = f"no checkpoint in {ckpt.directory}"
            if steps:
                last = f"the last good checkpoint is {ckpt.directory / str(steps[-1])}"
        raise NonFiniteError(f"{err}; stopped, {last}") from None
    finally:
        if logger is not None:
            logger.close()
        if ckpt is not None:
            ckpt.close()
    if run_dir is not None and result["final"]:
        keep = ("final", "eval", "status", "compile_seconds", "resumed_from")
        summary = {k: result[k] for k in keep}
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return result


class _Driver:
    """The chunk loop of one ``train`` call."""

    def __init__(self, runner: Runner, ckpt, run_dir, logger, verbose):
        self.runner, self.exp, self.cfg, self.ckpt = runner, runner.exp, runner.exp.cfg, ckpt
        self.run_dir, self.logger, self.verbose = run_dir, logger, verbose
        self.total = self.cfg.total_updates
        self.spu = self.cfg.steps_per_update
        self.chunk = min(self.cfg.run.chunk_updates, self.total)
        self.evaluator = Evaluator(self.exp)
        self.eval_key = jax.random.PRNGKey(self.cfg.run.seed + 1_000_003)
        self.saved_step: int | None = None
        self.evaluated_at: int | None = None
        self.compile_seconds = 0.0
        self._last_active = 0

    def next_active(self, updates: int) -> int:
        """Updates in the next chunk: it ends on eval and checkpoint multiples."""
        active = min(self.chunk, self.total - updates)
        for every in (self.cfg.eval.interval, self.cfg.run.checkpoint_every):
            if every > 0:
                active = min(active, every - updates % every)
        return active

    def compile(self, state: TrainState):
        """The jitted chunk, compiled once for ``self.chunk`` updates (the count is traced)."""
        t0 = time.perf_counter()
        run_chunk = self.runner.compile(state, self.chunk)
        self.compile_seconds = time.perf_counter() - t0
        if self.verbose:
            print(
                f"[ued] {self.cfg.curriculum.name} on {self.cfg.env.family}: {self.total} "
                f"updates of {self.spu} env steps (from {int(state.updates)}); "
                f"compile {self.compile_seconds:.1f}s",
                flush=True,
            )
        return run_chunk

    def run(self, state: TrainState, stop: StopSignal) -> dict[str, Any]:
        updates = int(state.updates)
        run_chunk = self.compile(state) if updates < self.total else None
        progress = _progress(self.total * self.spu, updates * self.spu, self)
        record: dict[str, Any] = {}
        first: dict[str, Any] = {}
        while updates < self.total and not stop.requested:
            state, record = self.chunk_step(run_chunk, state, updates, stop)
            first = first or record
            updates = record["updates"]
            progress.update(self._last_active * self.spu)
            progress.set_postfix(sps=f"{record['sps']:.0f}", ret=f"{record['mean_return']:.3f}")
        progress.close()
        if stop.requested:
            self.save(state, updates)
        status = "interrupted" if updates < self.total else "finished"
        evals = {k: v for k, v in record.items() if k.startswith("eval/")}
        if status == "finished" and record and self.evaluated_at != updates:
            evals = self.evaluate(state, updates)
            if evals:
                self.logger.log({"updates": updates, "env_steps": updates * self.spu, **evals})
        if self.verbose and evals:
            names = self.evaluator.names
            print(format_table({"named": set_result(self.evaluator.per_level, names)}), flush=True)
        checkpoint = None
        if self.saved_step is not None:
            checkpoint = str(self.ckpt.directory / str(self.saved_step))
        return {
            "first": first,
            "final": record,
            "eval": evals,
            "state": state,
            "status": status,
            "checkpoint": checkpoint,
            "compile_seconds": self.compile_seconds,
        }

    def chunk_step(self, run_chunk, state: TrainState, updates: int, stop: StopSignal):
        """Runs one chunk from ``updates``; checks, evaluates, checkpoints and logs it."""
        active = self._last_active = self.next_active(updates)
        t0 = time.perf_counter()
        state, metrics = run_chunk(state, jnp.int32(active))
        metrics = jax.device_get(metrics)  # waits for the device
        seconds = time.perf_counter() - t0
        check_finite(metrics, updates, active)
        updates += active
        record = {"updates": updates, "env_steps": updates * self.spu}
        record.update(sps=active * self.spu / seconds, **summarize_chunk(metrics, active))
        interval, every = self.cfg.eval.interval, self.cfg.run.checkpoint_every
        if interval and updates % interval == 0:
            record.update(self.evaluate(state, updates))
        if (every and updates % every == 0) or updates == self.total or stop.requested:
            record["checkpoint_seconds"] = self.save(state, updates)
        self.logger.log(record)
        return state, record

    def evaluate(self, state: TrainState, updates: int) -> dict[str, float]:
        """Evaluates on the named levels and writes this update's galleries."""
        key = jax.random.fold_in(self.eval_key, updates)
        evals = self.evaluator(key, state.student.params)
        self.evaluated_at = updates
        if self.run_dir is not None:
            ev = self.evaluator
            rates = ev.per_level.get("solve_rate")
            gallery.write_galleries(
                self.run_dir / "gallery", self.exp, state, updates, ev.names, ev.levels, rates
            )
        return evals

    def save(self, state: TrainState, updates: int) -> float:
        """Starts a checkpoint save; returns the seconds the host was blocked."""
        if self.ckpt is None or self.saved_step == updates:
            return 0.0
        t0 = time.perf_counter()
        extra = {"updates": updates, "env_steps": updates * self.spu, "time": time.time()}
        self.ckpt.save(updates, state, self.cfg, extra)
        self.saved_step = updates
        return time.perf_counter() - t0


def _progress(total: int, initial: int, driver: _Driver):
    from tqdm import tqdm

    enabled = driver.verbose and driver.cfg.run.progress
    return tqdm(
        total=total,
        initial=initial,
        unit="step",
        unit_scale=True,
        disable=not enabled,
        smoothing=0.1,
    )
