"""Checkpoints and resume on the toy family: exact continuation, refusals, damage, NaN."""

import json
import shutil

import jax
import numpy as np
import pytest
import yaml
from PIL import Image

from tests.toy_family import toy_config
from ued.config import config as config_lib
from ued.config.config import ConfigError
from ued.curricula import options_of
from ued.host.checkpoint import Checkpointer, CheckpointError, check_compatible
from ued.host.chunk_records import NonFiniteError, check_finite
from ued.host.logging import make_logger
from ued.host.train import train
from ued.step.experiment import build, nonfinite_flags

STEPS = 4 * 8  # env steps per update
TOY = toy_config(
    curriculum={"name": "plr", "options": {"buffer": {"capacity": 16, "replay_prob": 0.5}}},
    ppo={"epochs": 1, "lr": 3e-3},
    eval={"levels": "none"},
    run={
        "total_env_steps": 6 * STEPS,
        "chunk_updates": 4,
        "checkpoint_every": 2,
        "keep_checkpoints": 3,
    },
)


def toy_cfg(run_dir, **run):
    return config_lib.replace(TOY, run={"dir": str(run_dir), **run})


def steps_of(directory):
    with Checkpointer(directory, background=False) as ckpt:
        return ckpt.steps


def updates_logged(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["updates"] for r in rows if "sps" in r]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A: 6 updates straight. B: 3 updates, then resumed for 3 more.

    Chunks are 4 updates and end on checkpoint multiples (2), so A runs 2 + 2 + 2 and B
    2 + 1, then 1 + 2: the chunk boundaries differ, the result must not.
    """
    root = tmp_path_factory.mktemp("ckpt")
    a = train(toy_cfg(root / "a"), verbose=False)
    b_half = train(toy_cfg(root / "b", total_env_steps=3 * STEPS), verbose=False)
    b = train(toy_cfg(root / "b", resume=True), verbose=False)
    return {"root": root, "a": a, "b_half": b_half, "b": b}


def test_resumed_run_equals_uninterrupted_run_bitwise(runs):
    a, b = runs["a"]["state"], runs["b"]["state"]
    assert runs["b"]["resumed_from"] == 3 and int(b.updates) == 6
    assert int(b.curriculum.buffer.size) > 0
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_checkpoints_kept_and_metrics_appended(runs):
    root = runs["root"]
    # A: chunks end on checkpoint multiples; the newest 3 are kept.
    assert steps_of(root / "a" / "checkpoints") == [2, 4, 6]
    assert updates_logged(root / "a") == [2, 4, 6]
    # B: 2, 3 from the first run, then the resumed run appends 4 and 6.
    assert steps_of(root / "b" / "checkpoints") == [3, 4, 6]
    assert updates_logged(root / "b") == [2, 3, 4, 6]
    csv_rows = (root / "b" / "metrics.csv").read_text().splitlines()
    assert len(csv_rows) == 1 + len(updates_logged(root / "b"))
    assert runs["b"]["status"] == "finished"

    # Running env-step totals by kind continue across the resume (restored from the
    # checkpoint), so every row's student count equals its env_steps.
    rows = [json.loads(line) for line in (root / "b" / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "sps" in r]
    assert [r["env_steps/student"] for r in rows] == [r["env_steps"] for r in rows]
    assert all(r["env_steps/all"] == r["env_steps"] for r in rows)  # PLR: student steps only


def test_buffer_gallery_written(runs):
    pictures = sorted((runs["root"] / "a" / "gallery").glob("buffer_*.png"))
    assert [p.name for p in pictures] == ["buffer_00000006.png"]
    with Image.open(pictures[0]) as image:
        image.verify()
    with Image.open(pictures[0]) as image:
        size = int(runs["a"]["state"].curriculum.buffer.size)
        # toy render is 8 x 48 pixels; cells add 2 * 4 padding and a 14 pixel caption.
        cols = min(size, 8)
        assert image.size == (cols * 56, -(-min(size, 16) // 8) * 30)


def test_fresh_run_refuses_a_folder_with_checkpoints(runs):
    with pytest.raises(ConfigError, match="run.resume=true"):
        train(toy_cfg(runs["root"] / "a"), verbose=False)


@pytest.mark.parametrize(
    ("overrides", "keys"),
    [
        ({"ppo": {"num_envs": 8}, "network": {"mlp_sizes": [32]}}, ["ppo.num_envs", "mlp_sizes"]),
        (
            {"curriculum": {"options": {"buffer": {"capacity": 32}}}},
            ["curriculum.options.buffer.capacity"],
        ),
        ({"env": {"options": {"max_length": 7}}}, ["env.options.max_length"]),
        ({"curriculum": {"name": "robust_plr"}}, ["curriculum.name"]),
    ],
)
def test_resume_refuses_structural_changes(runs, overrides, keys):
    run_dir = runs["root"] / "a"
    before = (run_dir / "config.yaml").read_text()
    cfg = config_lib.replace(toy_cfg(run_dir, resume=True), **overrides)
    with pytest.raises(ConfigError, match="cannot resume") as err:
        train(cfg, verbose=False)
    for key in keys:
        assert key in str(err.value)
    assert (run_dir / "config.yaml").read_text() == before


def test_resume_refuses_a_checkpoint_of_an_older_state_layout(runs, tmp_path):
    # PLR-type states keep this step's buffer slots (env_slots, once part of the Plan); a
    # checkpoint written before they did has one array fewer and is refused, naming it.
    run_dir = tmp_path / "old"
    shutil.copytree(runs["root"] / "a", run_dir)
    shutil.rmtree(run_dir / "checkpoints")
    state = runs["a"]["state"]
    flat = jax.tree_util.tree_flatten_with_path(state)[0]
    old = [leaf for path, leaf in flat if "env_slots" not in jax.tree_util.keystr(path)]
    assert len(old) == len(flat) - 1
    cfg = toy_cfg(run_dir, resume=True)
    with Checkpointer(run_dir / "checkpoints", background=False) as ckpt:
        ckpt.save(int(state.updates), old, cfg)
    with pytest.raises(ConfigError, match="cannot resume") as err:
        train(cfg, verbose=False)
    assert "env_slots" in str(err.value)


def test_harmless_and_soft_changes(runs):
    with Checkpointer(runs["root"] / "a" / "checkpoints", background=False) as ckpt:
        snapshot = ckpt.load_latest()
    base = toy_cfg(runs["root"] / "elsewhere", total_env_steps=100 * STEPS, chunk_updates=7)
    cfg = config_lib.replace(base, eval={"interval": 3}, run={"progress": True})
    exp = build(cfg)
    like = jax.eval_shape(exp.init, jax.random.PRNGKey(0))
    assert check_compatible(snapshot, cfg, like, options_of) == []
    soft = config_lib.replace(cfg, ppo={"lr": 1e-4})
    (message,) = check_compatible(snapshot, soft, like, options_of)
    assert "ppo.lr" in message and "0.003" in message
    annealed = config_lib.replace(cfg, ppo={"anneal_lr": True})
    with pytest.raises(ConfigError, match="ppo.anneal_lr"):
        check_compatible(snapshot, annealed, like, options_of)


def _damage(step_dir, how):
    if how == "garbled":
        for path in (step_dir / "state").rglob("*"):
            if path.is_file() and path.parent.name == "d":
                data = bytearray(path.read_bytes())
                data[len(data) // 2 :] = b"\x5a" * (len(data) - len(data) // 2)
                path.write_bytes(bytes(data))
    elif how == "no_meta":
        shutil.rmtree(step_dir / "meta")
    elif how == "partial":
        shutil.rmtree(step_dir / "state")
    elif how == "tampered":  # readable, but not the bytes that were saved
        meta = step_dir / "meta" / "metadata"
        data = json.loads(meta.read_text())
        data["digest"] = "0" * 64
        meta.write_text(json.dumps(data))


# orbax's reader thread may complain about the garbled file after the restore has failed.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("how", ["garbled", "no_meta", "partial", "tampered"])
def test_damaged_checkpoint_falls_back_to_previous(runs, tmp_path, how):
    shutil.copytree(runs["root"] / "a" / "checkpoints", tmp_path / "checkpoints")
    _damage(tmp_path / "checkpoints" / "6", how)
    ckpt = Checkpointer(tmp_path / "checkpoints")
    with pytest.warns(RuntimeWarning, match="damaged checkpoint"):
        snapshot = ckpt.load_latest()
    assert snapshot.step == 4
    assert (tmp_path / "checkpoints_corrupt" / "6").is_dir()
    assert ckpt.steps == [2, 4]
    with pytest.raises(CheckpointError):
        ckpt.load(99)
    # The moved-aside step number can be saved again (any pytree saves).
    ckpt.save(6, snapshot.leaves, config_lib.from_dict(snapshot.meta["config"]))
    ckpt.close()
    with Checkpointer(tmp_path / "checkpoints") as ckpt:
        assert ckpt.load_latest().step == 6


def test_nonfinite_flags_name_the_quantity():
    params = {"w": np.ones(3, np.float32)}
    losses = {"loss/policy": np.float32(0.1), "grad_norm": np.float32(1.0)}
    assert int(nonfinite_flags(params, losses, True)) == 0
    assert int(nonfinite_flags({"w": np.array([1.0, np.nan])}, losses, True)) == 1
    assert int(nonfinite_flags(params, {**losses, "loss/value": np.inf}, True)) == 2
    assert int(nonfinite_flags(params, {**losses, "grad_norm": np.nan}, True)) == 4
    # Without a gradient step the losses are NaN by convention, not a failure.
    assert int(nonfinite_flags(params, {"loss/policy": np.nan}, False)) == 0
    metrics = {"nonfinite": np.array([0.0, 0.0, 3.0, np.nan]), "loss/value": np.ones(4)}
    with pytest.raises(NonFiniteError, match="params and loss at update 13"):
        check_finite(metrics, 10, 4)
    check_finite({"nonfinite": np.array([0.0, np.nan])}, 0, 2)


def test_nonfinite_run_stops_and_keeps_last_good_checkpoint(runs, tmp_path):
    shutil.copytree(runs["root"] / "a", tmp_path / "run")
    cfg = config_lib.replace(
        toy_cfg(tmp_path / "run", resume=True, total_env_steps=9 * STEPS),
        ppo={"lr": 1e38},  # finite (an infinite one is refused), but the params overflow
    )
    stops = pytest.raises(NonFiniteError, match=r"non-finite params.* at update 8.*checkpoints/6")
    with pytest.warns(RuntimeWarning, match="ppo.lr"), stops:
        train(cfg, verbose=False)
    with Checkpointer(tmp_path / "run" / "checkpoints") as ckpt:
        assert ckpt.steps == [2, 4, 6]
        assert ckpt.load_latest().step == 6
    # config.yaml is the config that trained the kept checkpoint, not the failed one.
    kept = config_lib.from_dict(yaml.safe_load((tmp_path / "run" / "config.yaml").read_text()))
    failed = yaml.safe_load((tmp_path / "run" / "config.failed.yaml").read_text())
    assert kept.ppo.lr == 3e-3 and failed["ppo"]["lr"] == 1e38


def test_optional_loggers_are_validated(tmp_path):
    with pytest.raises(ConfigError, match="run.loggers"):
        config_lib.from_dict({"run": {"loggers": ["mlflow"]}})
    cfg = config_lib.from_dict({"run": {"loggers": ["tensorboard"]}})
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match=r"pip install 'ued\[tensorboard\]'"):
            make_logger(cfg, tmp_path)
    else:
        make_logger(cfg, tmp_path).close()
        assert (tmp_path / "tb").is_dir()
    with pytest.raises(ConfigError, match="needs run.dir"):
        train(config_lib.from_dict({"run": {"resume": True}}), verbose=False)
