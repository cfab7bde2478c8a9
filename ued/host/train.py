"""The host driver: builds the step, runs jitted chunks, logs, evaluates, checkpoints.

Host code only drives chunks of jitted steps; nothing here runs per env step. A run folder
(``run.dir``) holds ``config.yaml``, ``metrics.jsonl``/``metrics.csv``, ``summary.json``,
``checkpoints/<updates>/`` and ``gallery/``.

- Chunks end on multiples of ``eval.interval`` and ``run.checkpoint_every`` (the last chunk
  of a kind runs a traced number of updates, so one compiled program serves them all).
  Every update is a pure function of the train state, so a run resumed from a checkpoint
  continues bit for bit.
- ``run.resume=true`` continues from the newest usable checkpoint (see ``ued.host.checkpoint``
  for which config changes are allowed); rows of ``metrics.jsonl``/``.csv`` logged after
  that checkpoint are dropped, and the resumed run appends its own.
- The run folder is locked for the whole call and is never cleaned: earlier results make a
  fresh run refuse, or with ``run.overwrite=true`` move aside (``ued.host.run_dir``). Nothing is
  written to it until the chunk program is compiled.
- The signal handler is installed first. The first SIGINT/SIGTERM finishes the current chunk,
  writes a checkpoint and returns with ``status="interrupted"``; one that arrives before
  training begins raises ``Interrupted`` once the current phase (build, init, compile) ends,
  with nothing written; a second one aborts at once (the default signal action).
- A non-finite parameter, loss or gradient norm (the step's ``nonfinite`` metric) raises
  ``NonFiniteError`` naming the update and the quantity; nothing of that chunk is saved, so
  the newest checkpoint is the last good state, and ``config.yaml`` is set back to that
  checkpoint's config (this call's goes to ``config.failed.yaml``).
- Levels sent to the run (``RUN/inbox/``, ``ued.human.inbox``) are read at every chunk boundary,
  validated and given to the curriculum's ``add_levels`` (``ued.human.grounding``), exactly once
  across SIGINT, crashes and resume; rows log ``grounding/accepted``/``grounding/rejected``.
- ``run.num_seeds = S > 1`` trains S seeds (``run.seed``, ``run.seed + 1``, ...) in one
  compiled program (``ued.step.parallel``). Each chunk logs one row per seed, with a ``seed``
  column; seed ``run.seed + i`` logs and evaluates what the single-seed run with that seed
  and ``run.schedule_seed = run.seed`` would (``ued.step.parallel`` says how exactly).
  Checkpoints hold the whole state with its seed axis; galleries go to
  ``gallery/seed<seed>/``. The returned ``first``/``final``/``eval`` are means over seeds
  and ``per_seed`` has each seed's last record. ``run.seed_mode`` chooses vmapped seeds or
  seeds one after another (``ued.step.parallel``); the run prints which, and ``summary.json``
  and the result record it as ``seed_mode``.
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ued.config import config as config_lib
from ued.config.config import Config, ConfigError
from ued.curricula import options_of
from ued.evaluation import gallery
from ued.evaluation.evaluate import (
    NamedEvaluator,
    before_after,
    format_table,
    seeds_result,
    sparkline,
)
from ued.host import limits
from ued.host import run_dir as run_dir_lib
from ued.host.checkpoint import check_compatible, into_state
from ued.host.chunk_records import (
    NonFiniteError,
    check_finite,
    chunk_events,
    mean_record,
    summarize_chunk,
)
from ued.host.logging import Logger, make_logger, prune_metrics
from ued.host.stop import Interrupted, StopSignal
from ued.human.grounding import Grounding
from ued.human.inbox import prune_events
from ued.step import parallel
from ued.step.experiment import TrainState, build
from ued.step.parallel import Runner


def enable_compile_cache(path: str) -> None:
    """Turns on JAX's persistent compilation cache so a rerun of a config starts fast."""
    if not path:
        return
    directory = Path(path).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def _restore(runner: Runner, snapshot, verbose: bool):
    """The initial state: the snapshot's when there is one, else a fresh one."""
    cfg = runner.exp.cfg
    like = parallel.init_shapes(runner.exp, cfg.run.seed)
    limits.check_fits(f"the train state ({runner.num_seeds} seed(s))", limits.tree_bytes(like))
    if snapshot is None:
        return runner.init(runner.seed_keys(cfg.run.seed)), 0
    for message in check_compatible(snapshot, cfg, like, options_of):
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    if verbose:
        print(f"[ued] resuming from {snapshot.path} ({snapshot.step} updates)", flush=True)
    state = jax.device_put(into_state(like, snapshot.leaves), runner.state_sharding())
    return state, snapshot.step


