"""The suite end to end on a tiny toy-corridor suite (2 experiments x 2 seeds, 4 updates).

The two experiments are DR at two learning rates: same program shapes, so the persistent
compilation cache serves every compilation after the first and the suite takes seconds.
The first run is interrupted by a SIGINT during its second cell; ``scripts/suite.py`` then
finishes it: the first cell, whose result is committed, is neither trained nor evaluated
again, the second resumes from its checkpoint, and the report's numbers are checked against
values recomputed here from the committed per-level results. Then the run folders are
deleted (a new machine): the report is rebuilt from the committed results alone, and a set
added to the suite is the only thing evaluated.
"""

import itertools
import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import ued.host.train
from tests.scripts_loader import load_script
from tests.toy_family import REPLAY_CURRICULUM, TOY_BASE
from ued.config.config import ConfigError
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
            {"name": "named", "kind": "named", "group": "out_of_distribution"},
            {
                "name": "random",
                "kind": "random",
                "generator": "uniform",
                "count": 5,
                "seed": 7,
                "group": "in_distribution",
            },
            {
                "name": "file",
                "kind": "file",
                "path": "corridors.txt",
                "group": "out_of_distribution",
                "env": {"max_steps": 4},
            },
        ],
    },
}


def write_suite(folder: Path, **changes) -> Path:
    experiment = {**TOY_BASE, "curriculum": {"name": "dr"}}
    (folder / "toy_dr.yaml").write_text(yaml.safe_dump(experiment))
    (folder / "corridors.txt").write_text("A....G\n\nG..A\n\n.AG\n")
    path = folder / "tiny.yaml"
    cache = f"run.compile_cache={folder / 'jax_cache'}"
    data = {**SUITE, "overrides": [*SUITE["overrides"], cache], **changes}
    path.write_text(yaml.safe_dump(data))
    return path


