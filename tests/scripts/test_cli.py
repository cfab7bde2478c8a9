"""The command-line tools end to end on a tiny maze run.

One run of ``scripts/train.py`` is interrupted with SIGINT after its first metrics line and
resumed to completion; the evaluate, render and plot tools then work on its folder.
"""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image

from tests.scripts_loader import load_script

ROOT = Path(__file__).resolve().parents[2]
STEPS = 4 * 8  # env steps per update
TINY = [
    "env.options.max_size=7",
    "env.options.max_steps=30",
    "env.generator_options.num_walls=5",
    "ppo.num_envs=4",
    "ppo.num_steps=8",
    "ppo.epochs=1",
    "network.lstm_size=16",
    "network.head_size=16",
    "network.conv_channels=4",
    "eval.interval=1",
    "eval.episodes=2",
    "run.chunk_updates=1",
    "run.progress=false",
]
LEVELS = ">G\n\n>#G\n"  # goal straight ahead; goal behind a wall (never solvable)


def train_command(run_dir, *extra):
    cache = f"run.compile_cache={run_dir.parent / 'jax_cache'}"
    script, experiment = ROOT / "scripts" / "train.py", ROOT / "experiments" / "maze_dr.yaml"
    command = [sys.executable, str(script), str(experiment), *TINY, cache]
    return [*command, f"run.dir={run_dir}", *extra]


