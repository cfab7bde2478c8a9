"""Checks of ``ued.step.parallel`` on fake CPU devices; prints one JSON object.

The device count is fixed when JAX starts, so ``tests/ued/test_parallel.py`` runs this file
in a subprocess with ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` and asserts on
its output. Run by hand::

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python tests/parallel_check.py
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from tests.toy_family import (  # noqa: E402  (registers the family)
    REPLAY_CURRICULUM,
    toy_config,
    with_curriculum,
)
from ued.config import config as config_lib  # noqa: E402
from ued.step import parallel  # noqa: E402
from ued.step.experiment import build  # noqa: E402

TOY = toy_config(
    env={"options": {"max_length": 8}},
    ppo={"num_envs": 8, "epochs": 2},
    curriculum=REPLAY_CURRICULUM,
)
MAZE = {
    "env": {
        "family": "maze",
        "options": {"max_size": 5, "view_size": 3, "max_steps": 20},
        "generator": "random_walls",
        "generator_options": {"num_walls": 4},
    },
    "network": {"kind": "conv_lstm", "lstm_size": 16, "head_size": 8, "conv_channels": 4},
    "ppo": {"num_envs": 8, "num_steps": 8, "epochs": 2},
    "run": {"progress": False, "compile_cache": ""},
}
CHUNK = 3


def make_cfg(
    base: config_lib.Config,
    curriculum: str,
    devices: int,
    seeds: int = 1,
    seed: int = 0,
    mode: str = "vmap",
    schedule_seed: int = -1,
):
    cfg = with_curriculum(base, curriculum)
    run = {"devices": devices, "num_seeds": seeds, "seed": seed, "seed_mode": mode}
    return config_lib.replace(cfg, run={**run, "schedule_seed": schedule_seed})


_RUNS: dict = {}


def run(cfg, chunks: int = 2):
    """``chunks`` chunks (the last one shorter) from ``run.seed``; host copies (cached)."""
    key = repr(config_lib.to_dict(cfg))
    if key not in _RUNS:
        _RUNS[key] = _run(cfg, chunks)
    return _RUNS[key]


def _run(cfg, chunks: int):
    runner = parallel.make_runner(build(cfg), cfg)
    state = runner.init(runner.seed_keys(cfg.run.seed))
    compiled = runner.compile(state, CHUNK)
    metrics = []
    for i in range(chunks):
        state, m = compiled(state, jnp.int32(CHUNK - i))
        metrics.append(jax.device_get(m))
    return runner, jax.device_get(state), metrics, compiled.as_text()


def max_diff(a, b) -> float:
    """Largest absolute difference over matching leaves (NaN == NaN)."""
    out = 0.0
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        same = (x == y) | (np.isnan(x) & np.isnan(y))  # also inf == inf
        with np.errstate(invalid="ignore"):
            diff = np.where(same, 0.0, np.abs(x - y))
        out = max(out, float(np.max(diff, initial=0.0)))
    return out


def check_devices(base: config_lib.Config, curriculum: str, seed: int = 7) -> dict:
    _, s1, m1, _ = run(make_cfg(base, curriculum, devices=1, seed=seed))
    runner, s4, m4, text = run(make_cfg(base, curriculum, devices=4, seed=seed))
    return {
        "mesh": dict(runner.mesh.shape),
        "params": max_diff(s1.student.params, s4.student.params),
        "curriculum": max_diff(s1.curriculum, s4.curriculum),
        "metrics": max_diff(m1, m4),
        "updates": [int(s1.updates), int(s4.updates)],
        "all_reduce": len(re.findall(r"all-reduce(?:-start)?\(", text)),
    }


def take_seed(tree, i: int):
    return jax.tree.map(lambda x: x[i], tree)


def check_seeds(base: config_lib.Config, curriculum: str, mode: str = "vmap") -> dict:
    """2 seeds on 4 devices (vmapped: one seed per pair of devices, the schedule's
    collectives across them; sequential: each seed on all 4) against each seed alone on 1
    device with the shared schedule seed."""
    cfg = make_cfg(base, curriculum, devices=4, seeds=2, seed=7, mode=mode)
    runner, both, metrics, _ = run(cfg)
    out = {"mesh": dict(runner.mesh.shape), "metric_shape": list(metrics[0]["mean_return"].shape)}
    for i in range(2):
        single_cfg = make_cfg(base, curriculum, devices=1, seed=7 + i, schedule_seed=7)
        _, single, m, _ = run(single_cfg)
        out[f"seed{i}_params"] = max_diff(take_seed(both.student.params, i), single.student.params)
        out[f"seed{i}_metrics"] = max_diff([take_seed(x, i) for x in metrics], m)
    params = both.student.params
    out["between_seeds"] = max_diff(take_seed(params, 0), take_seed(params, 1))
    out["updates"] = np.asarray(both.updates).tolist()
    return out


def check_refusals() -> dict:
    out = {}
    for name, overrides in {
        "num_envs": {"ppo": {"num_envs": 6}},
        "seeds": {
            "ppo": {"num_envs": 6},
            "run": {"num_seeds": 3, "devices": 4, "seed_mode": "vmap"},
        },
    }.items():
        cfg = config_lib.replace(with_curriculum(TOY, "dr"), **overrides)
        try:
            parallel.make_runner(build(cfg), cfg)
            out[name] = None
        except config_lib.ConfigError as err:
            out[name] = str(err)
    return out


def main() -> None:
    result = {
        "devices": jax.device_count(),
        "dr": check_devices(TOY, "dr"),
        "plr": check_devices(TOY, "plr"),
        "maze_dr": check_devices(config_lib.from_dict(MAZE), "dr"),
        "seeds": check_seeds(TOY, "dr"),
        "seeds_plr": check_seeds(TOY, "plr"),
        "seeds_sequential": check_seeds(TOY, "plr", mode="sequential"),
        "refused": check_refusals(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
