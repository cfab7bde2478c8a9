"""scripts/benchmark.py: the sweep it plans (ued/host/benchmark_sweep.py), its FLOP count, its
tables (ued/host/benchmark_report.py) and one tiny end-to-end run."""

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ued.api import load_config
from ued.host.benchmark_report import print_seed_scaling, print_table, seed_scaling
from ued.host.benchmark_sweep import interleave_groups, split_overrides, train_specs
from ued.host.benchmarking import student_flops

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


def test_sweep_is_the_product_without_duplicates():
    specs = train_specs(sweep_args(), str(ROOT / "experiments" / "maze_dr.yaml"), TINY)
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


def test_keep_min_fill_keeps_the_config():
    args = sweep_args(curricula="plr", num_envs="8", capacity=None, keep_min_fill=True)
    specs = train_specs(args, str(ROOT / "experiments" / "maze_dr.yaml"), TINY)
    assert specs[0]["summary"]["bench_min_fill_ratio"] == 0.5


def test_student_flops_match_the_layer_sizes(bench):
    from ued.step.experiment import build

    exp = build(load_config(ROOT / "experiments" / "maze_dr.yaml", TINY))
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
    by_kind = {line["kind"]: line for line in lines}
    assert sorted(by_kind) == ["env", "seed_scaling", "train"], [ln["kind"] for ln in lines]
    train, env = by_kind["train"], by_kind["env"]
    assert train["kind"] == "train" and train["curriculum"] == "dr"
    result = train["result"]
    assert "error" not in result, result
    assert result["sps"]["mix"] > 0 and result["matmul_gflops"] > 0
    assert result["compile"]["compile_seconds"] > 0 and result["warm"]["compile_seconds"] > 0
    assert result["memory"]["host_peak_rss_bytes"] > 0
    assert result["backend"] == "cpu" and train["config"]["ppo"]["num_envs"] == 4
    assert env["kind"] == "env" and env["result"]["env_sps"] > 0
    assert "sps mix" in proc.stdout  # the table


def test_curriculum_overrides_apply_to_their_curriculum_only():
    common, own = split_overrides(
        ["ppo.num_envs=8", "sfl:curriculum.options.refresh_every=5", "env.options={a: 1}"]
    )
    assert common == ["ppo.num_envs=8", "env.options={a: 1}"]
    assert own == {"sfl": ["curriculum.options.refresh_every=5"]}
    args = sweep_args(curricula="dr,sfl", num_envs="8", capacity=None, num_seeds="1,2",
                      seed_mode="vmap,sequential")  # fmt: skip
    overrides = [*TINY, "sfl:curriculum.options.refresh_every=5"]
    specs = train_specs(args, str(ROOT / "experiments" / "maze_dr.yaml"), overrides)
    # One seed is measured once; two seeds once per mode.
    planned = [(s["summary"]["curriculum"], s["summary"]["num_seeds"], s["summary"]["seed_mode"])
               for s in specs]  # fmt: skip
    assert planned == [
        ("dr", 1, None), ("dr", 2, "vmap"), ("dr", 2, "sequential"),
        ("sfl", 1, None), ("sfl", 2, "vmap"), ("sfl", 2, "sequential"),
    ]  # fmt: skip
    for spec in specs:
        sfl = spec["summary"]["curriculum"] == "sfl"
        assert ("curriculum.options.refresh_every=5" in spec["overrides"]) == sfl
        assert spec["config"]["run"]["seed_mode"] == (spec["summary"]["seed_mode"] or "auto")


def test_the_older_checkout_gets_its_own_files_and_no_new_options(bench, tmp_path):
    spec = {
        "experiment": str(ROOT / "experiments" / "maze_dr.yaml"),
        "overrides": ["ppo.num_envs=8", "run.num_seeds=2", "run.seed_mode=vmap"],
    }
    old = bench.ref_spec(spec, tmp_path)
    assert old["experiment"] == str(tmp_path / "experiments" / "maze_dr.yaml")
    assert old["overrides"] == ["ppo.num_envs=8", "run.num_seeds=2"]


def row(curriculum, seeds, sps, side="after", mode="vmap"):
    summary = {"curriculum": curriculum, "num_envs": 32, "capacity": None, "devices": 1,
               "num_seeds": seeds, "seed_mode": mode if seeds > 1 else None}  # fmt: skip
    result = {"sps": {"mix": sps}, "seed_mode": mode if seeds > 1 else None,
              "matmul_gflops": 100.0 if seeds == 1 else 50.0}  # fmt: skip
    return {"summary": summary, "result": result, "side": side}


def test_seed_scaling_ratio_is_per_seed_throughput_at_the_most_seeds_over_one():
    rows = [
        row("dr", 1, 1000.0), row("dr", 3, 1500.0), row("dr", 5, 2000.0),
        row("sfl", 1, 500.0), row("sfl", 5, 2000.0),
        row("dr", 1, 1000.0, side="before"), row("dr", 5, 1000.0, side="before"),
    ]  # fmt: skip
    table = {(o["curriculum"], o["side"]): o for o in seed_scaling(rows)}
    dr, sfl, before = table["dr", "after"], table["sfl", "after"], table["dr", "before"]
    assert dr["sps_per_seed"] == {1: 1000.0, 3: 500.0, 5: 400.0}
    assert dr["ratio"] == pytest.approx(0.4) and dr["vs_dr"] == pytest.approx(1.0)
    assert sfl["ratio"] == pytest.approx(0.8) and sfl["vs_dr"] == pytest.approx(2.0)
    assert before["ratio"] == pytest.approx(0.2) and before["mode"] == "vmap"
    # Over the matmul rate of each measurement: the several-seed ones ran at half the rate.
    assert dr["ratio_mm"] == pytest.approx(0.8) and sfl["vs_dr_mm"] == pytest.approx(2.0)


