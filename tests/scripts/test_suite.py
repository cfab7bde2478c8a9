"""The suite end to end on a tiny toy-corridor suite (2 experiments x 2 seeds, 4 updates).

The two experiments are DR at two learning rates: same program shapes, so the persistent
compilation cache serves every compilation after the first and the suite takes seconds.
The first run is interrupted by a SIGINT during its second cell; ``scripts/suite.py`` then
finishes it: the first cell is skipped untouched, the second resumes from its checkpoint,
and the report's numbers are checked against values recomputed here from the per-level
evaluations.
"""

import itertools
import json
import signal
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import ued.train
from tests.scripts_loader import load_script
from tests.toy_family import TOY_BASE
from ued.config import ConfigError
from ued.suite import make_cells, plan, run_suite
from ued.suite import spec as suite_spec
from ued.suite.cells import env_steps_by_kind

ROOT = Path(__file__).resolve().parents[2]
STEPS = 4 * 8  # toy env steps per update

SUITE = {
    "name": "tiny",
    "env_steps": 4 * STEPS,
    "seeds": 2,
    "baseline": "dr",
    # No evaluation inside training (the suite evaluates); checkpoints at the end and on SIGINT.
    "overrides": ["run.chunk_updates=1", "eval.levels=none"],
    "experiments": [
        {"label": "dr", "config": "toy_dr.yaml"},
        {"label": "fast", "config": "toy_dr.yaml", "overrides": ["ppo.lr=0.02"]},
    ],
    "evaluation": {
        "episodes": 3,
        "seed": 0,
        "sets": [
            {"name": "named", "kind": "named"},
            {"name": "random", "kind": "random", "generator": "uniform", "count": 5, "seed": 7},
            {"name": "file", "kind": "file", "path": "corridors.txt"},
        ],
    },
}


def write_suite(folder: Path) -> Path:
    experiment = {**TOY_BASE, "curriculum": {"name": "dr"}}
    (folder / "toy_dr.yaml").write_text(yaml.safe_dump(experiment))
    (folder / "corridors.txt").write_text("A....G\n\nG..A\n\n.AG\n")
    path = folder / "tiny.yaml"
    cache = f"run.compile_cache={folder / 'jax_cache'}"
    path.write_text(yaml.safe_dump({**SUITE, "overrides": [*SUITE["overrides"], cache]}))
    return path


class InterruptFast:
    """Wraps ``ued.train.make_logger``: the first metrics row of the fast cell raises SIGINT."""

    def __init__(self, make_logger):
        self.make_logger, self.fired = make_logger, False

    def __call__(self, cfg, run_dir):
        logger = self.make_logger(cfg, run_dir)
        if run_dir is None or run_dir.parent.name != "fast":
            return logger
        log, outer = logger.log, self

        def interrupting_log(record):
            log(record)
            if not outer.fired:
                outer.fired = True
                signal.raise_signal(signal.SIGINT)

        logger.log = interrupting_log
        return logger


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def suite_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("suite")
    path, out = write_suite(folder), folder / "out"
    suite = suite_spec.load(path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ued.train, "make_logger", InterruptFast(ued.train.make_logger))
        first = run_suite(suite, out, verbose=False)
    dr_before = snapshot(out / "dr")
    results_after_interrupt = (out / "results.json").exists()
    fast_checkpoints = sorted(p.name for p in (out / "fast" / "seeds0-1" / "checkpoints").iterdir())
    code = load_script("suite").main([str(path), "--out", str(out)])
    return {
        "suite": suite, "out": out, "first": first, "code": code, "dr_before": dr_before,
        "fast_checkpoints_after_interrupt": fast_checkpoints,
        "results_after_interrupt": results_after_interrupt,
    }  # fmt: skip


def test_interrupted_cell_stops_the_suite_and_keeps_its_checkpoint(suite_run):
    first = suite_run["first"]
    assert first["status"] == "interrupted" and first["results"] is None
    actions = [(c["cell"], c["action"], c["status"]) for c in first["cells"]]
    assert actions == [
        ("dr/seeds0-1", "trained", "finished"),
        ("fast/seeds0-1", "trained", "interrupted"),
    ]
    assert suite_run["fast_checkpoints_after_interrupt"] == ["1"]
    assert not suite_run["results_after_interrupt"]


def test_rerun_skips_finished_cells_and_resumes_the_interrupted_one(suite_run):
    out = suite_run["out"]
    assert suite_run["code"] == 0
    after = {k: v for k, v in snapshot(out / "dr").items() if not k.endswith("suite_eval.json")}
    assert after == suite_run["dr_before"]  # trained once: not a byte of the run changed
    record = json.loads((out / "fast" / "seeds0-1" / "cell.json").read_text())
    assert record["status"] == "finished" and record["updates"] == 4
    assert [a["from"] for a in record["attempts"]] == [0, 1]
    rows = [json.loads(x) for x in (out / "fast/seeds0-1/metrics.jsonl").read_text().splitlines()]
    for seed in (0, 1):
        updates = [r["updates"] for r in rows if r["seed"] == seed and "sps" in r]
        assert updates == [1, 2, 3, 4]  # resumed after update 1, no row twice


def _by_hand(out: Path, label: str, set_name: str, metric: str) -> np.ndarray:
    data = json.loads((out / label / "seeds0-1" / "suite_eval.json").read_text())
    return np.asarray([seed[metric] for seed in data[set_name]["seeds"]])


