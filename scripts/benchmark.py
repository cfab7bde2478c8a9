"""Benchmark the train step: compile time, steps per second, FLOP rate, memory, env speed.

    python scripts/benchmark.py [EXPERIMENT.yaml] [section.key=value ...] [options]

Every measurement runs in a fresh subprocess (so compile times are honest and peak memory is
per configuration) and prints one JSON line to ``--output``:

- ``train``: one configuration of the train step. ``compile``: trace + lower and XLA compile
  seconds of the run's chunk program (``run.chunk_updates`` steps, as ``ued.train`` builds
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
curricula only), ``--devices 1,2,4`` (on CPU, fake host devices), ``--num-seeds 1,2``.
``--env-envs 32,1024`` sets the env-only batches (``none`` to skip).

To reach replay steps quickly, ``curriculum.options.buffer.min_fill_ratio`` is lowered so replay can
start after two steps (it changes when replay starts, not what a step costs; recorded as
``bench_min_fill_ratio``); ``--keep-min-fill`` keeps the config's value.

Example (the standard maze, all curricula, 5 timed steps each):

    python scripts/benchmark.py experiments/maze_dr.yaml --updates 5 --output bench.jsonl
"""

from __future__ import annotations

import argparse
import errno
import itertools
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


# --- the worker process (measurements in ued.benchmarking) -----------------------------------


def worker(spec: dict) -> None:
    import jax

    from ued.benchmarking import measure_env, measure_train

    out = measure_env(spec) if spec["kind"] == "env" else measure_train(spec)
    device = jax.devices()[0]
    out.update(
        backend=jax.default_backend(),
        device_kind=device.device_kind,
        device_count=jax.device_count(),
        jax_version=jax.__version__,
        load_average=os.getloadavg()[0],
    )
    print(MARK + json.dumps(out), flush=True)


# --- orchestration (the parent process never starts JAX) -------------------------------------


