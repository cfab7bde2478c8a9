"""Benchmark curricula against each other: train, evaluate and compare a suite.

    python scripts/suite.py experiments/suites/NAME.yaml [--out runs/suites/NAME]
        [--results docs/results/NAME] [--only LABEL,...] [--dry-run] [--report]
        [--bench-updates 2] [--no-plots]

Each (experiment, seed group) of the suite file is one run folder ``OUT/<label>/seeds<a>-<b>``
trained by ``ued.host.train``; rerunning skips finished cells and resumes interrupted ones from
their checkpoints. As soon as a cell is trained, its final checkpoint is evaluated on every
level set and the cell's result is written to ``RESULTS/cells/<label>/seeds<a>-<b>.json``:
commit it. A cell with a committed result is done, on any machine: it is neither trained nor
evaluated again (``ued.suite.results``). ``--only`` runs some experiments' cells (another
machine can take the others). When every cell has a result, ``RESULTS/results.json``,
``RESULTS/table.md`` and ``RESULTS/plots/*.png`` are written from the committed results
alone (statistics: ``ued.suite.report``; figures need the ``suite`` extra); ``--report``
writes them without training anything.

``--dry-run`` trains nothing: it prints the cells, their status and budgets and, from a short
measurement of each experiment with ``scripts/benchmark.py`` (its compile time and steps per
second over ``--bench-updates`` train steps at the cell's seed count), an estimate of the
training wall time left.

Exit codes: 0 done (with ``--only``: those cells done); 2 bad suite file or config, or
``--report`` with cells missing; 4 interrupted by SIGINT/SIGTERM (the cell was checkpointed;
run the same command again to resume).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from ued.config.config import ConfigError
from ued.files.safe_io import FileRefused
from ued.host.run_dir import check_writable_dir
from ued.suite import (
    default_results_dir,
    format_plan,
    load,
    make_cells,
    make_report,
    plan,
    run_suite,
)
from ued.suite import results as cell_results

BENCHMARK = Path(__file__).resolve().parent / "benchmark.py"


def devices(cfg) -> int:
    """The device count training will use: ``run.devices``, else on a CPU one host device
    per core (as ``ued.step.parallel.configure_host_devices`` sets), else 0 (all devices)."""
    import jax

    from ued.step.parallel import host_device_count

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
    parser.add_argument("--out", type=Path, help="run folders (default runs/suites/<name>)")
    parser.add_argument(
        "--results", type=Path, help="cell results and report (default docs/results/<name>)"
    )
    parser.add_argument("--only", default="", help="comma-separated labels to run")
    parser.add_argument("--dry-run", action="store_true", help="list cells and estimate time")
    parser.add_argument(
        "--report", action="store_true", help="only write the report from committed results"
    )
    parser.add_argument("--bench-updates", type=int, default=2, help="timed steps (dry run)")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    try:
        suite = load(args.suite)
        out = args.out or Path("runs") / "suites" / suite.name
        check_writable_dir(out, "--out")
        results_dir = args.results or default_results_dir(suite)
        check_writable_dir(results_dir, "--results")  # before hours of training, not after
        cells = make_cells(suite, out)
    except (ConfigError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    only = tuple(label for label in args.only.split(",") if label)
    if args.dry_run:
        done = ("finished", "committed", "partial")
        todo = [
            c for c in cells
            if cell_results.status(suite, c, results_dir) not in done
            and (not only or c.label in only)
        ]  # fmt: skip
        rows = plan(suite, cells, measure(todo, args.bench_updates), results_dir)
        print(format_plan(suite, rows))
        return 0
    try:
        if args.report:
            missing = [
                c.name for c in cells if cell_results.status(suite, c, results_dir) != "committed"
            ]
            if missing:
                print(f"error: no committed result for {missing}", file=sys.stderr)
                return 2
            result = {
                "status": "finished",
                **make_report(suite, cells, results_dir, not args.no_plots),
            }
        else:
            result = run_suite(
                suite, out, plots=not args.no_plots, results_dir=results_dir, only=only
            )
    except (ConfigError, FileRefused) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # between cells or while evaluating: nothing half-written
        result = {"status": "interrupted"}
    if result["status"] == "incomplete":
        print(f"[suite] the cells asked for are done; others have no result yet in {results_dir}")
        return 0
    if result["status"] != "finished":
        print("[suite] interrupted; run the same command again to resume", file=sys.stderr)
        return 4
    print((results_dir / "table.md").read_text())
    for path in result["files"]:
        print(f"[suite] wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
