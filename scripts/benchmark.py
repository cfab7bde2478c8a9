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
machine load; the measuring harness (``ued/host/benchmarking.py``) is this checkout's for
both.
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
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MARK = "BENCH_RESULT "


# --- the worker process (measurements in ued.host.benchmarking) ------------------------------


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


def split_overrides(overrides: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Overrides for every configuration, and ``NAME:key=value`` ones by curriculum."""
    common, by_curriculum = [], {}
    for item in overrides:
        head, _, rest = item.partition(":")
        if rest and "=" in rest and "=" not in head and "." not in head:
            by_curriculum.setdefault(head, []).append(rest)
        else:
            common.append(item)
    return common, by_curriculum


def train_specs(args, experiment: str, overrides: list[str]) -> list[dict]:
    from ued.config import config as config_lib
    from ued.curricula import CURRICULA, options_of, parse_options

    overrides, own = split_overrides(overrides)
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
    modes = split_list(getattr(args, "seed_mode", None)) or [None]
    bad = [m for m in modes if m not in (None, "vmap", "sequential", "auto")]
    if bad:
        raise ValueError(f"--seed-mode: {bad[0]!r} is not one of vmap, sequential, auto")
    specs, seen = [], set()
    product = itertools.product(curricula, envs, caps, devs, seeds, modes)
    for cur, n, cap, dev, s, mode in product:
        # Absolute: workers run in the measured checkout's folder.
        path = str(Path(cur if cur.endswith(".yaml") else experiment).resolve())
        extra = []
        name = config_lib.load(path, overrides, options_of).curriculum.name
        if not cur.endswith(".yaml") and name != cur:
            # Another curriculum than the file's: its own default options.
            extra = [f"curriculum.name={cur}", "curriculum.options={}"]
            name = cur
        extra += own.get(name, [])
        extra += [f"ppo.num_envs={n}"] * (n is not None) + [f"run.num_seeds={s}"] * (s is not None)
        extra += [f"run.devices={dev}", "eval.levels=none", "run.progress=false"]
        if mode is not None and (s or 1) > 1:  # one seed has no mode: measured once
            extra.append(f"run.seed_mode={mode}")
        cfg = config_lib.load(path, overrides + extra, options_of)
        buffer = getattr(parse_options(cfg.curriculum.name, cfg.curriculum.options), "buffer", None)
        if buffer is None:
            cap = None
        if cap is not None:
            extra.append(f"curriculum.options.buffer.capacity={cap}")
        if not args.keep_min_fill and buffer is not None:
            fill = min(buffer.min_fill_ratio, 2 * cfg.ppo.num_envs / (cap or buffer.capacity))
            extra.append(f"curriculum.options.buffer.min_fill_ratio={fill:.6g}")
        cfg = config_lib.load(path, overrides + extra, options_of)  # validates the final config
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
                "repeats": getattr(args, "repeats", 1),
                "summary": {
                    "curriculum": cfg.curriculum.name,
                    "num_envs": cfg.ppo.num_envs,
                    "num_steps": cfg.ppo.num_steps,
                    "capacity": buffer.capacity if buffer is not None else None,
                    "devices": dev,
                    "num_seeds": cfg.run.num_seeds,
                    "seed_mode": cfg.run.seed_mode if cfg.run.num_seeds > 1 else None,
                    "bench_min_fill_ratio": buffer.min_fill_ratio if buffer is not None else None,
                },
                "config": config_lib.to_dict(cfg),
            }
        )
    return specs


def fmt(x, spec=".0f") -> str:
    return "-" if x is None else format(x, spec)


def side_of(row: dict) -> str:
    """``before`` (the ``--compare-ref`` checkout), ``after`` (this checkout, compared) or
    ``this`` (this checkout, nothing to compare with)."""
    return row.get("side", "this")


def mode_of(row: dict) -> str:
    """How the seeds ran: ``vmap``/``sequential`` (``-`` for one seed, unless measured in
    a ``--interleave`` group, whose mode it then has)."""
    if row["summary"]["num_seeds"] <= 1:
        return row.get("group") or "-"
    if side_of(row) == "before":
        return "vmap"  # the code before run.seed_mode always vmapped its seeds
    return row["result"].get("seed_mode") or row["summary"].get("seed_mode") or "?"


def print_table(rows: list[dict], header: bool = True) -> None:
    head = (
        f"{'curriculum':<11} {'side':<6} {'envs':>5} {'cap':>5} {'dev':>3} {'seed':>4} "
        f"{'mode':<10} {'compile':>7} {'warm':>5} {'sps mix':>8} {'sps/seed':>8} "
        f"{'by step kind':<34} {'GFLOP/s':>7} {'%mm':>4} {'peak MB':>8}"
    )
    if header:
        print(head)
    for r in rows:
        s, res = r["summary"], r["result"]
        if "error" in res:
            where = f"{s['curriculum']:<11} {side_of(r):<6} {s['num_envs']:>5}"
            print(f"{where} error: {res['error'][:100]}")
            continue
        c, w = res["compile"], res.get("warm", {})
        cold = c["trace_seconds"] + c["compile_seconds"]
        warm = w.get("trace_seconds", 0) + w.get("compile_seconds", 0) if w else None
        branches = " ".join(f"{k}={v:.0f}" for k, v in res["sps"].items() if k != "mix")
        mem = res["memory"]
        peak = mem.get("device_peak_bytes", mem.get("host_peak_rss_bytes"))
        per_seed = res["sps"]["mix"] / max(1, s["num_seeds"])
        print(
            f"{s['curriculum']:<11} {side_of(r):<6} {s['num_envs']:>5} "
            f"{fmt(s['capacity'], 'd'):>5} {s['devices']:>3} {s['num_seeds']:>4} "
            f"{mode_of(r):<10} {cold:>6.1f}s {fmt(warm, '.1f'):>4}s "
            f"{res['sps']['mix']:>8.0f} {per_seed:>8.0f} {branches:<34} "
            f"{res['achieved_gflops']:>7.1f} {100 * res['fraction_of_matmul']:>3.0f}% "
            f"{peak / 2**20:>8.0f}"
        )
    if header and rows and "matmul_gflops" in rows[0]["result"]:
        r = rows[0]["result"]
        where = f"{r['backend']} ({r['device_kind']})"
        rates = [x["result"]["matmul_gflops"] for x in rows if "matmul_gflops" in x["result"]]
        print(
            f"float32 matmul: {np.median(rates):.0f} GFLOP/s on {where} (median of the run's "
            f"{len(rates)} measurements, {min(rates):.0f}-{max(rates):.0f})"
        )


def seed_scaling(rows: list[dict]) -> list[dict]:
    """Per (curriculum, envs, devices, side, mode): per-seed throughput by seed count, and
    the ratio of the most seeds' per-seed throughput to one seed's (needs a 1-seed row).

    ``ratio_mm`` is the same ratio of per-seed throughput divided by the matmul rate each
    measurement took right after its timed steps: on a machine shared with other work it
    corrects for the load that the measurements did not share."""
    groups: dict[tuple, dict[int, tuple[float, float]]] = {}
    single: dict[tuple, tuple[float, float]] = {}
    for r in rows:
        s, res = r["summary"], r["result"]
        if "error" in res:
            continue
        per_seed = res["sps"]["mix"] / max(1, s["num_seeds"])
        figures = (per_seed, per_seed / res.get("matmul_gflops", float("nan")))
        base = (s["curriculum"], s["num_envs"], s["capacity"], s["devices"], side_of(r))
        if s["num_seeds"] == 1:  # the baseline of its --interleave group, or of every mode
            single[(*base, r.get("group"))] = figures
        else:
            groups.setdefault((*base, mode_of(r)), {})[s["num_seeds"]] = figures
    out = []
    for key, by_seeds in groups.items():
        one = single.get(key, single.get((*key[:-1], None)))
        if one is None:
            continue
        top = max(by_seeds)
        out.append(
            {
                "curriculum": key[0],
                "num_envs": key[1],
                "capacity": key[2],
                "devices": key[3],
                "side": key[4],
                "mode": key[5],
                "sps_per_seed": {1: one[0], **{n: v[0] for n, v in sorted(by_seeds.items())}},
                "ratio": by_seeds[top][0] / one[0],
                "ratio_mm": by_seeds[top][1] / one[1],
                "ratio_seeds": top,
            }
        )
    # Relative to DR's ratio of the same side, mode and sizes.
    for name in ("ratio", "ratio_mm"):
        dr = {
            (o["side"], o["mode"], o["num_envs"], o["devices"], o["ratio_seeds"]): o[name]
            for o in out
            if o["curriculum"] == "dr"
        }
        for o in out:
            ref = dr.get((o["side"], o["mode"], o["num_envs"], o["devices"], o["ratio_seeds"]))
            o[name.replace("ratio", "vs_dr")] = o[name] / ref if ref else None
    order = {"before": 0, "after": 1, "this": 1}
    return sorted(out, key=lambda o: (o["num_envs"], o["devices"], order.get(o["side"], 2),
                                      o["mode"], o["curriculum"]))  # fmt: skip


def print_seed_scaling(table: list[dict]) -> None:
    if not table:
        return
    counts = sorted({n for o in table for n in o["sps_per_seed"]})
    cols = " ".join(f"{f'{n} seed' + ('s' if n > 1 else ''):>9}" for n in counts)
    print(
        "\nseed scaling: student env steps/s per seed; ratio = most seeds / 1 seed "
        "(ratio mm: each figure over its measurement's matmul rate)"
    )
    head = f"{'curriculum':<11} {'side':<6} {'mode':<10} {'envs':>5}"
    print(f"{head} {cols} {'ratio':>6} {'vs DR':>6} {'ratio mm':>8} {'vs DR':>6}")
    for o in table:
        vals = " ".join(f"{fmt(o['sps_per_seed'].get(n)):>9}" for n in counts)
        print(
            f"{o['curriculum']:<11} {o['side']:<6} {o['mode']:<10} {o['num_envs']:>5} {vals} "
            f"{o['ratio']:>6.2f} {fmt(o['vs_dr'], '.2f'):>6} {o['ratio_mm']:>8.2f} "
            f"{fmt(o['vs_dr_mm'], '.2f'):>6}"
        )


def interleave_groups(specs: list[dict]) -> dict[tuple, list[dict]]:
    """``--interleave``: the specs grouped by everything but the seed count, per seed mode;
    the 1-seed spec of a configuration opens each of its modes' groups."""
    singles, groups = {}, {}
    for spec in specs:
        s = spec["summary"]
        key = (spec["experiment"], s["curriculum"], s["num_envs"], s["capacity"], s["devices"])
        if s["num_seeds"] == 1:
            singles[key] = spec
        else:
            groups.setdefault((*key, s.get("seed_mode") or "auto"), []).append(spec)
    out = {}
    for key, members in groups.items():
        members = sorted(members, key=lambda g: g["summary"]["num_seeds"])
        out[key] = [singles[key[:-1]], *members] if key[:-1] in singles else members
    for key, spec in singles.items():  # a configuration measured with one seed only
        if not any(k[:-1] == key for k in groups):
            out[(*key, "-")] = [spec]
    return out


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
