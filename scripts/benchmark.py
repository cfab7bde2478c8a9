"""Benchmark the train step: compile time, steps per second, FLOP rate, memory, env speed.

    python scripts/benchmark.py [EXPERIMENT.yaml] [section.key=value ...] [options]

Every measurement runs in a fresh subprocess (so compile times are honest and peak memory is
per configuration) and prints one JSON line to ``--output``:

- ``train``: one configuration of the train step. ``compile``: trace + lower and XLA compile
  seconds of the run's chunk program (``run.chunk_updates`` steps, as ``ued.host.train`` builds
  it), cold (empty persistent cache) and, in a second process sharing that cache, warm;
  ``init_seconds`` (jit + run of ``init``). ``sps``: student env steps per wall second of
  single train steps after compilation, results forced ready (``block_until_ready``), overall
  (the step mix the curriculum chose) and per kind of step: the curriculum's groups present
  in it (``ued.curricula.Curriculum.groups``; sequential PLR: new / replay / edit, parallel
  ACCEL: new+replay+edit).
  ``flops``: the student's floating-point work per env step from XLA's cost analysis of one
  forward pass and of one forward + backward pass (T = 1, so no loop is under-counted);
  a training step does 1 rollout + ``ppo.epochs`` forward-backward passes per env step, a
  step without a gradient only the rollout. ``achieved_gflops`` = that work over the timed
  steps / their wall time, against ``matmul_gflops``, the float32 matrix-multiply rate
  measured in the same process.
  ``memory``: XLA's buffer sizes of the program, device peak bytes where the backend reports
  them, and the process's peak RSS.
- ``env``: env-only steps per second, random actions, jitted, vmapped, auto-replay, per batch.

Exit codes: 0 every measurement done; 1 some measurement failed (its whole message is
printed); 2 bad arguments or config (or an ``--output`` that cannot be appended to); 130
interrupted (Ctrl-C; the measurements done are in ``--output``).

Sweeps (comma-separated lists; the product is measured): ``--curricula dr,plr,robust_plr,accel``
(default: every registered curriculum; an entry ending in ``.yaml`` is an experiment file used
instead of the main one), ``--num-envs 32,256,1024,4096``, ``--capacity 1000,4000`` (buffer
curricula only), ``--devices 1,2,4`` (on CPU, fake host devices), ``--num-seeds 1,3,5``,
``--seed-mode vmap,sequential`` (``run.seed_mode``; default: the config's, ``auto``).
``--env-envs 32,1024`` sets the env-only batches (``none`` to skip). An override written
``NAME:section.key=value`` applies to curriculum ``NAME`` only (e.g.
``sfl:curriculum.options.refresh_every=5``).

**Seeds.** ``sps_per_seed`` is the student env steps per second of each seed (``sps`` over
``run.num_seeds``), ``all_sps_per_seed`` counts every kind of env step that ran
(``env_steps/*``: SFL's refreshes, PAIRED's builder and antagonist). With ``--num-seeds``
including 1, the run ends with a seed-scaling table: per curriculum, the per-seed throughput
at each seed count and the *ratio*, per-seed throughput at the most seeds over single-seed
throughput (1 = seeds cost nothing extra; 1/S = S seeds cost S single runs), beside DR's.

**Before and after in one run.** ``--compare-ref REV`` checks out git revision ``REV`` of this
repository in a temporary worktree and measures every configuration with that checkout's
``ued`` too, right before this checkout's measurement of it, so both see about the same
machine load; the measuring harness (``ued/host/benchmarking.py``) is this checkout's for both.
Options this checkout adds (``run.seed_mode``, ``run.schedule_seed``) are not passed to the
older code, which always vmaps its seeds. The parent prints the 1-minute load average
before and after. On a shared machine, ``--repeats R`` times the window of ``--updates``
steps R times from the same state (the same work) and keeps the fastest, and
``--interleave`` measures the seed counts of one configuration (and seed mode) in one worker:
every count's program is compiled and warmed up, then each of the R rounds times every
count's window once, so that the seed counts see the same load and their ratio holds while
the load moves (compile and memory figures are then per worker, not per seed count).

To reach replay steps quickly, ``curriculum.options.buffer.min_fill_ratio`` is lowered so replay can
start after two steps (it changes when replay starts, not what a step costs; recorded as
``bench_min_fill_ratio``); ``--keep-min-fill`` keeps the config's value.

Example (the standard maze, all curricula, 5 timed steps each):

    python scripts/benchmark.py experiments/maze_dr.yaml --updates 5 --output bench.jsonl
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARK = "BENCH_RESULT "


# --- the worker process (measurements in ued.host.benchmarking) -----------------------------------


def load_harness():
    """This checkout's ``ued/host/benchmarking.py``, loaded by path: with ``--compare-ref`` the
    ``ued`` package it measures is the older checkout's, the harness is the same."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "ued_bench_harness", ROOT / "ued" / "host" / "benchmarking.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def worker(spec: dict) -> None:
    # The measured checkout's ued (this one, or --compare-ref's), whichever `pip install -e`
    # points at.
    sys.path.insert(0, spec.get("code_root") or str(ROOT))
    import jax

    harness = load_harness()
    measure = {
        "env": harness.measure_env,
        "train": harness.measure_train,
        "scaling": harness.measure_scaling,
    }[spec["kind"]]
    out = measure(spec)
    device = jax.devices()[0]
    machine = {
        "backend": jax.default_backend(),
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "jax_version": jax.__version__,
        "load_average": os.getloadavg()[0],
    }
    for result in out.get("results", [out]):
        result.update(machine)
    print(MARK + json.dumps(out), flush=True)