def run_worker(spec: dict, timeout: float) -> dict:
    env = dict(os.environ)
    devices = spec.get("devices", 1)
    if devices > 1:  # fake host devices; harmless for GPU/TPU backends
        flag = f"--xla_force_host_platform_device_count={devices}"
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " " + flag).strip()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s"}
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            return json.loads(line[len(MARK) :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": " | ".join(tail) or f"exit status {proc.returncode}"}


def split_list(text: str | None, cast=str, name: str = "") -> list:
    """A comma-separated option as a list; a ValueError naming the option for a bad entry."""
    if text is None or text.lower() == "none":
        return []
    out = []
    for x in (x for x in text.split(",") if x):
        try:
            out.append(cast(x))
        except ValueError:
            kind = "an integer" if cast is int else f"a {cast.__name__}"
            raise ValueError(f"--{name} {text!r}: {x!r} is not {kind}") from None
        if cast is int and out[-1] < 1:
            raise ValueError(f"--{name} {text!r}: every entry must be >= 1")
    return out


def train_specs(args, experiment: str, overrides: list[str]) -> list[dict]:
    from ued import config as config_lib
    from ued.curricula import CURRICULA, parse_options

    curricula = split_list(args.curricula) or sorted(CURRICULA)
    unknown = [c for c in curricula if not c.endswith(".yaml") and c not in CURRICULA]
    if unknown:
        raise config_lib.ConfigError(
            f"--curricula: unknown curriculum {unknown[0]!r}; one of {sorted(CURRICULA)} or "
            "an experiment .yaml file"
        )
    envs = split_list(args.num_envs, int, "num-envs") or [None]
    caps = split_list(args.capacity, int, "capacity") or [None]
    devs = split_list(args.devices, int, "devices") or [1]
    seeds = split_list(args.num_seeds, int, "num-seeds") or [None]
    specs, seen = [], set()
    for cur, n, cap, dev, s in itertools.product(curricula, envs, caps, devs, seeds):
        path = cur if cur.endswith(".yaml") else experiment
        extra = []
        if not cur.endswith(".yaml") and config_lib.load(path, overrides).curriculum.name != cur:
            # Another curriculum than the file's: its own default options.
            extra = [f"curriculum.name={cur}", "curriculum.options={}"]
        extra += [f"ppo.num_envs={n}"] * (n is not None) + [f"run.num_seeds={s}"] * (s is not None)
        extra += [f"run.devices={dev}", "eval.levels=none", "run.progress=false"]
        cfg = config_lib.load(path, overrides + extra)
        buffer = getattr(parse_options(cfg.curriculum.name, cfg.curriculum.options), "buffer", None)
        if buffer is None:
            cap = None
        if cap is not None:
            extra.append(f"curriculum.options.buffer.capacity={cap}")
        if not args.keep_min_fill and buffer is not None:
            fill = min(buffer.min_fill_ratio, 2 * cfg.ppo.num_envs / (cap or buffer.capacity))
            extra.append(f"curriculum.options.buffer.min_fill_ratio={fill:.6g}")
        cfg = config_lib.load(path, overrides + extra)  # validates the final config
        buffer = getattr(parse_options(cfg.curriculum.name, cfg.curriculum.options), "buffer", None)
        key = json.dumps(config_lib.to_dict(cfg), sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        specs.append(
            {
                "kind": "train",
                "experiment": path,
                "overrides": overrides + extra,
                "devices": dev,
                "warmup": args.warmup,
                "updates": args.updates,
                "summary": {
                    "curriculum": cfg.curriculum.name,
                    "num_envs": cfg.ppo.num_envs,
                    "num_steps": cfg.ppo.num_steps,
                    "capacity": buffer.capacity if buffer is not None else None,
                    "devices": dev,
                    "num_seeds": cfg.run.num_seeds,
                    "bench_min_fill_ratio": buffer.min_fill_ratio if buffer is not None else None,
                },
                "config": config_lib.to_dict(cfg),
            }
        )
    return specs


def fmt(x, spec=".0f") -> str:
    return "-" if x is None else format(x, spec)


def print_table(rows: list[dict], header: bool = True) -> None:
    head = (
        f"{'curriculum':<11} {'envs':>5} {'cap':>5} {'dev':>3} {'seed':>4} {'compile':>7} "
        f"{'warm':>5} {'sps mix':>8} {'by step kind':<34} {'GFLOP/s':>7} {'%mm':>4} {'peak MB':>8}"
    )
    if header:
        print(head)
    for r in rows:
        s, res = r["summary"], r["result"]
        if "error" in res:
            print(f"{s['curriculum']:<11} {s['num_envs']:>5} error: {res['error'][:100]}")
            continue
        c, w = res["compile"], res.get("warm", {})
        cold = c["trace_seconds"] + c["compile_seconds"]
        warm = w.get("trace_seconds", 0) + w.get("compile_seconds", 0) if w else None
        branches = " ".join(f"{k}={v:.0f}" for k, v in res["sps"].items() if k != "mix")
        mem = res["memory"]
        peak = mem.get("device_peak_bytes", mem.get("host_peak_rss_bytes"))
        print(
            f"{s['curriculum']:<11} {s['num_envs']:>5} {fmt(s['capacity'], 'd'):>5} "
            f"{s['devices']:>3} {s['num_seeds']:>4} {cold:>6.1f}s {fmt(warm, '.1f'):>4}s "
            f"{res['sps']['mix']:>8.0f} {branches:<34} {res['achieved_gflops']:>7.1f} "
            f"{100 * res['fraction_of_matmul']:>3.0f}% {peak / 2**20:>8.0f}"
        )
    if header and rows and "matmul_gflops" in rows[0]["result"]:
        r = rows[0]["result"]
        where = f"{r['backend']} ({r['device_kind']})"
        print(f"float32 matmul: {r['matmul_gflops']:.0f} GFLOP/s on {where}")


def main(argv: list[str]) -> int:
    if argv[:1] == ["--worker"]:
        worker(json.loads(argv[1]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--curricula", help="comma list; default: every registered curriculum")
    parser.add_argument("--num-envs", help="comma list of ppo.num_envs")
    parser.add_argument("--capacity", help="comma list of curriculum.options.buffer.capacity")
    parser.add_argument("--devices", help="comma list of device counts (run.devices)")
    parser.add_argument("--num-seeds", help="comma list of run.num_seeds")
    parser.add_argument("--env-envs", default="1024", help="env-only batch sizes, or none")
    parser.add_argument("--env-steps", type=int, default=256)
    parser.add_argument("--updates", type=int, default=4, help="timed train steps per config")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
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
    if args.updates < 1 or args.warmup < 0 or args.env_steps < 1:
        parser.error("--updates and --env-steps must be >= 1 and --warmup >= 0")
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        parser.error(f"--timeout must be a number of seconds > 0, got {args.timeout}")
    from ued import config as config_lib

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
        return measure_all(args, specs, env_batches, experiment, positional, out)
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


def measure_all(args, specs, env_batches, experiment, positional, out) -> int:
    rows, failed_env = [], []

    def emit(record: dict) -> None:
        record["time"] = time.strftime("%Y-%m-%dT%H:%M:%S")
        if out:
            out.write(json.dumps(record) + "\n")
            out.flush()

    for spec in specs:
        with tempfile.TemporaryDirectory(prefix="ued-bench-cache-") as cache:
            spec["cache_dir"] = cache
            print(f"[bench] {spec['summary']}", flush=True)
            result = run_worker(spec, args.timeout)
            if "error" not in result and not args.no_warm:
                warm = run_worker({**spec, "compile_only": True}, args.timeout)
                result["warm"] = warm.get("compile", {"error": warm.get("error")})
        record = {"kind": "train", **spec["summary"], "result": result, "config": spec["config"]}
        emit(record)
        rows.append({"summary": spec["summary"], "result": result})
        print_table(rows[-1:], header=False)
    for n in env_batches:
        spec = {
            "kind": "env",
            "experiment": experiment,
            "overrides": positional,
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
    # A failed measurement is a failure of the command, with its whole message.
    failed = [r["summary"] for r in rows if "error" in r["result"]] + failed_env
    for r in rows:
        if "error" in r["result"]:
            print(f"error: {r['summary']}: {r['result']['error']}", file=sys.stderr)
    for n, error in failed_env:
        print(f"error: env only, {n} envs: {error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