def test_gpu_script_runs_at_a_tiny_size_on_the_cpu(tmp_path):
    out = tmp_path / "tiny"
    env = {**__import__("os").environ, "TINY": "1", "ENVS": "4", "SEEDS": "1,2",
           "CURRICULA": "dr", "NO_WARM": "1", "UPDATES": "1", "PYTHON": sys.executable}  # fmt: skip
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_benchmark.sh"), str(out)],
        capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [json.loads(line) for line in Path(f"{out}.jsonl").read_text().splitlines()]
    train = [x for x in lines if x["kind"] == "train"]
    assert [(x["curriculum"], x["num_seeds"], x["num_envs"]) for x in train] == [
        ("dr", 1, 4),
        ("dr", 2, 4),
    ]
    assert all("error" not in x["result"] for x in train)
    assert train[1]["result"]["seed_mode"] == "vmap"
    assert "seed scaling" in Path(f"{out}.txt").read_text()


def test_interleave_groups_a_configurations_seed_counts_per_mode():
    args = sweep_args(curricula="dr", num_envs="8", capacity=None, num_seeds="1,3,2",
                      seed_mode="vmap,sequential")  # fmt: skip
    specs = train_specs(args, str(ROOT / "experiments" / "maze_dr.yaml"), TINY)
    groups = interleave_groups(specs)
    counts = [
        (key[-1], [g["summary"]["num_seeds"] for g in group]) for key, group in groups.items()
    ]
    assert counts == [("vmap", [1, 2, 3]), ("sequential", [1, 2, 3])]
    # The 1-seed row of a group is the baseline of that group's ratio.
    rows = [
        row("dr", 1, 1000.0, mode="vmap"),
        row("dr", 3, 600.0, mode="vmap"),
        row("dr", 1, 500.0, mode="sequential"),
        row("dr", 3, 600.0, mode="sequential"),
    ]
    rows[0]["group"], rows[2]["group"] = "vmap", "sequential"
    table = {o["mode"]: o for o in seed_scaling(rows)}
    assert table["vmap"]["ratio"] == pytest.approx(0.2)
    assert table["sequential"]["ratio"] == pytest.approx(0.4)


def measured(curriculum, seeds, sps, capacity=None, mode="vmap", rate=100.0):
    """A row as a worker's result makes it: compile times, branches, memory, matmul rate."""
    by_kind = {"new": sps * 0.8, "replay": sps * 1.5} if capacity else {}
    result = {
        "sps": {"mix": sps, **by_kind},
        "seed_mode": mode if seeds > 1 else None,
        "compile": {"trace_seconds": 1.25, "compile_seconds": 3.5},
        "warm": {"trace_seconds": 0.5, "compile_seconds": 0.25} if seeds == 1 else {},
        "achieved_gflops": 12.34, "fraction_of_matmul": 0.1234, "matmul_gflops": rate,
        "memory": {"device_peak_bytes": 2**30, "host_peak_rss_bytes": 5} if seeds == 1
        else {"host_peak_rss_bytes": 300 * 2**20},
        "backend": "cpu", "device_kind": "cpu",
    }  # fmt: skip
    summary = {**row(curriculum, seeds, sps, mode=mode)["summary"], "capacity": capacity}
    return {"summary": summary, "result": result, "side": "after"}


def test_tables_print_a_line_per_measurement_and_the_seed_scaling(capsys):
    rows = [
        measured("dr", 1, 1000.0),
        measured("dr", 4, 2000.0, rate=50.0),
        measured("plr", 1, 800.0, capacity=100),
        measured("plr", 4, 1600.0, capacity=100, mode="sequential", rate=80.0),
        {**row("sfl", 2, 0.0), "result": {"error": "boom " * 40}},
    ]
    print_table(rows)
    print_seed_scaling(seed_scaling(rows))
    print_seed_scaling([])  # nothing to compare: nothing printed
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "curriculum", "side", "envs", "cap", "dev", "seed", "mode", "compile", "warm", "sps",
        "mix", "sps/seed", "by", "step", "kind", "GFLOP/s", "%mm", "peak", "MB",
    ]  # fmt: skip
    expected = [
        "dr          after     32     -   1    1 -             4.8s  0.8s     1000     1000 "
        f"{'':<34}    12.3  12%     1024",
        "plr         after     32   100   1    4 sequential    4.8s    -s     1600      400 "
        "new=1280 replay=2400                  12.3  12%      300",
        "sfl         after     32 error: " + ("boom " * 20)[:100],
        "float32 matmul: 90 GFLOP/s on cpu (cpu) (median of the run's 4 measurements, 50-100)",
        "",
        "seed scaling: student env steps/s per seed; ratio = most seeds / 1 seed "
        "(ratio mm: each figure over its measurement's matmul rate)",
        "curriculum  side   mode        envs    1 seed   4 seeds  ratio  vs DR ratio mm  vs DR",
        "plr         after  sequential    32       800       400   0.50      -     0.62      -",
        "dr          after  vmap          32      1000       500   0.50   1.00     1.00   1.00",
    ]
    assert [lines[1], lines[4], *lines[5:]] == expected


def test_loading_the_script_imports_nothing_from_ued():
    """A worker loads the script under an older checkout's ``ued`` (``--compare-ref``): the
    sweep and the tables, which that checkout may lack, are imported by the parent only."""
    code = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('benchmark', sys.argv[1])\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ued'))\n"
    )
    script = str(ROOT / "scripts" / "benchmark.py")
    proc = subprocess.run(
        [sys.executable, "-c", code, script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
