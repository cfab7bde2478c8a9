"""Learning curves of one or several runs.

    python scripts/plot.py OUT [OUT2 ...] [-o DIR] [--metric NAME ...]
    python scripts/plot.py OUT --programs [-o DIR]

Draws ``mean_return``, ``solve_rate`` and ``eval/solve_rate`` (or the given ``--metric``s)
against env steps, one PNG per metric (``/`` in a name becomes ``_``), into DIR (default
``OUT/plots`` for one run, ``plots`` for several). Runs whose configs differ only in
``run.seed``, ``run.dir`` and other bookkeeping keys (options declared ``resume="free"``) are
seeds of one curve: drawn as their mean with a 95% confidence band (Student t). A run of
several seeds in one program (``run.num_seeds``; its rows carry a ``seed`` column) counts as
that many seeds, and may be mixed with single-seed runs of the same config. Needs the
``plot`` extra (``pip install 'ued[plot]'``). Exit codes: 0 done; 2 bad input or no
matplotlib.

``--programs`` draws how a ``programs`` curriculum's archive and specification moved
instead, into ``DIR/programs.png``: one panel per program dimension (the archive's mean with
a +-1 std band, and the specification's current bounds as dotted lines), its descriptor-grid
coverage and best learning potential, and the student's success on the probe set (the
plateau signal), with the widenings (``events.jsonl``) as dashed lines. A run with the model
in the loop (``spec: model``) also gets ``DIR/programs_calibration.png``: each widening's
predicted learning potential (+-1 posterior std) against the one then measured in the slab
it opened, labelled with the bound it moved.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import yaml

from ued.files.safe_io import FileRefused, atomic_output, check_output, open_capped, read_capped

MAX_CONFIG_BYTES = 2**20  # config.yaml (ued.config.config.MAX_EXPERIMENT_BYTES)
NO_CAP = 2**40  # metrics.jsonl and events.jsonl: any size, but regular files only

METRICS = ("mean_return", "solve_rate", "eval/solve_rate")
SEEDS = ("run.seed", "run.num_seeds")


def ignored(key: str) -> bool:
    """Seeds and bookkeeping keys, which do not tell experiments apart."""
    from ued.config.config import Config  # imports JAX: not before the arguments are parsed
    from ued.config.options import resume_policy

    return key in SEEDS or resume_policy(Config, key) == "free"


def config_changes(old: dict, new: dict) -> dict:
    from ued.host.checkpoint import config_changes as changes

    return changes(old, new)


def json_lines(path: Path) -> list[dict]:
    """The JSON objects of a ``.jsonl`` file of a run (a regular file; blank lines skipped);
    ValueError naming the first line that is not a JSON object."""
    rows = []
    stream, _ = open_capped(path, NO_CAP, path.name)
    with stream:
        for number, raw in enumerate(stream, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except (ValueError, RecursionError):
                raise ValueError(f"{path}: line {number} is not JSON") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}: line {number} is not a JSON object")
            rows.append(row)
    return rows


def number(value) -> bool:
    """A plottable value: an int or float (not a bool, string or anything else)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Two-sided 95% Student t quantiles for 1..30 degrees of freedom; 1.96 beyond.
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
       2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
       2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip
FIGSIZE, DPI = (6.0, 4.0), 100  # a 600 x 400 pixel PNG


def read_run(run_dir: Path) -> tuple[dict, list[dict]]:
    """The run's config (as a dict) and its metric rows."""
    metrics = run_dir / "metrics.jsonl"
    if not metrics.exists():
        raise FileNotFoundError(f"{metrics}: no such file (is {run_dir} a run folder?)")
    config_path = run_dir / "config.yaml"
    try:
        text = read_capped(config_path, MAX_CONFIG_BYTES, "config") if config_path.exists() else b""
        config = yaml.safe_load(text.decode("utf-8", errors="replace"))
    except (yaml.YAMLError, RecursionError) as err:
        why = str(err).splitlines()[0] if str(err) else "nested too deeply"
        raise ValueError(f"{config_path}: not a readable config ({why})") from None
    if not isinstance(config or {}, dict):
        raise ValueError(f"{config_path}: not a config (a mapping of sections)")
    return config or {}, json_lines(metrics)


def split_seeds(config: dict, rows: list[dict]) -> list[tuple[dict, list[dict]]]:
    """One (config, rows) per seed: a multi-seed run's rows are split on their ``seed``."""
    seeds = sorted({r["seed"] for r in rows if number(r.get("seed"))})
    if not seeds:
        return [(config, rows)]
    return [(config, [r for r in rows if r.get("seed") == seed]) for seed in seeds]


