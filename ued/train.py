"""The host driver: builds the step, runs jitted chunks, logs, evaluates, shows progress.

Host code only drives chunks of jitted steps; nothing here runs per env step.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ued import config as config_lib
from ued.config import Config
from ued.evaluate import evaluate
from ued.experiment import Experiment, TrainState, build
from ued.logging import CsvLogger, JsonlLogger, Logger, MultiLogger


def enable_compile_cache(path: str) -> None:
    """Turns on JAX's persistent compilation cache so a rerun of a config starts fast."""
    if not path:
        return
    directory = Path(path).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def stack(levels: list) -> Any:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *levels)


class Evaluator:
    """Jitted evaluation of the student on the family's named levels."""

    def __init__(self, exp: Experiment):
        self.exp = exp
        named = dict(exp.family.named_levels(exp.env)) if exp.cfg.eval.levels == "named" else {}
        self.names = list(named)
        self.levels = stack(list(named.values())) if named else None
        episodes = exp.cfg.eval.episodes
        max_steps = exp.env.max_episode_steps(exp.env_params)
        self._fn = jax.jit(
            lambda key, params, levels: evaluate(
                key, exp.env, exp.env_params, exp.network, params, levels, episodes, max_steps
            )
        )

    def __call__(self, key, params) -> dict[str, float]:
        if self.levels is None:
            return {}
        result = jax.device_get(self._fn(key, params, self.levels))
        out = {}
        for i, name in enumerate(self.names):
            for metric in ("solve_rate", "mean_return", "mean_length"):
                out[f"eval/{name}/{metric}"] = float(result[metric][i])
        out["eval/solve_rate"] = float(np.mean(result["solve_rate"]))
        out["eval/mean_return"] = float(np.mean(result["mean_return"]))
        return out


def summarize_chunk(metrics: dict[str, Any]) -> dict[str, float]:
    """Mean over the chunk's updates; NaN entries (branch did not apply) are ignored."""
    out = {}
    for key, value in jax.device_get(metrics).items():
        value = np.asarray(value, dtype=np.float64)
        finite = value[np.isfinite(value)]
        out[key] = float(finite.mean()) if finite.size else float("nan")
    return out


def format_table(evals: dict[str, float], names: list[str]) -> str:
    rows = [f"{'level':<24} {'solve rate':>10} {'return':>8} {'length':>8}"]
    for name in names:
        rows.append(
            f"{name:<24} {evals[f'eval/{name}/solve_rate']:>10.2f} "
            f"{evals[f'eval/{name}/mean_return']:>8.3f} {evals[f'eval/{name}/mean_length']:>8.1f}"
        )
    rows.append(f"{'mean':<24} {evals['eval/solve_rate']:>10.2f} {evals['eval/mean_return']:>8.3f}")
    return "\n".join(rows)


def make_logger(run_dir: Path | None) -> Logger:
    if run_dir is None:
        return MultiLogger([])
    return MultiLogger([JsonlLogger(run_dir / "metrics.jsonl"), CsvLogger(run_dir / "metrics.csv")])


def train(cfg: Config, logger: Logger | None = None, verbose: bool = True) -> dict[str, Any]:
    """Runs ``cfg`` to ``run.total_env_steps``; returns the last metrics and evaluation."""
    enable_compile_cache(cfg.run.compile_cache)
    exp = build(cfg)
    run_dir = Path(cfg.run.dir) if cfg.run.dir else None
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        config_lib.dump(cfg, run_dir / "config.yaml")
    logger = logger or make_logger(run_dir)
    chunk = min(cfg.run.chunk_updates, cfg.total_updates)
    num_chunks = -(-cfg.total_updates // chunk)

    t0 = time.perf_counter()
    state: TrainState = jax.jit(exp.init)(jax.random.PRNGKey(cfg.run.seed))
    jax.block_until_ready(state)
    init_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_chunk = jax.jit(lambda s, n: exp.run_chunk(s, chunk, n), donate_argnums=0)
    run_chunk = run_chunk.lower(state, jnp.int32(chunk)).compile()
    compile_seconds = time.perf_counter() - t0
    evaluator = Evaluator(exp)
    eval_key = jax.random.PRNGKey(cfg.run.seed + 1_000_003)
    if verbose:
        print(
            f"[ued] {cfg.curriculum.name} on {cfg.env.family}: {cfg.total_updates} updates of "
            f"{cfg.steps_per_update} env steps; init {init_seconds:.1f}s, "
            f"compile {compile_seconds:.1f}s",
            flush=True,
        )

    progress = _progress(cfg.total_updates * cfg.steps_per_update, verbose and cfg.run.progress)
    record: dict[str, Any] = {}
    evals: dict[str, float] = {}
    last_eval = 0
    for index in range(num_chunks):
        active = min(chunk, cfg.total_updates - index * chunk)
        t0 = time.perf_counter()
        state, metrics = run_chunk(state, jnp.int32(active))
        summary = summarize_chunk(metrics)  # device_get waits for the device
        seconds = time.perf_counter() - t0
        updates = int(state.updates)
        record = {
            "updates": updates,
            "env_steps": updates * cfg.steps_per_update,
            "sps": active * cfg.steps_per_update / seconds,
            **summary,
        }
        interval = cfg.eval.interval
        if interval and updates // interval > last_eval // interval:
            evals = evaluator(jax.random.fold_in(eval_key, updates), state.student.params)
            record.update(evals)
            last_eval = updates
        _check_finite(record, updates)
        logger.log(record)
        progress.update(active * cfg.steps_per_update)
        progress.set_postfix(
            sps=f"{record['sps']:.0f}",
            ret=f"{record['mean_return']:.3f}",
            solve=f"{record['solve_rate']:.2f}",
        )
    progress.close()
    if evaluator.names and last_eval != int(state.updates):
        evals = evaluator(jax.random.fold_in(eval_key, int(state.updates)), state.student.params)
        logger.log({"updates": int(state.updates), "env_steps": record["env_steps"], **evals})
    logger.close()
    if verbose and evals:
        print(format_table(evals, evaluator.names), flush=True)
    result = {
        "final": record,
        "eval": evals,
        "compile_seconds": compile_seconds,
        "init_seconds": init_seconds,
        "state": state,
    }
    if run_dir is not None:
        (run_dir / "summary.json").write_text(
            json.dumps(
                {"final": record, "eval": evals, "compile_seconds": compile_seconds}, indent=1
            )
        )
    return result


class NonFiniteError(FloatingPointError):
    pass


def _check_finite(record: dict[str, Any], updates: int) -> None:
    for key in ("loss/policy", "loss/value", "grad_norm"):
        value = record.get(key)
        if value is not None and np.isinf(value):
            raise NonFiniteError(f"non-finite {key}={value} at update {updates}")


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="step", unit_scale=True, disable=not enabled, smoothing=0.1)