def train(cfg: Config, logger: Logger | None = None, verbose: bool = True) -> dict[str, Any]:
    """Runs ``cfg`` to ``run.total_env_steps``; returns the last metrics and evaluation.

    The result has ``first`` and ``final`` (the first and last records of this call; means
    over seeds with ``run.num_seeds > 1``), ``per_seed`` (each seed's last record), ``eval``,
    ``state``, ``status`` (``"finished"`` or ``"interrupted"``), ``resumed_from`` (updates;
    0 for a fresh run), ``checkpoint`` (the last saved step folder, or None) and timings.

    Raises:
        ConfigError: a bad config, a run folder in use (``RunFolderError``) or holding
            results this run would clobber, or a state too large for the machine.
        NonFiniteError: see the module docstring.
        Interrupted: a signal arrived before the first chunk ran; nothing was written.
    """
    # The handler goes in first, so a signal at any moment is seen (not a traceback).
    with StopSignal(verbose) as stop:
        if cfg.run.resume and not cfg.run.dir:
            raise ConfigError("run.resume=true needs run.dir: the folder of the run to continue")
        run_dir = Path(cfg.run.dir) if cfg.run.dir else None
        if run_dir is None:
            return _train(cfg, None, logger, verbose, stop)
        run_dir_lib.check_writable_dir(run_dir)
        with run_dir_lib.RunLock(run_dir):
            return _train(cfg, run_dir, logger, verbose, stop)


def _check_stop(stop: StopSignal, where: str) -> None:
    if stop.requested:
        raise Interrupted(f"{stop.requested} {where}, before training began; nothing written")


def _train(cfg, run_dir, logger, verbose, stop) -> dict[str, Any]:
    if verbose:
        where = f" in {run_dir}" if run_dir is not None else ""
        print(f"[ued] building {cfg.curriculum.name} on {cfg.env.family}{where}", flush=True)
    parallel.initialize_distributed()
    parallel.configure_host_devices(cfg)
    enable_compile_cache(cfg.run.compile_cache)
    ckpt, snapshot = run_dir_lib.open_run(cfg, run_dir) if run_dir is not None else (None, None)
    try:
        runner = parallel.make_runner(build(cfg))
        _check_stop(stop, "while building")
        t0 = time.perf_counter()
        state, start = _restore(runner, snapshot, verbose)
        jax.block_until_ready(state)
        init_seconds = time.perf_counter() - t0
        _check_stop(stop, "during state init")
        driver = _Driver(runner, ckpt, run_dir, logger, verbose)
        if snapshot is not None and "env_steps_by_kind" in snapshot.meta:
            driver.step_counts = [dict(c) for c in snapshot.meta["env_steps_by_kind"]]
        run_chunk = driver.compile(state) if start < driver.total else None
        _check_stop(stop, "while compiling")
        # Only now is anything written: a stop before this leaves the folder as it was.
        if run_dir is not None:
            prune_metrics(run_dir, start)
            prune_events(run_dir, start)
            done = snapshot.meta.get("inbox_ids", []) if snapshot is not None else []
            driver.grounding = Grounding(runner, run_dir, done)
            config_lib.dump(cfg, run_dir / "config.yaml")
        logger = driver.logger = logger or make_logger(cfg, run_dir)
        result = driver.run(state, stop, run_chunk)
        result.update(init_seconds=init_seconds, resumed_from=start)
    except NonFiniteError as err:
        where = run_dir_lib.restore_checkpoint_config(ckpt, cfg, run_dir)
        raise NonFiniteError(f"{err}; stopped, {where}") from None
    finally:
        if logger is not None:
            logger.close()
        if ckpt is not None:
            ckpt.close()
    if run_dir is not None and result["final"]:
        keep = ("final", "eval", "status", "compile_seconds", "resumed_from")
        keep += ("per_seed", "seed_mode") if cfg.run.num_seeds > 1 else ()
        summary = {k: result[k] for k in keep}
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return result