# --- orchestration (the parent process never starts JAX) -------------------------------------
# The sweep (ued/host/benchmark_sweep.py) and the tables (ued/host/benchmark_report.py) are imported
# where they are used, once main has put this checkout first on the path: never in a worker,
# whose ued may be an older checkout's.


def run_worker(spec: dict, timeout: float, root: Path = ROOT) -> dict:
    """One measurement in a fresh process: this checkout's harness on the ``ued`` of
    checkout ``root``."""
    env = dict(os.environ)
    devices = spec.get("devices", 1)
    if devices > 1:  # fake host devices; harmless for GPU/TPU backends
        flag = f"--xla_force_host_platform_device_count={devices}"
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flag).strip()
    env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [env.get("PYTHONPATH")])])
    spec = {**spec, "code_root": str(root)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(
            cmd, env=env, cwd=root, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s"}
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK) :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": " | ".join(tail) or f"exit status {proc.returncode}"}


def ref_checkout(rev: str, where: Path) -> Path:
    """A detached worktree of revision ``rev`` of this repository at ``where``."""
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev],
        check=True,
        capture_output=True,
        text=True,
    )
    return where


def ref_spec(spec: dict, ref_root: Path) -> dict:
    """``spec`` for the older checkout: its own copy of the experiment file, and without
    the options this checkout adds."""
    path = Path(spec["experiment"]).resolve()
    if path.is_relative_to(ROOT):  # else a file outside the repository: used as it is
        path = ref_root / path.relative_to(ROOT)
    new_keys = ("run.seed_mode=", "run.schedule_seed=")
    overrides = [o for o in spec["overrides"] if not o.startswith(new_keys)]
    return {**spec, "experiment": str(path), "overrides": overrides}