def metric_rows(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def wait_for_first_row(proc, path, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"train.py exited ({proc.returncode}) before logging:\n{out}\n{err}")
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"no metrics line within {timeout}s")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Interrupt a long run after its first metrics line, then resume it for 2 updates."""
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    total = f"run.total_env_steps={10_000 * STEPS}"
    proc = subprocess.Popen(
        train_command(run_dir, total), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait_for_first_row(proc, run_dir / "metrics.jsonl", timeout=240)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    stopped = metric_rows(run_dir)[-1]["updates"]
    checkpoints = sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir())
    resume = subprocess.run(
        train_command(run_dir, "run.resume=true", f"run.total_env_steps={(stopped + 2) * STEPS}"),
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    return {
        "dir": run_dir,
        "interrupted": (proc.returncode, out, err, stopped, checkpoints),
        "resumed": resume,
    }


def test_sigint_checkpoints_and_resume_completes(run):
    code, out, err, stopped, checkpoints = run["interrupted"]
    assert code == 4, (out, err)
    assert "interrupted" in err and "Traceback" not in err
    assert checkpoints == [stopped]
    resumed = run["resumed"]
    assert resumed.returncode == 0, (resumed.stdout, resumed.stderr)
    assert f"resuming from {run['dir'] / 'checkpoints' / str(stopped)}" in resumed.stdout
    updates = [r["updates"] for r in metric_rows(run["dir"]) if "sps" in r]
    assert updates == list(range(1, stopped + 3))


def test_train_cli_writes_config_and_metrics(run):
    run_dir = run["dir"]
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["env"]["options"]["max_size"] == 7 and config["ppo"]["num_envs"] == 4
    rows = [r for r in metric_rows(run_dir) if "sps" in r]
    for key in ("env_steps", "updates", "sps", "mean_return", "solve_rate", "eval/cup/solve_rate"):
        assert all(key in row for row in rows), key
    assert rows[0]["env_steps"] == STEPS and 0.0 <= rows[-1]["eval/cup/solve_rate"] <= 1.0
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished"


def test_eval_failure_gallery_is_a_png(run):
    pictures = sorted((run["dir"] / "gallery").glob("failures_*.png"))
    assert pictures  # an untrained agent does not always solve "cup"
    with Image.open(pictures[-1]) as image:
        assert image.format == "PNG"
        assert image.size == (7 * 16 + 8, 7 * 16 + 8 + 14)  # one 7x7 level, padded, captioned


@pytest.fixture(scope="module")
def level_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("levels") / "probe.txt"
    path.write_text(LEVELS)
    return path


def test_evaluate_cli_known_outcomes(run, level_file, tmp_path, capsys):
    evaluate = load_script("evaluate")
    output = tmp_path / "eval.json"
    argv = [str(run["dir"]), "--levels", str(level_file), "--random", "random_walls:20"]
    argv += ["--episodes", "32", "--max-steps", "30", "--batch-envs", "256", "-o", str(output)]
    assert evaluate.main(argv) == 0
    report = json.loads(output.read_text())
    probe = report["sets"]["file:probe.txt"]["levels"]
    assert probe["probe/0"]["solve_rate"] > 0.5  # one forward step solves it
    assert probe["probe/1"]["solve_rate"] == 0.0 and probe["probe/1"]["mean_length"] == 30.0
    random = report["sets"]["random:random_walls"]
    assert random["num_levels"] == 20 and len(random["per_level"]["solve_rate"]) == 20
    summary = random["summary"]
    assert summary["cvar_1"] <= summary["cvar_10"] <= summary["solve_rate"]
    # The unbiased CVaR ranks on one play and measures on another, so it is not bounded by
    # the same-episode CVaR; both are solve rates.
    assert 0.0 <= summary["cvar_10_unbiased"] <= 1.0 and "cvar_1_unbiased" in summary
    assert "cup" in report["sets"]["named"]["levels"]
    assert report["updates"] == run["interrupted"][3] + 2
    table = capsys.readouterr().out
    assert "probe/1" in table and "random:random_walls (20 levels)" in table


def test_evaluate_cli_reports_bad_level_file(run, tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text(">G\n\n>GX\n")
    assert load_script("evaluate").main([str(run["dir"]), "--levels", str(bad)]) == 2
    assert "level 2" in capsys.readouterr().err


def test_render_level_file_png(level_file, tmp_path):
    output = tmp_path / "levels.png"
    argv = [str(level_file), "-o", str(output), "--option", "max_size=7"]
    assert load_script("render").main(argv) == 0
    with Image.open(output) as image:
        assert image.format == "PNG"
        assert image.size == (2 * (7 * 16 + 8), 7 * 16 + 8 + 14)


def test_render_rollout_gif(run, level_file, tmp_path):
    output = tmp_path / "episode.gif"
    argv = [str(run["dir"]), "--rollout", str(level_file), "--index", "1", "-o", str(output)]
    assert load_script("render").main([*argv, "--max-steps", "12", "--fps", "10"]) == 0
    with Image.open(output) as image:
        assert image.format == "GIF" and image.size == (7 * 16, 7 * 16)
        # The start and 12 steps (the goal is walled off); PIL merges repeated frames.
        durations = []
        for frame in range(image.n_frames):
            image.seek(frame)
            durations.append(image.info["duration"])
        assert sum(durations) == 13 * 100


def test_plot_cli_on_a_real_run(run, tmp_path):
    assert load_script("plot").main([str(run["dir"]), "-o", str(tmp_path)]) == 0
    for name in ("mean_return", "solve_rate", "eval_solve_rate"):
        with Image.open(tmp_path / f"{name}.png") as image:
            assert image.format == "PNG" and image.size == (600, 400)


@pytest.fixture()
def fake_runs(tmp_path):
    """Three seeds of one config and one run of another, with hand-written metrics."""
    dirs = []
    for i, (name, seed) in enumerate([("dr", 0), ("dr", 1), ("dr", 2), ("plr", 0)]):
        run_dir = tmp_path / f"run{i}"
        run_dir.mkdir()
        config = {"curriculum": {"name": name}, "run": {"seed": seed, "dir": str(run_dir)}}
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
        rows = [{"env_steps": 100 * t, "updates": t, "mean_return": seed + t, "solve_rate": 0.1}
                for t in range(1, 6)]  # fmt: skip
        rows.append({"env_steps": 500, "updates": 5, "eval/solve_rate": 0.5})
        (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        dirs.append(run_dir)
    return dirs


def test_plot_groups_seeds_with_a_band(fake_runs, tmp_path):
    plot = load_script("plot")
    configs = [plot.read_run(d)[0] for d in fake_runs]
    assert plot.group_runs(configs) == [[0, 1, 2], [3]]
    assert plot.label(plot.group_runs(configs), configs, fake_runs, 1) == "curriculum.name=plr"
    x, mean, (low, high) = plot.aggregate([plot.series(plot.read_run(d)[1], "mean_return")
                                           for d in fake_runs[:3]])  # fmt: skip
    assert list(x) == [100, 200, 300, 400, 500] and list(mean) == [2, 3, 4, 5, 6]
    assert high[0] - mean[0] == pytest.approx(4.303 / 3**0.5)
    out = tmp_path / "plots"
    assert plot.main([*map(str, fake_runs), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "eval_solve_rate.png", "mean_return.png", "solve_rate.png",
    ]  # fmt: skip
    assert plot.main([str(tmp_path / "missing"), "-o", str(out)]) == 2
