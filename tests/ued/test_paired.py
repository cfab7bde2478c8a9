"""PAIRED and Minimax: regret, the adversary's building rollout, and all three learners
training inside the one train step (tiny mazes)."""

from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.ued.test_scoring import make_rollout
from ued.api import load_config
from ued.config.config import ConfigError
from ued.core import scoring
from ued.curricula.paired import BuilderEncoder, regret
from ued.step.experiment import build

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "maze_paired.yaml"
TINY = [
    "env.options={max_size: 5, view_size: 3, max_steps: 12}",
    "env.generator_options={num_walls: 4}",
    "network.lstm_size=16",
    "network.head_size=8",
    "network.conv_channels=4",
    "ppo.num_envs=4",
    "ppo.num_steps=16",
    "ppo.epochs=1",
    "eval.levels=none",
    "run.total_env_steps=1000",
    "run.progress=false",
    "run.compile_cache=",
    "curriculum.options.builder={num_walls: 4, noise_dim: 4}",
    "curriculum.options.adversary_conv_channels=4",
    "curriculum.options.adversary_time_embedding=4",
    "curriculum.options.adversary_lstm_size=16",
    "curriculum.options.adversary_head_size=8",
    "curriculum.options.adversary_lr=1.0e-3",
]
STEPS = 4


def make(*overrides):
    return build(load_config(EXPERIMENT, [*TINY, *overrides]))


