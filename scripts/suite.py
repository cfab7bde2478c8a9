"""Benchmark curricula against each other: train, evaluate and compare a suite.

    python scripts/suite.py experiments/suites/NAME.yaml [--out results/NAME] [--dry-run]
        [--bench-updates 2] [--no-plots]

Each (experiment, seed group) of the suite file is one run folder ``OUT/<label>/seeds<a>-<b>``
trained by ``ued.train``; rerunning skips finished cells and resumes interrupted ones from
their checkpoints. When every cell has finished, each final checkpoint is evaluated on every
level set and ``OUT/results.json``, ``OUT/table.md`` and ``OUT/plots/*.png`` are written
(statistics: ``ued.suite.report``; figures need the ``suite`` extra).

``--dry-run`` trains nothing: it prints the cells, their status and budgets and, from a short
measurement of each experiment with ``scripts/benchmark.py`` (its compile time and steps per
second over ``--bench-updates`` train steps at the cell's seed count), an estimate of the
training wall time left.

Exit codes: 0 done; 2 bad suite file or config; 4 interrupted by SIGINT/SIGTERM (the cell
was checkpointed; run the same command again to resume).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from ued.config import ConfigError
from ued.run_dir import check_writable_dir
from ued.suite import format_plan, load, make_cells, plan, run_suite

BENCHMARK = Path(__file__).resolve().parent / "benchmark.py"


def devices(cfg) -> int:
    """The device count training will use: ``run.devices``, else on a CPU one host device
    per core (as ``ued.parallel.configure_host_devices`` sets), else 0 (all devices)."""
    import jax

    from ued.parallel import host_device_count

    if cfg.run.devices or jax.default_backend() != "cpu":
        return cfg.run.devices
    return host_device_count(cfg.ppo.num_envs * cfg.run.num_seeds)


def measure(cells, updates: int) -> dict[str, dict[str, float]]:
    """Label -> measured ``sps`` (all seeds of a cell) and ``compile_seconds``, one
    ``scripts/benchmark.py`` run per experiment, on the devices training would use."""
    out = {}
    for cell in cells:
        if cell.label in out:
            continue
        overrides = [o for o in cell.overrides if not o.startswith("run.dir=")]
        overrides += ["--devices", str(devices(cell.config()))]
        with tempfile.TemporaryDirectory() as tmp:
            jsonl = Path(tmp) / "bench.jsonl"
            path = str(cell.config_path)
            cmd = [sys.executable, str(BENCHMARK), path, *overrides, "--curricula", path,
                   "--updates", str(updates), "--warmup", "1", "--env-envs", "none",
                   "--no-warm", "--output", str(jsonl)]  # fmt: skip
            print(f"[suite] measuring {cell.label} ({updates} train steps)", flush=True)
            subprocess.run(cmd, check=False, capture_output=True, text=True)
            lines = jsonl.read_text().splitlines() if jsonl.exists() else []
        result = json.loads(lines[0])["result"] if lines else {"error": "no result"}
        if "error" in result:
            print(f"[suite] {cell.label}: benchmark failed: {result['error']}", file=sys.stderr)
            continue
        compile_info = result["compile"]
        out[cell.label] = {
            "sps": result["sps"]["mix"],
            "compile_seconds": compile_info["trace_seconds"] + compile_info["compile_seconds"],
        }
        print(
            f"[suite] {cell.label}: {out[cell.label]['sps']:.0f} env steps/s "
            f"({cell.num_seeds} seeds together), compile {out[cell.label]['compile_seconds']:.1f}s",
            flush=True,
        )
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", type=Path, help="suite file (YAML)")
    parser.add_argument("--out", type=Path, help="output folder (default results/<name>)")
    parser.add_argument("--dry-run", action="store_true", help="list cells and estimate time")
    parser.add_argument("--bench-updates", type=int, default=2, help="timed steps (dry run)")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    try:
        suite = load(args.suite)
        out = args.out or Path("results") / suite.name
        check_writable_dir(out, "--out")
        cells = make_cells(suite, out)
    except (ConfigError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.dry_run:
        todo = [c for c in cells if c.status() != "finished"]
        print(format_plan(suite, plan(suite, cells, measure(todo, args.bench_updates))))
        return 0
    try:
        result = run_suite(suite, out, plots=not args.no_plots)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # between cells or while evaluating: nothing half-written
        result = {"status": "interrupted"}
    if result["status"] != "finished":
        print("[suite] interrupted; run the same command again to resume", file=sys.stderr)
        return 4
    print((out / "table.md").read_text())
    for path in result["files"]:
        print(f"[suite] wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