def main(argv: list[str]) -> int:
    if argv[:1] == ["--worker"]:
        worker(json.loads(argv[1]))
        return 0
    # This checkout's ued, whichever checkout `pip install -e` points at.
    sys.path.insert(0, str(ROOT))
    from ued.host.benchmark_sweep import split_list, train_specs

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--curricula", help="comma list; default: every registered curriculum")
    parser.add_argument("--num-envs", help="comma list of ppo.num_envs")
    parser.add_argument("--capacity", help="comma list of curriculum.options.buffer.capacity")
    parser.add_argument("--devices", help="comma list of device counts (run.devices)")
    parser.add_argument("--num-seeds", help="comma list of run.num_seeds")
    parser.add_argument("--seed-mode", help="comma list of run.seed_mode (vmap,sequential)")
    parser.add_argument("--compare-ref", help="git revision measured too, as 'before'")
    parser.add_argument(
        "--interleave",
        action="store_true",
        help="measure a configuration's seed counts in one process, windows interleaved",
    )
    parser.add_argument("--env-envs", default="1024", help="env-only batch sizes, or none")
    parser.add_argument("--env-steps", type=int, default=256)
    parser.add_argument("--updates", type=int, default=4, help="timed train steps per config")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument(
        "--repeats", type=int, default=1, help="timed windows from the same state; fastest kept"
    )
    parser.add_argument("--no-warm", action="store_true", help="skip the warm-cache compile")
    parser.add_argument("--keep-min-fill", action="store_true")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per measurement")
    parser.add_argument("--output", help="JSONL file to append one line per measurement to")
    positional = [a for a in argv if not a.startswith("-") and "=" in a]
    rest = [a for a in argv if a not in positional]
    experiment = str(ROOT / "experiments" / "maze_dr.yaml")
    if rest and not rest[0].startswith("-"):
        experiment = rest.pop(0)
    args = parser.parse_args(rest)
    if min(args.updates, args.repeats, args.env_steps) < 1 or args.warmup < 0:
        parser.error("--updates, --repeats and --env-steps must be >= 1 and --warmup >= 0")
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        parser.error(f"--timeout must be a number of seconds > 0, got {args.timeout}")
    from ued.config import config as config_lib

    try:
        specs = train_specs(args, experiment, positional)
        env_batches = split_list(args.env_envs, int, "env-envs")
    except (config_lib.ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        out = open_log(args.output) if args.output else None
    except OSError as err:
        why = "a FIFO nobody reads" if err.errno == errno.ENXIO else err.strerror or err
        print(f"error: --output {args.output}: {why}", file=sys.stderr)
        return 2
    try:
        with tempfile.TemporaryDirectory(prefix="ued-bench-ref-") as tmp:
            ref_root = None
            if args.compare_ref:
                try:
                    ref_root = ref_checkout(args.compare_ref, Path(tmp) / "ref")
                except subprocess.CalledProcessError as err:
                    message = err.stderr.strip()
                    print(f"error: --compare-ref {args.compare_ref}: {message}", file=sys.stderr)
                    return 2
            try:
                return _measure(args, specs, env_batches, experiment, positional, ref_root, out)
            finally:
                if ref_root is not None:
                    subprocess.run(
                        ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(ref_root)],
                        capture_output=True,
                    )
    except KeyboardInterrupt:
        print("[bench] interrupted; the measurements done are in --output", file=sys.stderr)
        return 130
    except OSError as err:  # --output filled up or went away
        print(f"error: --output {args.output}: cannot write ({err.strerror or err})",
              file=sys.stderr)  # fmt: skip
        return 2
    finally:
        if out:
            out.close()


