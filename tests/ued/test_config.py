"""Config loading: errors name the key and what is allowed, before anything compiles."""

from pathlib import Path

import jax
import pytest

from ued.api import load_config
from ued.config import config as config_lib
from ued.config.config import ConfigError
from ued.curricula import options_of
from ued.step.experiment import build

EXPERIMENTS = sorted((Path(__file__).parents[2] / "experiments").glob("*.yaml"))


@pytest.mark.parametrize(
    "override, message",
    [
        (["ppo.num_env=8"], "unknown config key 'ppo.num_env'"),
        (["ppoo.lr=1"], "unknown config key 'ppoo'"),
        (["ppo.num_envs=abc"], "ppo.num_envs must be an integer"),
        (["ppo.num_envs=0"], "ppo.num_envs=0; must be an integer > 0"),
        (["ppo.gamma=1.5"], "ppo.gamma=1.5; must be a number in [0, 1]"),
        (["ppo.lr=-0.1"], "ppo.lr=-0.1; must be a number > 0"),
        (["ppo.lr=.nan"], "ppo.lr=nan; must be a number > 0"),
        (["network.kind=transformer"], "network.kind='transformer'; must be one of 'conv_lstm'"),
        (
            ["network.mlp_sizes=[-4, 0]"],
            "network.mlp_sizes=(-4, 0); must be a list of at most 64 integers > 0",
        ),
        (["run.checkpoint_every=-1"], "run.checkpoint_every=-1; must be an integer >= 0"),
        (["ppo.num_envs=6", "ppo.num_minibatches=4"], "must be divisible by"),
        (["run.progress=maybe"], "run.progress must be true or false"),
        (["ppo"], "must look like section.key=value"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, override)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "override, message",
    [
        (["env.family=chess"], "unknown environment family 'chess'"),
        (["env.generator=fractal"], "env.generator='fractal' is not one of"),
        (["env.options.max_sise=9"], "unknown option env.options.max_sise; allowed"),
        (["env.generator_options.walls=3"], "env.generator_options.walls"),
        (["curriculum.name=magic"], "curriculum.name='magic' is not one of"),
        (["curriculum.name=plr", "curriculum.options.score.regret=1"], "regret"),
        (
            ["curriculum.name=accel", "curriculum.options.editors.teleport=1"],
            "curriculum.options.editors.teleport is not an editor",
        ),
        (
            ["curriculum.name=plr", "curriculum.options.buffer.prioritisation=best"],
            "curriculum.options.buffer.prioritisation='best'; must be one of 'rank'",
        ),
        (
            ["curriculum.name=plr", "curriculum.options.buffer.temperature=0"],
            "curriculum.options.buffer.temperature=0; must be a number > 0",
        ),
        (["curriculum.name=plr", "curriculum.options.num_edits=2"], "allowed keys in"),
        (
            ["curriculum.options.buffer.capacity=8"],
            "unknown config key 'curriculum.options.buffer'",
        ),
    ],
)
def test_bad_names_fail_at_build_naming_the_key(override, message):
    cfg = load_config(None, override)
    with pytest.raises(ConfigError) as err:
        build(cfg)
    assert message in str(err.value)


def test_overrides_and_base_files(tmp_path):
    (tmp_path / "parent.yaml").write_text("ppo: {num_envs: 8, lr: 0.5}\nrun: {seed: 3}\n")
    (tmp_path / "child.yaml").write_text("base: parent.yaml\nppo: {lr: 0.25}\n")
    cfg = load_config(tmp_path / "child.yaml", ["run.seed=4", "env.options.max_size=9"])
    assert (cfg.ppo.num_envs, cfg.ppo.lr, cfg.run.seed) == (8, 0.25, 4)
    assert cfg.env.options == {"max_size": 9}
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_exponent_numbers_without_a_dot_are_numbers():
    # YAML 1.1 reads 1e-3 as a string; the config accepts it as the number it spells.
    cfg = load_config(None, ["ppo.lr=3e-4", "run.total_env_steps=2e6"])
    assert cfg.ppo.lr == 3e-4 and cfg.run.total_env_steps == 2_000_000
    with pytest.raises(ConfigError, match="run.total_env_steps must be an integer"):
        load_config(None, ["run.total_env_steps=2.5"])


def test_dump_round_trips(tmp_path):
    cfg = load_config(None, ["ppo.num_envs=8", "network.mlp_sizes=[8, 4]"])
    config_lib.dump(cfg, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == cfg


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_experiment_file_loads_and_builds(path):
    cfg = load_config(path)
    exp = build(cfg)
    assert exp.cfg.curriculum.name == cfg.curriculum.name


def test_legacy_curriculum_keys_load_as_options(tmp_path):
    # Before curriculum: {name, options}, PLR/ACCEL keys sat beside the name.
    (tmp_path / "old.yaml").write_text(
        "curriculum:\n  name: accel\n  parallel: true\n  num_edits: 2\n"
        "  score: {max_mc: 1.0}\n  buffer: {capacity: 64}\n"
    )
    with pytest.warns(FutureWarning, match="curriculum.options"):
        cfg = load_config(tmp_path / "old.yaml", ["curriculum.buffer.temperature=0.5"])
    assert cfg.curriculum.name == "accel_parallel"
    assert cfg.curriculum.options == {
        "num_edits": 2,
        "score": {"max_mc": 1.0},
        "buffer": {"capacity": 64, "temperature": 0.5},
    }
    exp = build(cfg)
    params = exp.curriculum.init(jax.random.PRNGKey(0)).params  # what the run starts with
    assert params.capacity == 64 and exp.curriculum.options.buffer.capacity == 64
    assert float(params.temperature) == 0.5


def test_shipped_experiments_use_the_current_shape(recwarn):
    for path in EXPERIMENTS:
        load_config(path)
    assert not [w for w in recwarn if issubclass(w.category, FutureWarning)]


def test_a_child_mapping_replaces_the_parents(tmp_path):
    (tmp_path / "parent.yaml").write_text(
        "curriculum:\n  name: plr\n  options:\n    score: {max_mc: 1.0}\n"
        "    buffer: {capacity: 64, temperature: 0.5}\n"
        "env:\n  generator_options: {num_walls: 10, min_walls: 2}\n"
    )
    (tmp_path / "child.yaml").write_text(
        "base: parent.yaml\ncurriculum:\n  name: accel\n  options:\n"
        "    score: {positive_value_loss: 1.0}\n    buffer: {capacity: 32}\n"
        "env:\n  generator_options: {num_walls: 5}\n"
    )
    cfg = load_config(tmp_path / "child.yaml")
    # Free-form mappings replace; typed option groups (the buffer) merge key by key.
    assert cfg.curriculum.options["score"] == {"positive_value_loss": 1.0}
    assert cfg.curriculum.options["buffer"] == {"capacity": 32, "temperature": 0.5}
    assert cfg.env.generator_options == {"num_walls": 5}
    (tmp_path / "merging.yaml").write_text(
        "base: parent.yaml\ncurriculum:\n  options:\n    score+: {novelty: 0.1}\n"
    )
    cfg = load_config(tmp_path / "merging.yaml")
    assert cfg.curriculum.options["score"] == {"max_mc": 1.0, "novelty": 0.1}
    # Another curriculum keeps only the parent's options it declares.
    (tmp_path / "sfl.yaml").write_text("base: parent.yaml\ncurriculum: {name: sfl}\n")
    assert load_config(tmp_path / "sfl.yaml").curriculum.options == {}


def test_base_file_options_merge_by_the_lookup_passed_in(tmp_path):
    # ued.config.config sits below the curricula: the option types come in as an argument.
    (tmp_path / "parent.yaml").write_text(
        "curriculum:\n  name: plr\n  options:\n    buffer: {capacity: 64, temperature: 0.5}\n"
    )
    (tmp_path / "child.yaml").write_text(
        "base: parent.yaml\ncurriculum:\n  options:\n    buffer: {capacity: 32}\n"
    )
    with pytest.raises(ConfigError, match="options_of=ued.curricula.options_of"):
        config_lib.load(tmp_path / "child.yaml")
    cfg = config_lib.load(tmp_path / "child.yaml", options_of=options_of)
    assert cfg.curriculum.options["buffer"] == {"capacity": 32, "temperature": 0.5}
    assert cfg == load_config(tmp_path / "child.yaml")
    # Without curriculum options in the base, nothing depends on their types.
    (tmp_path / "plain.yaml").write_text("ppo: {num_envs: 8}\n")
    (tmp_path / "over.yaml").write_text("base: plain.yaml\ncurriculum: {name: plr}\n")
    assert config_lib.load(tmp_path / "over.yaml") == load_config(tmp_path / "over.yaml")


# The score each shipped experiment resolves to: one score, never a sum inherited by accident.
SCORES = {
    "maze_plr": {"max_mc_per_episode": 1.0},
    "maze_robust_plr": {"max_mc_per_episode": 1.0},
    "maze_plr_parallel": {"max_mc_per_episode": 1.0},
    "maze_accel": {"positive_value_loss_per_episode": 1.0},
    "maze_accel_parallel": {"positive_value_loss_per_episode": 1.0},
    "quickstart": {"positive_value_loss_per_episode": 1.0},
    "cartpole_plr": {"positive_value_loss": 1.0},
    "cartpole_accel": {"positive_value_loss": 1.0},
    "pendulum_plr": {"positive_value_loss": 1.0},
    "pendulum_accel": {"positive_value_loss": 1.0},
    "maze_programs": {"positive_value_loss": 1.0},
    "maze_programs_model": {"positive_value_loss": 1.0},
    "maze_latent_programs": {"positive_value_loss": 1.0},
    "cartpole_programs": {},  # learnability of each program alone
}


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_resolved_scores_of_shipped_experiments(path):
    cfg = load_config(path)
    assert cfg.curriculum.options.get("score") == SCORES.get(path.stem), path.stem
