"""A generative model's latent space as a program space: the level model trains from the CLI
on a corpus without any scored level, its file is checked by hash, and its decoded levels
are valid by construction (the repair), whatever the logits."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs import level_model as lm
from envs.core import get_family
from envs.maze.latent import codec, make_latent_programs
from tests.scripts_loader import load_script
from ued.api import load_config
from ued.config.config import ConfigError
from ued.curricula import options_of
from ued.host.checkpoint import resume_policy
from ued.step.experiment import build

ROOT = Path(__file__).resolve().parents[2]
HELD_OUT = ROOT / "envs" / "maze" / "levels" / "random_9x9.txt"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny model trained by the CLI on 120 program levels plus three scored levels (the
    first three of the default run's held-out set), which it must drop."""
    folder = tmp_path_factory.mktemp("model")
    corpus = folder / "programs.txt"
    make = load_script("make_levels")
    assert make.main(["maze", "programs", "120", str(corpus), "--env", "max_size=9"]) == 0
    scored = folder / "scored.txt"
    scored.write_text("\n\n".join(HELD_OUT.read_text().split("\n\n")[:4]))  # header + 3 levels
    out = folder / "tiny"
    code = load_script("train_level_model").main([
        "maze", str(corpus), str(scored), "--env", "max_size=9", "--out", str(out),
        "--latent", "4", "--features", "4", "--hidden", "8", "--epochs", "2", "--batch", "32",
        "--samples", "40", "--no-progress",
    ])  # fmt: skip
    assert code == 0
    return out


def test_the_cli_trains_a_model_without_the_scored_levels(tiny_model):
    meta = json.loads((tiny_model / "model.json").read_text())
    report = meta["report"]
    assert report["corpus"]["dropped_scored"] == 3
    assert report["corpus"]["files"] == {"programs.txt": 120, "scored.txt": 0}
    for key in ("held_out_wall_cell_accuracy", "prior_valid_before_repair", "prior_novel",
                "box_valid_after_repair", "held_out_cell_accuracy_baseline_by_file"):  # fmt: skip
        assert key in report, key
    assert report["prior_valid_after_repair"] == report["box_valid_after_repair"] == 1.0
    assert meta["spec"]["height"] == 9 and meta["spec"]["latent_dim"] == 4
    spec, params, _ = lm.load(tiny_model)
    assert spec.channels == (("wall", "bernoulli"), ("agent", "categorical"),
                             ("goal", "categorical"))  # fmt: skip


def test_the_latent_space_decodes_valid_levels_and_checks_the_models_hash(tiny_model):
    env = get_family("maze").make_env(max_size=9)
    digest = lm.model_hash(tiny_model)
    space = make_latent_programs(env, model=str(tiny_model), sha256=digest)
    assert space.names == ("z0", "z1", "z2", "z3") and space.num_stages == 3
    with pytest.raises(ValueError, match="has SHA-256 .* but the config says"):
        make_latent_programs(env, model=str(tiny_model), sha256="0" * 64)
    with pytest.raises(ValueError, match="levels of 9x9; this env's levels are maze 13x13"):
        make_latent_programs(get_family("maze").make_env(), model=str(tiny_model), sha256=digest)
    # A changed model file is a different model.
    (tiny_model / "model.json").write_text((tiny_model / "model.json").read_text() + " ")
    assert lm.model_hash(tiny_model) != digest


def test_the_experiment_names_the_model_and_resume_refuses_another():
    cfg = load_config(ROOT / "experiments" / "maze_latent_programs.yaml")
    options = cfg.curriculum.options
    assert options["program_space"] == "latent"
    assert options["space_options"]["sha256"] == lm.model_hash(options["space_options"]["model"])
    for key in ("sha256", "model"):
        assert resume_policy(cfg, f"curriculum.options.space_options.{key}", options_of) == "refuse"
    bad = load_config(
        ROOT / "experiments" / "maze_latent_programs.yaml",
        ["curriculum.options.space_options.sha256=" + "1" * 64],
    )
    with pytest.raises(ConfigError, match="curriculum.options.space_options: .*SHA-256"):
        build(bad)


def test_repair_makes_every_decoded_level_valid():
    env = get_family("maze").make_env(max_size=9)
    c = codec(env)
    keys = jax.random.split(jax.random.key(0), 64)
    logits = 4 * jax.random.normal(jax.random.key(1), (64, 9, 9, 3))
    walls = logits.at[:16, ..., 0].set(10.0)  # a quarter: every cell a wall
    walls = walls.at[16:32, ..., 1:].set(-10.0)  # and a quarter with no likely agent or goal
    valid = jax.vmap(lambda lv: get_family("maze").is_valid(env, lv))
    repaired = jax.vmap(c.repair)(keys, walls)
    assert bool(valid(repaired).all())
    raw = jax.vmap(c.raw_level)(walls)
    assert not bool(valid(raw)[:16].any())  # unrepaired, walled-in levels are invalid
    # The grid encoding round-trips a valid level.
    grid = c.to_grid(jax.tree.map(lambda x: x[40], repaired))
    again = c.raw_level(jnp.where(grid > 0.5, 10.0, -10.0))
    np.testing.assert_array_equal(np.asarray(again.wall_map), np.asarray(repaired.wall_map[40]))
    np.testing.assert_array_equal(np.asarray(again.goal_pos), np.asarray(repaired.goal_pos[40]))


def test_the_models_hash_ignores_where_orbax_says_it_was_written(tmp_path):
    import shutil

    from envs.level_model import ORBAX_MARKER, model_hash

    model = tmp_path / "model"
    shutil.copytree(Path(__file__).resolve().parents[2] / "envs/maze/models/latent_9x9", model)
    before = model_hash(model)
    (model / "params" / ORBAX_MARKER).write_text("Checkpoint commit was successful to elsewhere")
    assert model_hash(model) == before
    (model / "model.json").write_text((model / "model.json").read_text() + " ")
    assert model_hash(model) != before  # any other file is content