def open_log(path: str):
    """``--output`` opened for appending before anything is measured: a folder, or a FIFO
    nobody reads (which would block), is an OSError now rather than after an hour."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK | os.O_CLOEXEC
    fd = os.open(path, flags, 0o644)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "a")


def _measure(args, specs, env_batches, experiment, positional, ref_root, out) -> int:
    from ued.host.benchmark_report import (
        fmt,
        print_seed_scaling,
        print_table,
        seed_scaling,
        side_of,
    )
    from ued.host.benchmark_sweep import interleave_groups, split_overrides

    rows, failed_env, measured_ref = [], [], set()
    load_before = os.getloadavg()[0]
    print(f"[bench] load average (1 min) before: {load_before:.2f}", flush=True)

    def emit(record: dict) -> None:
        record["time"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        if out:
            out.write(json.dumps(record) + "\n")
            out.flush()

    def measure_group(group: list[dict], root: Path, side: str, mode: str) -> None:
        """The seed counts of one configuration in one worker, interleaved."""
        first = group[0]
        with tempfile.TemporaryDirectory(prefix="ued-bench-cache-") as cache:
            spec = {
                **{k: first[k] for k in ("experiment", "devices", "warmup", "updates")},
                "kind": "scaling",
                "repeats": first.get("repeats", 1),
                "configs": [g["overrides"] for g in group],
                "cache_dir": cache,
            }
            seeds = [g["summary"]["num_seeds"] for g in group]
            print(f"[bench] {side} ({mode}, seeds {seeds}): {first['summary']}", flush=True)
            out = run_worker(spec, args.timeout, root)
        results = out.get("results") or [{"error": out.get("error", "no result")}] * len(group)
        for member, result in zip(group, results, strict=True):
            record = {"kind": "train", "side": side, "group": mode, **member["summary"]}
            emit({**record, "result": result, "config": member["config"]})
            rows.append(
                {"summary": member["summary"], "result": result, "side": side, "group": mode}
            )
            print_table(rows[-1:], header=False)

    def measure(spec: dict, root: Path, side: str) -> None:
        with tempfile.TemporaryDirectory(prefix="ued-bench-cache-") as cache:
            spec = {**spec, "cache_dir": cache}
            print(f"[bench] {side}: {spec['summary']}", flush=True)
            result = run_worker(spec, args.timeout, root)
            if "error" not in result and not args.no_warm:
                warm = run_worker({**spec, "compile_only": True}, args.timeout, root)
                result["warm"] = warm.get("compile", {"error": warm.get("error")})
        record = {"kind": "train", "side": side, **spec["summary"], "result": result}
        emit({**record, "config": spec["config"]})
        rows.append({"summary": spec["summary"], "result": result, "side": side})
        print_table(rows[-1:], header=False)

    this = "after" if ref_root is not None else "this"
    if args.interleave:
        for key, group in interleave_groups(specs).items():
            mode = key[-1]
            if ref_root is not None:
                old = [ref_spec(g, ref_root) for g in group]
                done = json.dumps([g["overrides"] for g in old])
                if done not in measured_ref:  # the older code vmaps: one group for all modes
                    measured_ref.add(done)
                    old = [{**g, "summary": {**g["summary"], "seed_mode": None}} for g in old]
                    measure_group(old, ref_root, "before", "vmap")
            measure_group(group, ROOT, this, mode)
        specs = []
    for spec in specs:
        if ref_root is not None:
            old = ref_spec(spec, ref_root)
            key = json.dumps(old["overrides"])
            if key not in measured_ref:  # seed modes share one older measurement
                measured_ref.add(key)
                summary = {**old["summary"], "seed_mode": None}
                measure({**old, "summary": summary}, ref_root, "before")
        measure(spec, ROOT, this)
    common, _ = split_overrides(positional)
    for n in env_batches:
        spec = {
            "kind": "env",
            "experiment": str(Path(experiment).resolve()),
            "overrides": common,
            "env_envs": n,
            "env_steps": args.env_steps,
        }
        result = run_worker(spec, args.timeout)
        emit({"kind": "env", "env_envs": n, "env_steps": args.env_steps, "result": result})
        if "error" in result:
            failed_env.append((n, result["error"]))
        sps = result.get("env_sps")
        print(f"env only, {n} envs: {fmt(sps)} steps/s {result.get('error', '')}", flush=True)
    print_table(rows)
    scaling = seed_scaling(rows)
    print_seed_scaling(scaling)
    load_after = os.getloadavg()[0]
    print(f"[bench] load average (1 min) before: {load_before:.2f}, after: {load_after:.2f}")
    emit({"kind": "seed_scaling", "rows": scaling, "load_before": load_before,
          "load_after": load_after})  # fmt: skip
    # A failed measurement is a failure of the command, with its whole message.
    failed = [r["summary"] for r in rows if "error" in r["result"]] + failed_env
    for r in rows:
        if "error" in r["result"]:
            print(f"error: {side_of(r)} {r['summary']}: {r['result']['error']}", file=sys.stderr)
    for n, error in failed_env:
        print(f"error: env only, {n} envs: {error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