def _changed(a, b) -> bool:
    return any(
        not np.array_equal(x, y)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def _pair(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


# --- regret -----------------------------------------------------------------------------------


def test_regret_known_values():
    pro_mean = np.array([0.2, 0.9, 0.5, 0.0, 0.7], np.float32)
    pro_eps = np.array([3, 2, 0, 1, 2])
    ant_max = np.array([0.8, 0.4, 0.6, -np.inf, 0.7], np.float32)
    ant_eps = np.array([1, 4, 2, 0, 3])
    got = np.asarray(regret(pro_mean, pro_eps, ant_max, ant_eps))
    # Level 1: negative, clipped to 0. Level 2: no protagonist episode counts as return 0.
    # Level 3: no antagonist episode counts as 0 (never -inf or NaN).
    np.testing.assert_allclose(got, [0.6, 0.0, 0.6, 0.0, 0.0], atol=1e-6)
    assert got.dtype == np.float32


def test_regret_from_rollouts():
    # Columns are levels; every episode that ends at a done counts.
    F, T = False, True
    pro = scoring.episode_stats(
        make_rollout([[0.5, 0, 0], [0, 0, 0], [0.3, 0, 0]], [[T, F, F], [T, F, F], [T, F, F]])
    )
    ant = scoring.episode_stats(
        make_rollout([[0.9, 0.2, 0], [0, 0, 0], [0, 0.4, 0]], [[T, T, F], [F, F, F], [F, T, F]])
    )
    got = regret(pro["mean_return"], pro["num_episodes"], ant["max_return"], ant["num_episodes"])
    # Level 0: max(0.9, 0) - mean(0.5, 0, 0.3); level 1: 0.4 - 0 (no protagonist episode);
    # level 2: nobody finished.
    np.testing.assert_allclose(np.asarray(got), [0.9 - 0.8 / 3, 0.4, 0.0], atol=1e-6)


# --- the adversary's encoder --------------------------------------------------------------------


class ConvBuilderEncoder(nn.Module):
    """``BuilderEncoder`` with ``nn.Conv`` (the formulation its patch convolution replaces)."""

    conv_channels: int
    time_embedding: int
    num_times: int

    @nn.compact
    def __call__(self, obs):
        image = obs["image"].astype(jnp.float32)
        lead = image.shape[:-3]
        x = image.reshape((-1,) + image.shape[-3:])
        padding = "VALID" if min(image.shape[-3:-1]) >= 3 else "SAME"
        x = nn.relu(nn.Conv(self.conv_channels, (3, 3), padding=padding, name="conv")(x))
        time = jnp.clip(obs["time"].astype(jnp.int32), 0, self.num_times - 1)
        time = nn.Embed(self.num_times, self.time_embedding, name="time")(time)
        return jnp.concatenate([x.reshape(lead + (-1,)), time, obs["noise"]], axis=-1)


@pytest.mark.parametrize("size", [5, 13, 2])  # 2: too small for a VALID conv, SAME padding
def test_builder_encoder_equals_flax_conv(size):
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    lead = (3, 4)
    obs = {
        "image": jax.random.bernoulli(keys[0], 0.3, lead + (size, size, 3)).astype(jnp.uint8),
        "time": jax.random.randint(keys[1], lead, 0, 9),
        "noise": jax.random.uniform(keys[2], lead + (5,)),
    }
    encoder, reference = BuilderEncoder(6, 4, 9), ConvBuilderEncoder(6, 4, 9)
    params = reference.init(keys[3], obs)
    assert jax.tree.all(jax.tree.map(np.array_equal, params, encoder.init(keys[3], obs)))
    params = jax.tree.map(lambda p: p + 0.05, params)  # a nonzero conv bias too
    np.testing.assert_allclose(encoder.apply(params, obs), reference.apply(params, obs), atol=1e-5)
    cotangent = jax.random.normal(keys[0], reference.apply(params, obs).shape)

    def loss(net):
        return lambda p: (net.apply(p, obs) * cotangent).sum()

    got, want = jax.grad(loss(encoder))(params), jax.grad(loss(reference))(params)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


# --- the train step ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def paired_run():
    exp = make("curriculum.options.population=2")
    state = exp.init(jax.random.PRNGKey(0))
    new_state, metrics = jax.jit(lambda s: exp.run_chunk(s, STEPS))(state)
    return exp, state, new_state, jax.device_get(metrics)


def test_paired_runs_from_its_experiment_file(paired_run):
    exp, _, state, metrics = paired_run
    assert exp.cfg.curriculum.name == "paired" and int(state.updates) == STEPS
    for key, value in metrics.items():
        assert value.shape == (STEPS,), key
        assert np.all(np.isfinite(value)), key
    for key in ("paired/regret", "paired/adversary_reward", "paired/adversary/loss/entropy"):
        assert key in metrics
    np.testing.assert_array_equal(metrics["paired/regret"], metrics["paired/adversary_reward"])
    # Regret is a mean over levels of max(0, antagonist max - protagonist mean), so it is at
    # least the gap of the means (and not the protagonist-minus-antagonist gap).
    gap = metrics["paired/antagonist_max_return"] - metrics["paired/protagonist_return"]
    assert np.all(metrics["paired/regret"] >= np.maximum(gap, 0.0) - 1e-6)
    np.testing.assert_array_equal(metrics["paired/pair"], [0, 1, 0, 1])  # round robin
    np.testing.assert_array_equal(metrics["env_steps/builder"], 4 * (4 + 2))
    np.testing.assert_array_equal(metrics["env_steps/antagonist"], 4 * 16)
    # The proposed levels: at most the wall budget.
    assert np.all(metrics["levels/num_walls"] <= 4)


def test_student_adversaries_and_antagonists_all_train(paired_run):
    _, before, after, _ = paired_run
    assert _changed(before.student.params, after.student.params)
    for i in range(2):
        for name in ("adversaries", "antagonists"):
            old = _pair(getattr(before.curriculum, name).params, i)
            new = _pair(getattr(after.curriculum, name).params, i)
            assert _changed(old, new), (name, i)
    # Pairs are different learners (initialised with different keys).
    assert _changed(
        _pair(after.curriculum.adversaries.params, 0), _pair(after.curriculum.adversaries.params, 1)
    )


@pytest.fixture(scope="module")
def proposed(paired_run):
    exp, _, state, _ = paired_run
    key = jax.random.PRNGKey(7)
    cstate, levels, plan = jax.jit(exp.curriculum.propose)(key, state.curriculum, state.student)
    return cstate, levels, plan


def test_proposed_levels_are_valid_and_come_from_the_adversary(paired_run, proposed):
    exp, _, state, _ = paired_run
    cstate, levels, plan = proposed
    assert np.all(np.asarray(jax.vmap(lambda lv: exp.family.is_valid(exp.env, lv))(levels)))
    assert np.all(np.asarray(plan.train_mask))
    assert int(cstate.pair) == STEPS % 2
    # The pending building rollout has one step per build action and a done at the end.
    dones = np.asarray(cstate.pending.dones)
    assert dones.shape == (6, 4) and dones[-1].all() and not dones[:-1].any()


def test_minimax_trains_the_adversary_only_against_the_protagonist(paired_run, proposed):
    # Same shapes as the PAIRED run (population 2), so its state and levels can be reused;
    # only the curriculum's update is compiled.
    exp, _, state, _ = paired_run
    minimax = make("curriculum.options.population=2", "curriculum.options.minimax=true")
    cstate, levels, plan = proposed
    rollout = jax.jit(exp.rollout)(jax.random.PRNGKey(8), state.student.params, levels)
    update = jax.jit(minimax.curriculum.update)
    new, metrics = update(jax.random.PRNGKey(9), cstate, plan, levels, rollout, state.student)
    pair = int(cstate.pair)
    assert _changed(_pair(cstate.adversaries.params, pair), _pair(new.adversaries.params, pair))
    assert not _changed(
        _pair(cstate.adversaries.params, 1 - pair), _pair(new.adversaries.params, 1 - pair)
    )
    assert not _changed(cstate.antagonists.params, new.antagonists.params)
    pro = scoring.episode_stats(rollout)
    expected = -np.where(pro["num_episodes"] > 0, pro["mean_return"], 0.0).mean()
    np.testing.assert_allclose(float(metrics["paired/adversary_reward"]), expected, rtol=1e-5)
    assert np.isnan(float(metrics["paired/regret"]))
    assert float(metrics["env_steps/antagonist"]) == 0
    assert int(new.count) == int(cstate.count) + 1


# --- options ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "override, match",
    [
        ("curriculum.options.bogus=1", r"curriculum\.options\.bogus.*allowed keys.*population"),
        ("curriculum.options.population=0", r"curriculum\.options\.population"),
        ("curriculum.options.adversary_kind=gru", r"curriculum\.options\.adversary_kind"),
        ("curriculum.options.builder={walls: 3}", r"curriculum\.options\.builder\.walls"),
        ("curriculum.options.builder={num_walls: 99}", r"curriculum\.options\.builder.*num_walls"),
    ],
)
def test_bad_options_name_the_key(override, match):
    with pytest.raises(ConfigError, match=match):
        make(override)


def test_family_without_builder_is_a_config_error():
    from tests.toy_family import toy_config

    cfg = toy_config(curriculum={"name": "paired"})
    with pytest.raises(ConfigError, match="builder"):
        build(cfg)


def test_options_read_numbers_as_the_config_does():
    # YAML 1.1 reads "1e-3" (no dot) as a string; the config accepts it, and so must options.
    from ued.curricula import parse_options

    cfg = load_config(EXPERIMENT, ["curriculum.options.adversary_lr=1e-3"])
    assert parse_options("paired", cfg.curriculum.options).adversary_lr == 1e-3