def series(rows: list[dict], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(env_steps, values) of the rows that have a finite ``metric``."""
    points = sorted(
        (r["env_steps"], r[metric])
        for r in rows
        if number(r.get(metric)) and number(r.get("env_steps"))
    )
    if not points:
        return np.zeros(0), np.zeros(0)
    x, y = np.asarray(points, np.float64).T
    return x, y


def group_runs(configs: list[dict]) -> list[list[int]]:
    """Indices of runs grouped by config, ignoring seeds and bookkeeping keys."""
    groups: list[list[int]] = []
    for i, config in enumerate(configs):
        for group in groups:
            changes = config_changes(configs[group[0]], config)
            if all(ignored(k) for k in changes):
                group.append(i)
                break
        else:
            groups.append([i])
    return groups


def label(groups: list[list[int]], configs: list[dict], dirs: list[Path], g: int) -> str:
    """The keys that tell group ``g`` apart from the others, or its first folder's name."""
    first = configs[groups[g][0]]
    keys = set()
    for other in groups:
        keys |= set(config_changes(first, configs[other[0]]))
    keys = sorted(k for k in keys if not ignored(k))
    flat = {}
    for key in keys:
        node = first
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        flat[key] = node
    text = ", ".join(f"{k}={v}" for k, v in flat.items()) or dirs[groups[g][0]].name
    n = len(groups[g])
    return f"{text} ({n} seeds)" if n > 1 else text


def aggregate(curves: list[tuple[np.ndarray, np.ndarray]]):
    """Mean and 95% band of several curves on the first one's steps within their overlap."""
    curves = [c for c in curves if c[0].size]
    if not curves:
        return None
    lo = max(c[0][0] for c in curves)
    hi = min(c[0][-1] for c in curves)
    x = curves[0][0][(curves[0][0] >= lo) & (curves[0][0] <= hi)]
    if len(curves) == 1 or not x.size:
        return curves[0][0], curves[0][1], None
    ys = np.stack([np.interp(x, cx, cy) for cx, cy in curves])
    n = len(curves)
    t = T95[n - 2] if n - 1 <= len(T95) else 1.96
    half = t * ys.std(axis=0, ddof=1) / np.sqrt(n)
    mean = ys.mean(axis=0)
    return x, mean, (mean - half, mean + half)


def plot(run_dirs: list[Path], out_dir: Path, metrics=METRICS) -> list[Path]:
    """Writes one PNG per metric; returns their paths."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise RuntimeError("plotting needs matplotlib: pip install 'ued[plot]'") from err
    runs, dirs = [], []
    for run_dir in run_dirs:
        for run in split_seeds(*read_run(run_dir)):
            runs.append(run)
            dirs.append(run_dir)
    run_dirs = dirs
    configs = [c for c, _ in runs]
    groups = group_runs(configs)
    make_folder(out_dir)
    for metric in metrics:  # every output is checked before the first is drawn
        check_output(out_dir / f"{metric.replace('/', '_')}.png", "plot")
    written = []
    for metric in metrics:
        fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
        for g, members in enumerate(groups):
            result = aggregate([series(runs[i][1], metric) for i in members])
            if result is None:
                continue
            x, mean, band = result
            line = ax.plot(x, mean, label=label(groups, configs, run_dirs, g))[0]
            if band is not None:
                ax.fill_between(x, band[0], band[1], color=line.get_color(), alpha=0.2)
        ax.set_xlabel("env steps")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, f"no {metric} logged", ha="center", transform=ax.transAxes)
        path = out_dir / f"{metric.replace('/', '_')}.png"
        with atomic_output(path, "plot") as tmp:
            fig.savefig(tmp, dpi=DPI, format="png")
        plt.close(fig)
        written.append(path)
    return written


def read_events(run_dir: Path, seed) -> list[dict]:
    """The run's events (``events.jsonl``) of one seed."""
    events = run_dir / "events.jsonl"
    if not events.exists():
        return []
    return [
        e for e in json_lines(events) if e.get("seed", 0) in (0, seed) and number(e.get("updates"))
    ]


def calibration(rows: list[dict], events: list[dict]) -> list[dict]:
    """Each widening of a model-in-the-loop run: its prediction (the row of the widening),
    the learning potential measured in its slab (the last row before the next widening's,
    whose chunk mixes two slabs) and the bound it moved (from the events)."""
    moves = [e["event"][len("widen_") :] for e in events if e["event"].startswith("widen_")]
    out: list[dict] = []
    for row in rows:
        if row.get("programs/spec_predicted") is not None:
            out.append({"predicted": row["programs/spec_predicted"],
                        "std": row.get("programs/spec_predicted_std") or 0.0,
                        "measured": None, "env_steps": row.get("env_steps")})  # fmt: skip
        elif out and row.get("programs/spec_measured") is not None:
            out[-1]["measured"] = row["programs/spec_measured"]
    for item, move in zip(out, moves, strict=False):
        item["bound"] = move
    return out


def plot_programs(run_dir: Path, out_dir: Path) -> list[Path]:
    """The archive's and the specification's movement (see the module docstring); the first
    seed's. Returns the PNGs written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config, rows = read_run(run_dir)
    rows = split_seeds(config, rows)[0][1]
    keys = {k for r in rows for k in r}
    dims = sorted(
        k[len("programs/") : -len("_mean")]
        for k in keys
        if k.startswith("programs/") and k.endswith("_mean") and f"{k[:-5]}_std" in keys
    )
    if not dims:
        raise ValueError(f"{run_dir}: no programs/<dim>_mean metrics (not a programs run?)")
    seed = rows[0].get("seed", 0) if rows else 0
    events = read_events(run_dir, seed)
    widen = []
    first = rows[0] if rows else {}
    if number(first.get("updates")) and number(first.get("env_steps")) and first["updates"]:
        per_update = first["env_steps"] / first["updates"]
        widen = [e["updates"] * per_update for e in events if e.get("event") == "widen"]
    panels = [*dims, "coverage", "best_lp"]
    if "programs/probe_success" in keys:
        panels.append("probe_success")
    cols = 3
    fig, axes = plt.subplots(
        -(-len(panels) // cols), cols, figsize=(4.0 * cols, 2.6 * -(-len(panels) // cols)),
        dpi=DPI, squeeze=False,
    )  # fmt: skip
    for ax, name in zip(axes.flat, panels, strict=False):
        key = f"programs/{name}" if name not in dims else f"programs/{name}_mean"
        x, y = series(rows, key)
        ax.plot(x, y, marker="." if name == "probe_success" else None)
        if name in dims:
            _, sd = series(rows, f"programs/{name}_std")
            if sd.size == y.size:
                ax.fill_between(x, y - sd, y + sd, alpha=0.2)
            for side in ("low", "high"):
                bx, by = series(rows, f"programs/bound_{name}_{side}")
                if by.size:
                    ax.step(bx, by, where="post", color="k", linestyle=":", linewidth=0.9)
        for at in widen:
            ax.axvline(at, color="k", linestyle="--", linewidth=0.8)
        title = {"probe_success": "probe success (plateau signal)"}.get(name, name)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.supxlabel(
        "env steps (dashed: the specification widens; dotted: its current bounds)", fontsize=9
    )
    fig.tight_layout()
    make_folder(out_dir)
    path = out_dir / "programs.png"
    with atomic_output(path, "plot") as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    plt.close(fig)
    written = [path]
    pairs = calibration(rows, events)
    if "programs/spec_measured" in keys:
        fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
        done = [p for p in pairs if p["measured"] is not None]
        for p in done:
            ax.errorbar(p["predicted"], p["measured"], xerr=p["std"], fmt="o", capsize=3)
            ax.annotate(p.get("bound", ""), (p["predicted"], p["measured"]), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")  # fmt: skip
        values = [v for p in done for v in (p["predicted"], p["measured"])]
        if values:
            lo, hi = min(values + [0.0]), max(values)
            ax.plot([lo, hi], [lo, hi], color="k", linewidth=0.8, linestyle="--")
        else:
            ax.text(0.5, 0.5, "no widening measured yet", ha="center", transform=ax.transAxes)
        ax.set_xlabel("predicted learning potential of the opened slab (+-1 std)")
        ax.set_ylabel("measured there until the next widening")
        ax.set_title(f"the model in the loop: {len(done)} of {len(pairs)} widenings measured",
                     fontsize=9)  # fmt: skip
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / "programs_calibration.png"
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
        written.append(path)
    return written


def make_folder(out_dir: Path) -> None:
    """The output folder, made if missing; a FileRefused when it is something else."""
    for part in (out_dir, *out_dir.parents):
        if part.exists() and not part.is_dir():
            where = "is" if part == out_dir else f"is under {part}, which is"
            raise FileRefused(f"-o {out_dir} {where} not a folder; name a folder")
        if part.is_dir():
            break
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise FileRefused(f"-o {out_dir}: cannot make the folder ({err.strerror})") from None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders")
    parser.add_argument("-o", "--output", type=Path, help="folder for the PNGs")
    parser.add_argument("--metric", action="append", help="metric to plot (repeatable)")
    parser.add_argument(
        "--programs", action="store_true", help="how a programs run's archive moved"
    )
    args = parser.parse_args(argv)
    out_dir = args.output or (args.runs[0] / "plots" if len(args.runs) == 1 else Path("plots"))
    try:
        if args.programs:
            written = plot_programs(args.runs[0], out_dir)
        else:
            written = plot(args.runs, out_dir, tuple(args.metric or METRICS))
    except (RuntimeError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(f"[ued] wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
