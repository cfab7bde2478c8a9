"""``ued.step.parallel`` on 4 fake CPU devices: the same results as 1 device, seeds in one
program equal to separate runs, and batches the devices cannot split refused.

The device count is fixed when JAX starts, so the checks run in a subprocess
(``tests/parallel_check.py``) with ``--xla_force_host_platform_device_count=4``; a failure,
crash or timeout of that subprocess fails these tests.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ued.config import config as config_lib
from ued.step import parallel

ROOT = Path(__file__).resolve().parents[2]
TOL = 1e-5


@pytest.fixture(scope="module")
def checks():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    ).strip()
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "parallel_check.py")],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_four_devices_are_visible(checks):
    assert checks["devices"] == 4


@pytest.mark.parametrize("name", ["dr", "plr", "maze_dr"])
def test_four_devices_match_one(checks, name):
    result = checks[name]
    assert result["mesh"] == {"seed": 1, "env": 4}
    assert result["updates"] == [5, 5]
    for part in ("params", "curriculum", "metrics"):
        assert result[part] < TOL, (part, result)
    # The env batch is split, so the gradient is summed across devices.
    assert result["all_reduce"] > 0


@pytest.mark.parametrize(
    ("name", "mesh"),
    [
        ("seeds", {"seed": 2, "env": 2}),  # DR, vmapped
        ("seeds_plr", {"seed": 2, "env": 2}),  # PLR, vmapped: the shared coin across devices
        ("seeds_sequential", {"seed": 1, "env": 4}),  # PLR, one seed after the other
    ],
)
def test_two_seeds_equal_two_single_seed_runs(checks, name, mesh):
    seeds = checks[name]
    assert seeds["mesh"] == mesh
    assert seeds["metric_shape"] == [2, 3]  # (seeds, updates in the chunk)
    assert seeds["updates"] == [5, 5]
    for i in range(2):
        assert seeds[f"seed{i}_params"] < TOL, seeds
        assert seeds[f"seed{i}_metrics"] < TOL, seeds
    assert seeds["between_seeds"] > 1e-3  # different keys, different trajectories


def test_indivisible_batches_are_refused_naming_the_keys(checks):
    refused = checks["refused"]
    assert "ppo.num_envs=6" in refused["num_envs"] and "4 devices" in refused["num_envs"]
    assert "run.devices" in refused["num_envs"]
    assert "run.num_seeds=3" in refused["seeds"] and "ppo.num_envs=6" in refused["seeds"]


def test_mesh_shape_rules():
    assert parallel.mesh_shape(1, 1, 32) == (1, 1)
    assert parallel.mesh_shape(4, 1, 32) == (1, 4)
    assert parallel.mesh_shape(4, 8, 6) == (4, 1)  # whole seeds per device
    assert parallel.mesh_shape(4, 2, 2) == (2, 2)
    with pytest.raises(config_lib.ConfigError, match="ppo.num_envs=30"):
        parallel.mesh_shape(4, 1, 30)


def test_host_device_count_divides_the_batch():
    assert parallel.host_device_count(32, cores=2) == 2
    assert parallel.host_device_count(32, cores=12) == 8
    assert parallel.host_device_count(30, cores=4) == 3
    assert parallel.host_device_count(7, cores=2) == 1
    for seeds, envs, cores in [(2, 32, 2), (3, 30, 4), (4, 6, 8), (6, 4, 8), (2, 9, 6)]:
        count = parallel.host_device_count(seeds * envs, cores)
        parallel.mesh_shape(count, seeds, envs)  # always a valid split


def test_configure_host_devices_is_a_no_op_once_jax_runs(monkeypatch):
    import jax

    jax.devices()  # backends are up in this process
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    cfg = config_lib.from_dict({"run": {"compile_cache": ""}})
    assert parallel.configure_host_devices(cfg, cores=4) is None
    assert "XLA_FLAGS" not in os.environ


def test_configure_host_devices_splits_the_cpu_before_jax_starts():
    # A fresh process: importing ued must not start JAX, so that 3 usable cores and 6 envs
    # give 3 CPU devices.
    code = (
        "import jax; from ued.config import config; from ued.step import parallel; "
        "cfg = config.from_dict({'ppo': {'num_envs': 6}, 'run': {'compile_cache': ''}}); "
        "print(parallel.configure_host_devices(cfg, cores=3), len(jax.devices('cpu')))"
    )
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.split()[-2:] == ["3", "3"]


def test_single_device_runner_is_the_plain_step():
    import jax
    import jax.numpy as jnp
    import numpy as np

    from tests.toy_family import toy_config
    from ued.step.experiment import build

    cfg = toy_config(
        network={"mlp_sizes": [8]}, ppo={"num_steps": 4, "epochs": 1}, run={"devices": 1}
    )
    exp = build(cfg)
    runner = parallel.make_runner(exp, cfg)
    assert runner.exp.batch_sharding is None
    state = runner.init(runner.seed_keys(0))
    direct = jax.jit(exp.init)(jax.random.PRNGKey(0))
    out, _ = runner.compile(state, 2, donate=False)(state, jnp.int32(2))
    ref, _ = jax.jit(lambda s: exp.run_chunk(s, 2, jnp.int32(2)))(direct)
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(ref), strict=True):
        np.testing.assert_array_equal(a, b)
    assert runner.updates(out) == 2
    with pytest.raises(config_lib.ConfigError, match="run.devices=9"):
        parallel.select_devices(9)


SEEDED_INIT = """
import jax, numpy as np
from ued import load_config
from ued.step import parallel
from ued.step.experiment import build
cfg = load_config("experiments/maze_dr.yaml", ["run.num_seeds=2", "run.devices=1"])
runner = parallel.make_runner(build(cfg), cfg)
state = runner.init(runner.seed_keys(3))
like = parallel.init_shapes(runner.exp, 3)
single = jax.jit(build(cfg).init)(jax.random.PRNGKey(4))
same = all(
    np.array_equal(a[1], b)
    for a, b in zip(
        jax.tree.leaves(state.student.params), jax.tree.leaves(single.student.params), strict=True
    )
)
shapes = all(
    a.shape == b.shape
    for a, b in zip(jax.tree.leaves(like), jax.tree.leaves(state), strict=True)
)
print("RESULT", same, shapes)
"""


def test_seeded_init_on_one_device_finishes():
    # Regression: a vmapped init of the LSTM-256 student (several batched QR decompositions
    # of orthogonal initialisers in one program) deadlocked XLA:CPU in jax 0.10.
    proc = subprocess.run(
        [sys.executable, "-c", SEEDED_INIT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "RESULT True True" in proc.stdout
