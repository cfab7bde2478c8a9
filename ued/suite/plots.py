"""Suite figures (the ``suite`` extra, matplotlib), from the committed cell results: learning
curves with 95% bands (return, solve rate, and the ``levels/*`` analytics of the levels each
curriculum trained on: their walls and shortest paths over time), performance profiles and
per-level solve-rate heatmaps (experiment x level)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from ued.evaluation import stats
from ued.files.safe_io import atomic_output

THRESHOLDS = np.linspace(0.0, 1.0, 51)
DPI = 100


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise RuntimeError("suite plots need matplotlib: pip install 'ued[suite]'") from err
    return plt


def seed_curves(cell_results: list[dict], metric: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """(env steps, values) of ``metric`` for each seed of the cells' committed results."""
    curves = []
    for result in cell_results:
        for seed_curves in result.get("curves", {}).values():
            if metric in seed_curves:
                xs, ys = seed_curves[metric]
                curves.append((np.asarray(xs, np.float64), np.asarray(ys, np.float64)))
    return curves


def band(curves: list[tuple[np.ndarray, np.ndarray]]):
    """Mean over seeds on the first seed's steps, and a 95% Student-t band (None for one)."""
    x = curves[0][0]
    ys = np.stack([np.interp(x, cx, cy) for cx, cy in curves])
    mean = ys.mean(axis=0)
    if len(curves) < 2:
        return x, mean, None
    half = scipy_stats.t.ppf(0.975, len(curves) - 1) * ys.std(axis=0, ddof=1) / np.sqrt(len(ys))
    return x, mean, (mean - half, mean + half)


def learning_curves(committed: list[dict], out: Path) -> list[Path]:
    plt = _pyplot()
    labels = list(dict.fromkeys(r["label"] for r in committed))
    metrics = sorted({m for r in committed for c in r.get("curves", {}).values() for m in c})
    written = []
    for metric in metrics:
        fig, ax = plt.subplots(figsize=(6, 4), dpi=DPI)
        for label in labels:
            curves = seed_curves([r for r in committed if r["label"] == label], metric)
            if not curves:
                continue
            x, mean, interval = band(curves)
            line = ax.plot(x, mean, label=f"{label} ({len(curves)} seeds)")[0]
            if interval is not None:
                ax.fill_between(x, *interval, color=line.get_color(), alpha=0.2)
        if not ax.lines:
            plt.close(fig)
            continue
        ax.set(xlabel="student env steps", ylabel=metric, title=f"{metric} (mean, 95% band)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        written.append(_save(fig, out / f"curve_{metric.replace('/', '_')}.png"))
    return written


def profiles(results: dict[str, Any], out: Path) -> list[Path]:
    """Per set: the fraction of (seed, level) solve rates above each threshold."""
    plt = _pyplot()
    written = []
    for name, res in results["sets"].items():
        fig, ax = plt.subplots(figsize=(6, 4), dpi=DPI)
        for label, raw in res["raw"].items():
            n = len(raw["seeds"])
            profile = stats.performance_profile(raw["solve_rate"], THRESHOLDS)
            ax.plot(THRESHOLDS, profile, label=f"{label} ({n} seeds)")
        ax.set(xlabel="solve rate tau", ylabel="fraction of (seed, level) > tau", title=name)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        written.append(_save(fig, out / f"profile_{name}.png"))
    return written


def heatmaps(results: dict[str, Any], out: Path) -> list[Path]:
    """Per set: solve rate (mean over seeds) of each experiment on each level."""
    plt = _pyplot()
    written = []
    for name, res in results["sets"].items():
        labels = list(res["experiments"])
        grid = np.asarray([res["experiments"][k]["per_level_solve_rate"] for k in labels])
        width = min(24.0, max(6.0, 2.0 + 0.35 * grid.shape[1]))
        fig, ax = plt.subplots(figsize=(width, 1.2 + 0.45 * len(labels)), dpi=DPI)
        image = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
        ax.set_yticks(range(len(labels)), labels)
        if grid.shape[1] <= 40:
            names = [n.split("/")[-1] for n in res["levels"]]
            ax.set_xticks(range(grid.shape[1]), names, rotation=90, fontsize=7)
        ax.set_title(f"{name}: solve rate per level (mean over seeds)")
        fig.colorbar(image, ax=ax, fraction=0.03)
        written.append(_save(fig, out / f"heatmap_{name}.png"))
    return written


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        with atomic_output(path, "suite plot") as tmp:
            fig.savefig(tmp, dpi=DPI, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return path


def write_plots(results: dict, committed: list[dict], out: Path) -> list[Path]:
    out = Path(out)
    return learning_curves(committed, out) + profiles(results, out) + heatmaps(results, out)