class InterruptFast:
    """Wraps ``ued.host.train.make_logger``: the fast cell's first metrics row raises SIGINT."""

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
    path, out, results = write_suite(folder), folder / "out", folder / "results"
    suite = suite_spec.load(path)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ued.host.train, "make_logger", InterruptFast(ued.host.train.make_logger))
        first = run_suite(suite, out, verbose=False, results_dir=results)
    dr_before = snapshot(out / "dr")
    dr_result_before = (results / "cells" / "dr" / "seeds0-1.json").read_bytes()
    results_after_interrupt = (results / "results.json").exists()
    fast_checkpoints = sorted(p.name for p in (out / "fast" / "seeds0-1" / "checkpoints").iterdir())
    argv = [str(path), "--out", str(out), "--results", str(results)]
    code = load_script("suite").main(argv)
    return {
        "suite": suite, "out": out, "results": results, "first": first, "code": code,
        "dr_before": dr_before, "dr_result_before": dr_result_before, "folder": folder,
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
    # The finished cell's result was committed before the second cell started.
    committed = json.loads(suite_run["dr_result_before"])
    assert committed["label"] == "dr" and set(committed["sets"]) == {"named", "random", "file"}


def test_rerun_skips_committed_cells_and_resumes_the_interrupted_one(suite_run):
    out, results = suite_run["out"], suite_run["results"]
    assert suite_run["code"] == 0
    assert snapshot(out / "dr") == suite_run["dr_before"]  # not a byte of the run changed
    assert (results / "cells/dr/seeds0-1.json").read_bytes() == suite_run["dr_result_before"]
    record = json.loads((out / "fast" / "seeds0-1" / "cell.json").read_text())
    assert record["status"] == "finished" and record["updates"] == 4
    assert [a["from"] for a in record["attempts"]] == [0, 1]
    assert record["student_updates"] == [4, 4]  # DR takes a gradient step every update
    assert all(a["machine"]["jax"] for a in record["attempts"])
    rows = [json.loads(x) for x in (out / "fast/seeds0-1/metrics.jsonl").read_text().splitlines()]
    for seed in (0, 1):
        updates = [r["updates"] for r in rows if r["seed"] == seed and "sps" in r]
        assert updates == [1, 2, 3, 4]  # resumed after update 1, no row twice


def _by_hand(results: Path, label: str, set_name: str, metric: str) -> np.ndarray:
    data = json.loads((results / "cells" / label / "seeds0-1.json").read_text())
    return np.asarray([seed[metric] for seed in data["sets"][set_name]["seeds"]])


def test_results_match_statistics_recomputed_by_hand(suite_run):
    results_dir = suite_run["results"]
    results = json.loads((results_dir / "results.json").read_text())
    assert results["baseline"] == "dr" and set(results["sets"]) == {"named", "random", "file"}
    assert results["groups"] == {
        "in_distribution": ["random"], "out_of_distribution": ["named", "file"]
    }  # fmt: skip
    assert len(results["sets"]["random"]["levels"]) == 5
    assert len(results["sets"]["file"]["levels"]) == 3
    assert results["sets"]["file"]["max_steps"] == 4  # the set's own env
    assert results["sets"]["named"]["max_steps"] == 12  # the training env's
    assert results["sets"]["random"]["sampled"] and not results["sets"]["file"]["sampled"]
    for set_name, res in results["sets"].items():
        base = _by_hand(results_dir, "dr", set_name, "solve_rate")
        for label, entry in res["experiments"].items():
            solve = _by_hand(results_dir, label, set_name, "solve_rate")
            again = _by_hand(results_dir, label, set_name, "solve_rate_independent")
            ret = _by_hand(results_dir, label, set_name, "mean_return")
            assert solve.shape == (2, len(res["levels"])) and entry["seeds"] == 2
            np.testing.assert_allclose(res["raw"][label]["solve_rate"], solve, atol=1e-4)
            assert entry["solve_rate"]["mean"] == pytest.approx(solve.mean())
            assert entry["solve_rate"]["seed_means"] == pytest.approx(solve.mean(axis=1))
            flat = np.sort(ret.ravel())
            cut = flat.size // 4
            assert entry["return"]["iqm"] == pytest.approx(flat[cut : flat.size - cut].mean())
            low, high = entry["return"]["mean_ci"]
            assert low - 1e-9 <= ret.mean() <= high + 1e-9
            # CVaR: each seed's worst level by the first play, measured on the second.
            pairs = zip(solve, again, strict=True)
            worst = [b[np.argsort(a, kind="stable")[:1]].mean() for a, b in pairs]
            assert entry["cvar_10"]["mean"] == pytest.approx(np.mean(worst))
            assert entry["cvar_10"]["estimator"] == "independent play"
            if label == "dr":
                assert "improvement" not in entry and "difference" not in entry
                continue
            x, y = solve.mean(axis=1), base.mean(axis=1)
            pairs = np.mean([(a > b) + 0.5 * (a == b) for a, b in itertools.product(x, y)])
            assert entry["improvement"]["value"] == pytest.approx(pairs)
            assert entry["difference"]["value"] == pytest.approx(solve.mean() - base.mean())
    runs = results["runs"]
    assert runs["dr"]["seeds"] == [0, 1] and runs["dr"]["env_steps"]["student"] == 4 * STEPS
    assert runs["dr"]["student_updates"] == [4, 4]
    assert runs["fast"]["wall_seconds"] > 0 and runs["fast"]["steps_per_second"] > 0


def test_table_and_plots_are_written(suite_run):
    results_dir = suite_run["results"]
    results = json.loads((results_dir / "results.json").read_text())
    table = (results_dir / "table.md").read_text()
    assert table.index("## In distribution") < table.index("## Out of distribution")
    for name in ("### named (named, 2 levels, horizon 12", "### random (random, 5 levels",
                 "### file (file, 3 levels, horizon 4; env max_steps 4", "## Cost"):  # fmt: skip
        assert name in table
    assert "Levels each curriculum's training can produce at all: dr ?" in table  # toy family
    dr_named = results["sets"]["named"]["experiments"]["dr"]["solve_rate"]["mean"]
    assert f"| dr | 2 | {dr_named:.2f} [" in table
    assert "| fast | 2 |" in table and "(baseline)" in table
    assert "| dr | 2 |" in table.split("## Cost")[1]  # seeds beside the costs too
    names = {p.name for p in (results_dir / "plots").glob("*.png")}
    expected = {"curve_mean_return.png", "curve_solve_rate.png", "curve_levels_distance.png",
                "profile_random.png", "heatmap_named.png", "heatmap_file.png"}  # fmt: skip
    assert expected <= names
    for name in expected:
        image = np.asarray(Image.open(results_dir / "plots" / name).convert("L"), np.float64)
        assert image.shape[0] >= 100 and image.std() > 5  # drawn, not a blank canvas


def test_a_new_machine_trains_nothing_and_evaluates_only_a_new_set(suite_run, tmp_path):
    # Another machine: the committed results and the suite file, no run folders.
    folder = suite_run["folder"]
    results = tmp_path / "results"
    shutil.copytree(suite_run["results"], results)
    (results / "results.json").unlink()
    out = tmp_path / "out"
    suite = suite_spec.load(folder / "tiny.yaml")
    again = run_suite(suite, out, verbose=False, results_dir=results, plots=False)
    assert [c["action"] for c in again["cells"]] == ["committed", "committed"]
    assert not out.exists()
    before = json.loads((suite_run["results"] / "results.json").read_text())
    assert again["results"]["sets"]["named"]["raw"] == before["sets"]["named"]["raw"]
    assert (
        again["results"]["sets"]["named"]["experiments"] == before["sets"]["named"]["experiments"]
    )
    # A set added to the suite: the checkpoints are on the first machine only, so there it is
    # evaluated from them; the old sets' results are kept as they were.
    (folder / "annotated.txt").write_text("; horizon: 3\nA....G\n\n; horizon: 5\nG..A\n")
    extra = {"name": "short", "kind": "file", "path": "annotated.txt",
             "group": "out_of_distribution", "env": {"max_steps": "annotated"}}  # fmt: skip
    evaluation = {**SUITE["evaluation"], "sets": [*SUITE["evaluation"]["sets"], extra]}
    grown = suite_spec.load(write_suite(folder, evaluation=evaluation))
    try:
        third = run_suite(grown, suite_run["out"], verbose=False, results_dir=results, plots=False)
    finally:
        write_suite(folder)
    assert [c["action"] for c in third["cells"]] == ["evaluated", "evaluated"]
    committed = json.loads((results / "cells/dr/seeds0-1.json").read_text())
    first = json.loads(suite_run["dr_result_before"])
    assert committed["sets"]["named"] == first["sets"]["named"]
    short = committed["sets"]["short"]  # each level at its own annotated horizon
    assert short["max_steps"] == "annotated" and short["horizons"] == [3, 5]
    assert max(short["seeds"][0]["mean_length"]) <= 5 and short["seeds"][0]["mean_length"][0] <= 3
    assert third["results"]["sets"]["short"]["group"] == "out_of_distribution"


def test_plan_estimates_what_is_left(tmp_path):
    suite = suite_spec.load(write_suite(tmp_path))
    cells = make_cells(suite, tmp_path / "fresh")
    rows = plan(suite, cells, {"dr": {"sps": 128.0, "compile_seconds": 1.0}}, tmp_path / "r")
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

    check({"budgets": 3}, r"unknown key suite\.budgets")
    check({"overrides": ["run.seed=3"]}, r"suite\.overrides\[0\]: run\.seed is set by the suite")
    check({"baseline": "sfl"}, "suite.baseline='sfl' is not one of the labels")
    check({"seeds": 0}, r"suite\.seeds must be >= 1")
    check({"evaluation": {"sets": [{"name": "x", "kind": "grid"}]}}, r"sets\[0\]\.kind='grid'")
    check({"evaluation": {"sets": [{"name": "x", "kind": "named", "group": "ood"}]}}, "group='ood'")
    check({"evaluation": {"sets": [{"name": "x", "kind": "random", "group": "in_distribution"}]}},
          "needs generator")  # fmt: skip
    check({"evaluation": {"sets": [{"name": "x", "kind": "named"}]}}, "group=None: every set")
    check({"budget": {"student_updates": 4}}, "give env_steps or budget, not both")
    check({"budget": {"gpu_hours": 4}, "env_steps": 0}, r"suite\.budget must be one of")
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


def test_a_student_updates_budget_trains_until_every_seed_took_that_many(tmp_path):
    # Robust PLR takes no gradient step on new-level updates: to reach 6 gradient updates
    # its cells run more than 6 updates' env steps.
    experiment = {
        **TOY_BASE,
        "curriculum": {"name": "robust_plr", **json.loads(json.dumps(REPLAY_CURRICULUM))},
    }
    (tmp_path / "toy_rplr.yaml").write_text(yaml.safe_dump(experiment))
    (tmp_path / "toy_dr.yaml").write_text(
        yaml.safe_dump({**TOY_BASE, "curriculum": {"name": "dr"}})
    )
    data = {
        **SUITE,
        "budget": {"student_updates": 6},
        "seeds": 2,
        "experiments": [
            {"label": "dr", "config": "toy_dr.yaml"},
            {"label": "rplr", "config": "toy_rplr.yaml"},
        ],
        "overrides": [*SUITE["overrides"], f"run.compile_cache={tmp_path / 'cache'}"],
        "evaluation": {"episodes": 2, "sets": [SUITE["evaluation"]["sets"][0]]},
    }
    data.pop("env_steps")
    suite = suite_spec.from_dict(data, tmp_path)
    assert (suite.budget_kind, suite.budget_value) == ("student_updates", 6)
    out = run_suite(suite, tmp_path / "out", verbose=False, results_dir=tmp_path / "r", plots=False)
    runs = out["results"]["runs"]
    assert runs["dr"]["student_updates"] == [6, 6]
    assert runs["dr"]["env_steps"]["student"] == 6 * STEPS
    assert min(runs["rplr"]["student_updates"]) >= 6
    assert runs["rplr"]["env_steps"]["student"] > 6 * STEPS
    record = json.loads((tmp_path / "out/rplr/seeds0-1/cell.json").read_text())
    assert record["budget"] == {"student_updates": 6} and len(record["attempts"]) >= 2
    assert out["results"]["budget"] == {"student_updates": 6}
    table = (tmp_path / "r" / "table.md").read_text()
    assert "6 student gradient updates per seed" in table


def test_report_only_and_the_readme_block(suite_run, tmp_path, capsys):
    results = suite_run["results"]
    folder = suite_run["folder"]
    script = load_script("suite")
    argv = [str(folder / "tiny.yaml"), "--out", str(tmp_path / "none"), "--results", str(results)]
    assert script.main([*argv, "--report", "--no-plots"]) == 0  # from committed results only
    assert not (tmp_path / "none").exists()
    assert script.main([*argv[:-1], str(tmp_path / "empty"), "--report"]) == 2
    assert "no committed result" in capsys.readouterr().err
    table = load_script("results_table")
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- results:tiny -->\nold\n<!-- /results:tiny -->\nafter\n")
    assert table.main([str(results / "results.json"), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old" not in text and text.endswith("<!-- /results:tiny -->\nafter\n")
    assert "| curriculum | n | random (ID): solve rate | vs dr |" in text
    assert "| fast | 2 |" in text and "python scripts/suite.py experiments/suites/tiny.yaml" in text
    readme.write_text("no markers\n")
    assert table.main([str(results / "results.json"), "--readme", str(readme)]) == 2


def test_shipped_suites_load(tmp_path):
    for path in sorted((ROOT / "experiments" / "suites").glob("*.yaml")):
        suite = suite_spec.load(path)
        cells = make_cells(suite, tmp_path / path.stem)
        assert cells and all(s.group in suite_spec.GROUPS for s in suite.evaluation.sets), path


def test_committed_training_survives_new_options_at_their_defaults(tmp_path):
    from ued.suite.cells import same_training

    suite = suite_spec.load(write_suite(tmp_path))
    current = make_cells(suite, tmp_path / "o")[0].train_config()
    assert current["ppo.lr"] == 1e-4 and current["suite.seeds"] == [0, 1]
    assert "run.dir" not in current and not any(k.startswith("eval.") for k in current)
    older = {k: v for k, v in current.items() if k != "ppo.anneal_lr"}  # before an option
    assert same_training(older, current)  # added since, at its default
    assert not same_training(older, {**current, "ppo.anneal_lr": True})  # added, not default
    assert not same_training({**current, "ppo.lr": 3e-4}, current)  # changed
    assert same_training({**current, "ppo.retired_option": 1}, current)  # removed since
    assert not same_training({**current, "suite.seeds": [0]}, current)
