"""The contract every registered environment family keeps (picked up automatically).

For each family made with default options: generators give valid, well-shaped, key-dependent
levels under jit + vmap; episodes run under jit with observations inside the observation
space, a space a student can read, and fixed info keys with a bool ``success``; editors keep
validity; named levels are valid; render and the text format (one level and many) work.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces

from envs.core import SUCCESS, ReplayState, families, get_family, observation_parts
from ued.config.config import NetworkConfig
from ued.core.networks import make_network

NUM_KEYS = 16
NUM_STEPS = 20

FAMILIES = sorted(families())
GENERATOR_CASES = [(f, g) for f in FAMILIES for g in sorted(get_family(f).generators)]
EDITOR_CASES = [(f, e) for f in FAMILIES for e in sorted(get_family(f).editors)]


# --- cached setup (compiled once per family / generator) -------------------------------


@functools.cache
def _env(family_name: str):
    family = get_family(family_name)
    env = family.make_env()
    return family, env, env.default_params()


@functools.cache
def _generated(family_name: str, gen_name: str):
    """(generator, 16 keys, batch of 16 levels made under jit + vmap)."""
    family, env, _ = _env(family_name)
    generate = family.generators[gen_name](env)
    keys = jax.random.split(jax.random.key(123), NUM_KEYS)
    return generate, keys, jax.jit(jax.vmap(generate))(keys)


@functools.cache
def _mixed_levels(family_name: str):
    """Four levels from each generator, stacked."""
    family = get_family(family_name)
    parts = [_generated(family_name, g)[2] for g in sorted(family.generators)]
    return jax.tree.map(lambda *xs: jnp.concatenate([x[:4] for x in xs]), *parts)


@functools.cache
def _rollout_fn(family_name: str):
    _, env, params = _env(family_name)

    def one(key, level):
        reset_key, key = jax.random.split(key)
        obs, state = env.reset_to_level(reset_key, level, params)

        def body(carry, step_key):
            state, obs = carry
            act_key, env_key = jax.random.split(step_key)
            action = env.action_space(params).sample(act_key)
            out = env.step(env_key, state, action, params)
            return (out.state, out.obs), (obs, action, out.reward, out.done, out.info)

        _, traj = jax.lax.scan(body, (state, obs), jax.random.split(key, NUM_STEPS))
        return traj

    return jax.jit(jax.vmap(one))


def _take(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def _assert_same_structure(tree, example, batch_shape=()):
    leaves, treedef = jax.tree.flatten(tree)
    ex_leaves, ex_treedef = jax.tree.flatten(example)
    assert treedef == ex_treedef
    for leaf, ex in zip(leaves, ex_leaves, strict=True):
        assert leaf.shape == batch_shape + jnp.shape(ex)
        assert leaf.dtype == jnp.asarray(ex).dtype


def _assert_trees_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _assert_in_space(space, x, batch_ndim: int):
    """Checks shape, dtype and bounds of ``x`` (with ``batch_ndim`` leading axes)."""
    if isinstance(space, spaces.Dict):
        assert isinstance(x, Mapping) and set(x) == set(space.spaces)
        for name, sub in space.spaces.items():
            _assert_in_space(sub, x[name], batch_ndim)
        return
    x = jnp.asarray(x)
    assert tuple(x.shape[batch_ndim:]) == tuple(space.shape)
    assert x.dtype == jnp.dtype(space.dtype)
    assert bool(jnp.all(space.contains(x)))


# --- tests ------------------------------------------------------------------------------


@pytest.mark.parametrize("family_name", FAMILIES)
def test_family_bundle(family_name):
    family, env, params = _env(family_name)
    assert family.name == family_name
    assert family.generators and family.editors
    example = family.example_level(env)
    assert bool(jax.jit(lambda level: family.is_valid(env, level))(example))
    steps = env.max_episode_steps(params)
    assert isinstance(steps, int) and steps > 0
    metrics = jax.jit(lambda level: family.level_metrics(env, level))(example)
    assert metrics
    for value in metrics.values():
        assert value.shape == () and value.dtype == jnp.float32
    batch = family.stack([example, example])
    _assert_same_structure(batch, example, (2,))
    _assert_trees_equal(family.unstack(batch)[1], example)


@pytest.mark.parametrize("family_name", FAMILIES)
def test_studio_answers(family_name):
    """What the studio asks of a family: an edit form of a known kind, and a solution path
    that is None or a list of [x, y] cells."""
    family, env, _ = _env(family_name)
    form = family.edit_form(env)
    assert form["kind"] in ("grid", "params", "text")
    if form["kind"] == "grid":
        assert isinstance(form["max_size"], int) and form["max_size"] >= 1
    if form["kind"] == "params":
        assert form["params"] and {"name", "default", "train", "bounds"} <= set(form["params"][0])
    path = family.solution_path(env, jax.device_get(family.example_level(env)))
    assert path is None or all(len(cell) == 2 for cell in path)


@pytest.mark.parametrize("family_name", FAMILIES)
def test_observation_and_info_contract(family_name):
    """A student is built from the observation space alone and reads the observations."""
    family, env, params = _env(family_name)
    space = env.observation_space(params)
    parts = observation_parts(space)
    obs, state = env.reset_to_level(jax.random.key(0), family.example_level(env), params)
    for part in parts:
        x = obs if part.key is None else obs[part.key]
        assert jnp.shape(x) == part.shape
    network_cfg = NetworkConfig(kind="mlp", mlp_sizes=(8,), head_size=8, conv_channels=2)
    network = make_network(network_cfg, space, env.action_space(params))
    batched = jax.tree.map(lambda x: jnp.asarray(x)[None, None], obs)
    variables = network.init(jax.random.key(1), (), batched, jnp.zeros((1, 1), bool))
    _, policy, values = network.apply(variables, (), batched, jnp.zeros((1, 1), bool))
    assert values.shape == (1, 1) and bool(jnp.all(jnp.isfinite(policy)))


@pytest.mark.parametrize(("family_name", "gen_name"), GENERATOR_CASES)
def test_generator_batch_is_valid_and_key_dependent(family_name, gen_name):
    _, env, _ = _env(family_name)
    family = get_family(family_name)
    generate, keys, levels = _generated(family_name, gen_name)
    _assert_same_structure(levels, family.example_level(env), (NUM_KEYS,))
    assert bool(jnp.all(jax.vmap(lambda level: family.is_valid(env, level))(levels)))
    # jit + vmap gives what a plain call gives.
    for i in (0, NUM_KEYS - 1):
        _assert_trees_equal(generate(keys[i]), _take(levels, i))
    flat = np.concatenate([np.asarray(x).reshape(NUM_KEYS, -1) for x in jax.tree.leaves(levels)], 1)
    distinct = len({row.tobytes() for row in flat})
    assert distinct > NUM_KEYS // 2


@pytest.mark.parametrize("family_name", FAMILIES)
def test_rollout_under_jit(family_name):
    _, env, params = _env(family_name)
    levels = _mixed_levels(family_name)
    n = len(jax.tree.leaves(levels)[0])
    rollout = _rollout_fn(family_name)
    keys = jax.random.split(jax.random.key(7), n)
    obs, actions, rewards, dones, info = rollout(keys, levels)
    _assert_in_space(env.observation_space(params), obs, batch_ndim=2)
    assert rewards.shape == (n, NUM_STEPS) and rewards.dtype == jnp.float32
    assert dones.shape == (n, NUM_STEPS) and dones.dtype == jnp.bool_
    assert bool(jnp.all(jnp.isfinite(rewards)))
    assert info[SUCCESS].dtype == jnp.bool_  # solve rates and learnability read it
    for value in info.values():
        assert value.shape == (n, NUM_STEPS)
    # info keys are the same as on a single eager step.
    _, state = env.reset_to_level(keys[0], _take(levels, 0), params)
    single = env.step(keys[1], state, env.action_space(params).sample(keys[2]), params)
    assert set(single.info) == set(info)
    # Deterministic for the same keys; the actions depend on the key.
    _assert_trees_equal(rollout(keys, levels), (obs, actions, rewards, dones, info))
    other = rollout(jax.random.split(jax.random.key(8), n), levels)
    assert not np.array_equal(np.asarray(other[1]), np.asarray(actions))


@pytest.mark.parametrize(("family_name", "edit_name"), EDITOR_CASES)
def test_editor_keeps_validity(family_name, edit_name):
    family, env, _ = _env(family_name)
    spec = family.editors[edit_name](env)
    levels = _mixed_levels(family_name)
    n = len(jax.tree.leaves(levels)[0])

    @jax.jit
    def edit_batch(key, levels):
        return jax.vmap(spec.edit)(jax.random.split(key, n), levels)

    current = levels
    for round_ in range(4):
        feasible = jax.jit(jax.vmap(spec.feasible))(current)
        assert feasible.shape == (n,) and feasible.dtype == jnp.bool_
        edited = edit_batch(jax.random.key(round_), current)
        _assert_same_structure(edited, family.example_level(env), (n,))
        assert bool(jnp.all(jax.vmap(lambda level: family.is_valid(env, level))(edited)))
        for i in np.flatnonzero(~np.asarray(feasible)):
            _assert_trees_equal(_take(edited, i), _take(current, i))
        current = edited
    before, after = jax.tree.leaves(levels), jax.tree.leaves(current)
    changed = [
        any(not np.array_equal(a[i], b[i]) for a, b in zip(before, after, strict=True))
        for i in range(n)
    ]
    assert any(changed), f"editor {edit_name!r} never changed a level"


@pytest.mark.parametrize("family_name", FAMILIES)
def test_named_levels_are_valid(family_name):
    family, env, _ = _env(family_name)
    named = family.named_levels(env)
    assert len(named) > 0
    for name, level in named.items():
        assert isinstance(name, str)
        _assert_same_structure(level, family.example_level(env))
        assert bool(family.is_valid(env, level)), name


@pytest.mark.parametrize("family_name", FAMILIES)
def test_render_level_and_state(family_name):
    family, env, params = _env(family_name)
    level = family.example_level(env)
    _, state = env.reset_to_level(jax.random.key(0), level, params)
    assert isinstance(state, ReplayState)
    pictures = [family.render(env, x) for x in (level, state, state.env_state)]
    np.testing.assert_array_equal(pictures[1], pictures[2])
    for image in pictures:
        image = np.asarray(image)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert image.shape[0] > 0 and image.shape[1] > 0
        assert image.min() < image.max()  # not a blank picture


@pytest.mark.parametrize(("family_name", "gen_name"), GENERATOR_CASES)
def test_text_round_trip(family_name, gen_name):
    family, env, _ = _env(family_name)
    _, _, levels = _generated(family_name, gen_name)
    for i in range(4):
        level = _take(levels, i)
        text = family.level_to_text(env, level)
        back = family.level_from_text(env, text)
        _assert_same_structure(back, family.example_level(env))
        _assert_trees_equal(back, level)
        assert family.level_to_text(env, back) == text
    # Many levels: a batch written with blank lines between them reads back as a list.
    batch = jax.tree.map(lambda x: x[:3], levels)
    many = family.levels_to_text(env, batch)
    assert many == family.levels_to_text(env, family.unstack(batch))
    back = family.levels_from_text(env, "\n\n" + many)
    assert len(back) == 3
    _assert_trees_equal(family.stack(back), batch)