def test_results_match_statistics_recomputed_by_hand(suite_run):
    out = suite_run["out"]
    results = json.loads((out / "results.json").read_text())
    assert results["baseline"] == "dr" and set(results["sets"]) == {"named", "random", "file"}
    assert len(results["sets"]["random"]["levels"]) == 5
    assert len(results["sets"]["file"]["levels"]) == 3
    for set_name, res in results["sets"].items():
        base = _by_hand(out, "dr", set_name, "solve_rate")
        for label, entry in res["experiments"].items():
            solve = _by_hand(out, label, set_name, "solve_rate")
            ret = _by_hand(out, label, set_name, "mean_return")
            assert solve.shape == (2, len(res["levels"]))
            assert entry["solve_rate"]["mean"] == pytest.approx(solve.mean())
            flat = np.sort(ret.ravel())
            cut = flat.size // 4
            assert entry["return"]["iqm"] == pytest.approx(flat[cut : flat.size - cut].mean())
            low, high = entry["return"]["mean_ci"]
            assert low - 1e-9 <= ret.mean() <= high + 1e-9
            worst = [np.sort(row)[: max(1, round(0.1 * row.size))].mean() for row in solve]
            assert entry["cvar_10"]["mean"] == pytest.approx(np.mean(worst))
            if label == "dr":
                assert "improvement" not in entry
                continue
            pairs = [
                np.mean(
                    [
                        (a > b) + 0.5 * (a == b)
                        for a, b in itertools.product(solve[:, t], base[:, t])
                    ]
                )
                for t in range(solve.shape[1])
            ]
            assert entry["improvement"]["value"] == pytest.approx(np.mean(pairs))
    runs = results["runs"]
    assert runs["dr"]["seeds"] == [0, 1] and runs["dr"]["env_steps"]["student"] == 4 * STEPS
    assert runs["fast"]["wall_seconds"] > 0 and runs["fast"]["steps_per_second"] > 0


def test_table_and_plots_are_written(suite_run):
    out = suite_run["out"]
    results = json.loads((out / "results.json").read_text())
    table = (out / "table.md").read_text()
    for name in ("## named (named, 2 levels)", "## random (random, 5 levels)", "## Cost"):
        assert name in table
    dr_named = results["sets"]["named"]["experiments"]["dr"]["solve_rate"]["mean"]
    assert f"| dr | 2 | {dr_named:.2f} [" in table
    assert "| fast | 2 |" in table and "(baseline)" in table
    names = {p.name for p in (out / "plots").glob("*.png")}
    expected = {"curve_mean_return.png", "curve_solve_rate.png", "profile_random.png",
                "heatmap_named.png", "heatmap_file.png"}  # fmt: skip
    assert expected <= names
    for name in expected:
        image = np.asarray(Image.open(out / "plots" / name).convert("L"), np.float64)
        assert image.shape[0] >= 100 and image.std() > 5  # drawn, not a blank canvas


def test_plan_estimates_what_is_left(tmp_path):
    suite = suite_spec.load(write_suite(tmp_path))
    cells = make_cells(suite, tmp_path / "fresh")
    rows = plan(suite, cells, {"dr": {"sps": 128.0, "compile_seconds": 1.0}})
    assert [r["cell"] for r in rows] == ["dr/seeds0-1", "fast/seeds0-1"]
    assert all(r["status"] == "new" and r["env_steps_left"] == 2 * 4 * STEPS for r in rows)
    assert rows[0]["seconds"] == pytest.approx(2 * 4 * STEPS / 128.0 + 1.0)
    assert "seconds" not in rows[1]  # not measured


def test_suite_file_errors_name_the_key(tmp_path):
    write_suite(tmp_path)

    def check(change, match):
        data = {**json.loads(json.dumps(SUITE)), **change}
        with pytest.raises(ConfigError, match=match):
            suite_spec.from_dict(data, tmp_path)

    check({"budget": 3}, r"unknown key suite\.budget")
    check({"overrides": ["run.seed=3"]}, r"suite\.overrides\[0\]: run\.seed is set by the suite")
    check({"baseline": "sfl"}, "suite.baseline='sfl' is not one of the labels")
    check({"seeds": 0}, r"suite\.seeds must be >= 1")
    check({"evaluation": {"sets": [{"name": "x", "kind": "grid"}]}}, r"sets\[0\]\.kind='grid'")
    check({"evaluation": {"sets": [{"name": "x", "kind": "random"}]}}, "needs generator")
    with pytest.raises(ConfigError, match="experiment fast: unknown config key 'ppo.lrr'"):
        experiment = {"label": "fast", "config": "toy_dr.yaml", "overrides": ["ppo.lrr=1"]}
        bad = {**SUITE, "experiments": [experiment], "baseline": "fast"}
        make_cells(suite_spec.from_dict(bad, tmp_path), tmp_path / "o")


def test_seed_groups_and_env_steps_by_kind():
    base = {**SUITE, "seeds": 5, "seeds_per_run": 2, "first_seed": 10}
    assert suite_spec.from_dict(base).seed_groups() == [(10, 2), (12, 2), (14, 1)]
    row = {"sps": 1.0, "env_steps/student": 64.0, "env_steps/builder": 20.0}
    rows = [
        {"seed": 0, "updates": 2, **row},
        {"seed": 0, "updates": 5, **row, "env_steps/student": 160.0, "env_steps/builder": 32.0},
        {"seed": 1, "updates": 5, **row, "env_steps/student": 160.0, "env_steps/builder": 0.0},
        {"seed": 0, "updates": 5, "env_steps": 160, "eval/solve_rate": 0.5},  # not a chunk row
    ]
    # Running totals: the last chunk row of each seed; seed 0 built 32, seed 1 0: mean 16.
    assert env_steps_by_kind(rows, [0, 1]) == {"builder": 16.0, "student": 160.0}