class _Driver:
    """The chunk loop of one ``train`` call."""

    def __init__(self, runner: Runner, ckpt, run_dir, logger, verbose):
        self.runner, self.exp, self.cfg, self.ckpt = runner, runner.exp, runner.exp.cfg, ckpt
        self.run_dir, self.logger, self.verbose = run_dir, logger, verbose  # logger: set later
        self.total = self.cfg.total_updates
        self.spu = self.cfg.steps_per_update
        self.chunk = min(self.cfg.run.chunk_updates, self.total)
        self.evaluator = NamedEvaluator(self.exp)
        # Seed i is seed run.seed + i of a single-seed run, evaluation included.
        self.seeds = [self.cfg.run.seed + i for i in range(runner.num_seeds)]
        self.eval_keys = [jax.random.PRNGKey(seed + 1_000_003) for seed in self.seeds]
        self.per_level: list[dict[str, np.ndarray]] = []  # the last evaluation, per seed
        self.saved_step: int | None = None
        self.evaluated_at: int | None = None
        self.compile_seconds = 0.0
        self._last_active = 0
        # Per seed, env steps by kind so far (student, antagonist, builder, curriculum_eval):
        # the curricula log each update's as env_steps/<kind>; rows carry the running totals.
        self.step_counts: list[dict[str, float]] = [{} for _ in self.seeds]
        self.before: dict[str, Any] | None = None  # the eval.at_start result, as a table section
        self.curves: dict[str, list[float]] = {"eval solve rate": [], "training return": []}
        self.grounding: Grounding | None = None  # levels sent to the run (ued.human.inbox)

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
        # Before the first run allocates its buffers (the state is already in memory).
        need = limits.compiled_bytes(run_chunk)
        state_bytes = limits.tree_bytes(state)
        available = limits.available_bytes()
        if need is not None and available is not None:
            limits.check_fits("one chunk of the train step", need, available + state_bytes)
        if self.verbose:
            seeds = ""
            if self.runner.seeded:
                seeds = f" x {self.runner.describe_seeds()}"
            print(
                f"[ued] {self.cfg.curriculum.name} on {self.cfg.env.family}: {self.total} "
                f"updates of {self.spu} env steps{seeds} (from {self.runner.updates(state)}); "
                f"compile {self.compile_seconds:.1f}s",
                flush=True,
            )
        return run_chunk

    def run(self, state: TrainState, stop: StopSignal, run_chunk) -> dict[str, Any]:
        updates = self.runner.updates(state)
        progress = _progress(self.total * self.spu, updates * self.spu, self)
        records: list[dict[str, Any]] = []
        first: list[dict[str, Any]] = []
        if self.cfg.eval.at_start and updates == 0 and self.evaluator.levels is not None:
            self.log_evals(0, self.evaluate(state, 0))
            self.before = self.named_result()
        while updates < self.total and not stop.requested:
            state, records = self.chunk_step(run_chunk, state, updates, stop)
            first = first or records
            updates = records[0]["updates"]
            mean = mean_record(records)
            self.curves["training return"].append(mean["mean_return"])
            progress.update(self._last_active * self.spu)
            progress.set_postfix(sps=f"{mean['sps']:.0f}", ret=f"{mean['mean_return']:.3f}")
        progress.close()
        if stop.requested:
            self.save(state, updates)
        status = "interrupted" if updates < self.total else "finished"
        evals = [{k: v for k, v in r.items() if k.startswith("eval/")} for r in records]
        if status == "finished" and records and self.evaluated_at != updates:
            evals = self.evaluate(state, updates)
            self.log_evals(updates, evals)
        if self.verbose and any(evals):
            self.report()
        checkpoint = None
        if self.saved_step is not None:
            checkpoint = str(self.ckpt.directory / str(self.saved_step))
        return {
            "first": mean_record(first),
            "final": mean_record(records),
            "per_seed": records,
            "eval": mean_record(evals) if any(evals) else {},
            "state": state,
            "status": status,
            "checkpoint": checkpoint,
            "compile_seconds": self.compile_seconds,
            "seed_mode": self.runner.seed_mode if self.runner.seeded else None,
        }

    def log_evals(self, updates: int, evals: list[dict[str, float]]) -> None:
        """Logs each seed's ``eval/*`` entries of an evaluation outside a chunk's row."""
        for seed, seed_evals in zip(self.seeds, evals, strict=True):
            if seed_evals:
                row = {"updates": updates, "env_steps": updates * self.spu}
                self.logger.log({**row, **self.seed_column(seed), **seed_evals})

    def report(self) -> None:
        """The final evaluation table; with ``eval.at_start``, the before -> after table and
        the curves of the run too."""
        after = self.named_result()
        print(format_table(after, max_level_rows=20), flush=True)
        if self.before is None:
            return
        print(f"\n[ued] before -> after training\n{before_after(self.before, after)}")
        for name, values in self.curves.items():
            if len(values) > 1:
                print(f"[ued] {name:<16} {values[0]:.2f} {sparkline(values)} {values[-1]:.2f}")
        sys.stdout.flush()

    def seed_column(self, seed: int) -> dict[str, int]:
        return {"seed": seed} if self.runner.seeded else {}

    def write_events(self, per_seed, first_update: int, active: int) -> None:
        """Appends the chunk's events (``chunk_events``) to ``OUT/events.jsonl``."""
        lines = [
            json.dumps({**event, **self.seed_column(seed)})
            for seed, metrics in zip(self.seeds, per_seed, strict=True)
            for event in chunk_events(metrics, first_update, active)
        ]
        if lines:
            with (self.run_dir / "events.jsonl").open("a") as f:
                f.write("\n".join(lines) + "\n")

    def named_result(self) -> dict[str, Any]:
        """The last evaluation as a table section (levels averaged over seeds)."""
        levels = self.cfg.eval.levels  # "named", "standard", ...: what the table shows
        label = f"{levels}, mean of {len(self.seeds)} seeds" if self.runner.seeded else levels
        return {label: seeds_result(self.per_level, self.evaluator.names)}

    def chunk_step(self, run_chunk, state: TrainState, updates: int, stop: StopSignal):
        """Runs one chunk from ``updates``; checks, evaluates, checkpoints and logs it.
        Returns the state and the chunk's records, one per seed."""
        active = self._last_active = self.next_active(updates)
        t0 = time.perf_counter()
        state, metrics = run_chunk(state, jnp.int32(active))
        per_seed = self.runner.per_seed(metrics)  # waits for the device
        seconds = time.perf_counter() - t0
        for seed, seed_metrics in zip(self.seeds, per_seed, strict=True):
            where = f" of seed {seed}" if self.runner.seeded else ""
            check_finite(seed_metrics, updates, active, where)
        if self.run_dir is not None:
            self.write_events(per_seed, updates, active)
        updates += active
        records = [
            {
                "updates": updates,
                "env_steps": updates * self.spu,
                **self.seed_column(seed),
                "sps": active * self.spu / seconds,  # per seed; the program ran S times this
                **summarize_chunk(seed_metrics, active),
                **self.count_steps(counts, seed_metrics, active),
            }
            for seed, seed_metrics, counts in zip(
                self.seeds, per_seed, self.step_counts, strict=True
            )
        ]
        interval, every = self.cfg.eval.interval, self.cfg.run.checkpoint_every
        if interval and updates % interval == 0:
            for record, seed_evals in zip(records, self.evaluate(state, updates), strict=True):
                record.update(seed_evals)
        if self.grounding is not None:
            state, counts = self.grounding.apply(state, updates)
            for record in records:
                record.update(counts)
        if (every and updates % every == 0) or updates == self.total or stop.requested:
            records[0]["checkpoint_seconds"] = self.save(state, updates)
        for record in records:
            self.logger.log(record)
        return state, records

    def evaluate(self, state: TrainState, updates: int) -> list[dict[str, float]]:
        """Evaluates each seed on the named levels and writes this update's galleries;
        returns each seed's ``eval/*`` entries."""
        params = [None] * len(self.seeds)
        if self.evaluator.levels is not None:
            params = self.runner.per_seed(state.student.params)
        self.per_level = [
            self.evaluator(jax.random.fold_in(key, updates), seed_params)
            for key, seed_params in zip(self.eval_keys, params, strict=True)
        ]
        evals = [self.evaluator.entries(per_level) for per_level in self.per_level]
        self.evaluated_at = updates
        self.curves["eval solve rate"].append(
            float(np.mean([e.get("eval/solve_rate", np.nan) for e in evals]))
        )
        if self.run_dir is not None:
            curricula = self.runner.per_seed(state.curriculum)
            ev = self.evaluator
            for seed, curriculum, per_level in zip(
                self.seeds, curricula, self.per_level, strict=True
            ):
                directory = self.run_dir / "gallery"
                if self.runner.seeded:
                    directory = directory / f"seed{seed}"
                rates = per_level.get("solve_rate")
                gallery.write_galleries(
                    directory, self.exp, curriculum, updates, ev.names, ev.levels, rates
                )
        return evals

    @staticmethod
    def count_steps(counts: dict[str, float], metrics, active: int) -> dict[str, float]:
        """Adds the chunk's ``env_steps/<kind>`` to ``counts``; returns the running totals
        and ``env_steps/all``, their sum."""
        for key, value in metrics.items():
            if key.startswith("env_steps/"):
                done = np.asarray(value, np.float64)[:active]
                counts[key] = counts.get(key, 0.0) + float(np.nansum(done))
        return {**counts, "env_steps/all": sum(counts.values())}

    def save(self, state: TrainState, updates: int) -> float:
        """Starts a checkpoint save; returns the seconds the host was blocked."""
        if self.ckpt is None or self.saved_step == updates:
            return 0.0
        t0 = time.perf_counter()
        extra = {
            "updates": updates,
            "env_steps": updates * self.spu,
            "env_steps_by_kind": self.step_counts,
            "time": time.time(),
        }
        if self.grounding is not None:
            extra.update(self.grounding.checkpoint_meta())
        self.ckpt.save(updates, state, self.cfg, extra)
        self.saved_step = updates
        if self.grounding is not None and self.grounding.has_unsaved():
            self.ckpt.wait()  # sent levels are filed only once a checkpoint holds them
            self.grounding.saved()
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
