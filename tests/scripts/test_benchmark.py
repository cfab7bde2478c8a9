"""scripts/benchmark.py: the sweep it plans, its FLOP count, and one tiny end-to-end run."""

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ued.benchmarking import student_flops

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "env.options.max_size=5",
    "env.options.view_size=3",
    "env.generator_options.num_walls=3",
    "ppo.num_envs=4",
    "ppo.num_steps=8",
    "ppo.epochs=2",
    "network.lstm_size=16",
    "network.head_size=8",
    "network.conv_channels=4",
    "run.chunk_updates=2",
]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark", ROOT / "scripts" / "benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sweep_args(**kwargs):
    base = dict(
        curricula="dr,plr",
        num_envs="8,16",
        capacity="100,200",
        devices=None,
        num_seeds=None,
        keep_min_fill=False,
        warmup=1,
        updates=2,
    )
    return argparse.Namespace(**{**base, **kwargs})


def test_sweep_is_the_product_without_duplicates(bench):
    specs = bench.train_specs(sweep_args(), str(ROOT / "experiments" / "maze_dr.yaml"), TINY)
    summaries = [s["summary"] for s in specs]
    # DR has no buffer: one spec per num_envs; PLR: one per (num_envs, capacity).
    assert [(s["curriculum"], s["num_envs"], s["capacity"]) for s in summaries] == [
        ("dr", 8, None),
        ("dr", 16, None),
        ("plr", 8, 100),
        ("plr", 8, 200),
        ("plr", 16, 100),
        ("plr", 16, 200),
    ]
    plr = summaries[2]
    assert plr["bench_min_fill_ratio"] == pytest.approx(min(0.5, 2 * 8 / 100))
    assert all("run.devices=1" in s["overrides"] for s in specs)


def test_keep_min_fill_keeps_the_config(bench):
    args = sweep_args(curricula="plr", num_envs="8", capacity=None, keep_min_fill=True)
    specs = bench.train_specs(args, str(ROOT / "experiments" / "maze_dr.yaml"), TINY)
    assert specs[0]["summary"]["bench_min_fill_ratio"] == 0.5


def test_student_flops_match_the_layer_sizes(bench):
    from ued import config as config_lib
    from ued.experiment import build

    exp = build(config_lib.load(ROOT / "experiments" / "maze_dr.yaml", TINY))
    params = exp.init(__import__("jax").random.PRNGKey(0)).student.params
    flops = student_flops(exp, params)
    # conv 3x3x3->4 on a 3x3 view (1 position), LSTM (4 conv + 5 direction + 1 bias) and
    # 16 -> 64, heads 16 -> 8 -> 3 and 16 -> 8 -> 1; 2 flops per multiply-add.
    macs = 27 * 4 + 4 * 5 + 10 * 64 + 16 * 64 + 16 * 8 * 2 + 8 * 3 + 8
    assert macs * 2 <= flops["forward"] <= macs * 2 * 1.5
    assert 2 * flops["forward"] < flops["forward_backward"] < 5 * flops["forward"]
    assert flops["per_env_step"] == pytest.approx(flops["forward"] + 2 * flops["forward_backward"])


def test_end_to_end_tiny_run_writes_jsonl(tmp_path):
    out = tmp_path / "bench.jsonl"
    cmd = [
        sys.executable,
        str(ROOT / "scripts" / "benchmark.py"),
        str(ROOT / "experiments" / "maze_dr.yaml"),
        *TINY,
        "--curricula",
        "dr",
        "--updates",
        "1",
        "--warmup",
        "0",
        "--env-envs",
        "8",
        "--env-steps",
        "16",
        "--output",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    train, env = lines
    assert train["kind"] == "train" and train["curriculum"] == "dr"
    result = train["result"]
    assert "error" not in result, result
    assert result["sps"]["mix"] > 0 and result["matmul_gflops"] > 0
    assert result["compile"]["compile_seconds"] > 0 and result["warm"]["compile_seconds"] > 0
    assert result["memory"]["host_peak_rss_bytes"] > 0
    assert result["backend"] == "cpu" and train["config"]["ppo"]["num_envs"] == 4
    assert env["kind"] == "env" and env["result"]["env_sps"] > 0
    assert "sps mix" in proc.stdout  # the table
