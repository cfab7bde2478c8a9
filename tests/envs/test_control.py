"""Known-answer tests of the control families: gymnax equivalence, physics, success, parts."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.control import (
    CARTPOLE,
    FAMILIES,
    MOUNTAIN_CAR,
    PENDULUM,
    TASKS,
    ControlEnv,
    spec,
)
from envs.core import get_family
from envs.editing import menu, repeat

PARAMS = None  # ControlEnv ignores its params; every test passes env.default_params()


def _family(env: ControlEnv):
    """The family bundle of the env's task (its level operations)."""
    return FAMILIES[env.task.name]


# --- helpers (compiled once per task / configuration) -----------------------------------


@functools.cache
def _paired_rollout(task_name: str, num_steps: int, max_steps: int):
    """jit(key -> (ours, gymnax's)) on default physics with the same keys and actions."""
    env = ControlEnv(TASKS[task_name], max_steps=max_steps)
    params = env.default_params()
    gym, gym_params = env.gym, env.gym.default_params.replace(max_steps_in_episode=max_steps)

    def run(key):
        reset_key, key = jax.random.split(key)
        obs, state = env.reset_to_level(reset_key, _family(env).example_level(env), params)
        gym_obs, gym_state = gym.reset(reset_key, gym_params)

        def body(carry, step_key):
            state, gym_state = carry
            act_key, env_key = jax.random.split(step_key)
            action = env.action_space(params).sample(act_key)
            out = env.step(env_key, state, action, params)
            g_obs, g_state, g_reward, g_term, g_trunc, g_info = gym.step(
                env_key, gym_state, action, gym_params
            )
            ours = (out.obs, out.reward, out.done)
            theirs = (g_info["final_observation"], g_reward, g_term | g_trunc)
            return (out.state, g_state), (ours, theirs)

        _, traj = jax.lax.scan(body, (state, gym_state), jax.random.split(key, num_steps))
        return (obs, gym_obs), traj

    return jax.jit(run)


# Scripted policies ``(obs, t) -> action``, per task (a traced index picks one).
POLICIES = {
    "cartpole": {
        # Alternate pushes (about zero net force): gravity tips the pole over.
        "alternate": lambda obs, t: (t % 2).astype(jnp.int32),
        # A linear balancing controller: survives 500 steps on default physics.
        "balance": lambda obs, t: (
            0.1 * obs[0] + 0.5 * obs[1] + 10.0 * obs[2] + 2.0 * obs[3] > 0
        ).astype(jnp.int32),
        "push_right": lambda obs, t: jnp.int32(1),
    },
    # Push along the velocity: pumps energy into the swing.
    "mountain_car": {"pump": lambda obs, t: jnp.where(obs[1] >= 0, 2, 0).astype(jnp.int32)},
    "pendulum": {"zero_torque": lambda obs, t: jnp.zeros((1,), jnp.float32)},
}
HORIZON = {"cartpole": 500, "mountain_car": 200, "pendulum": 200}


@functools.cache
def _scripted(task_name: str):
    """jit((key, level, policy index, pose) -> (done, success, obs)), each (HORIZON,).

    ``pose`` (a dict of gymnax state fields) replaces the start state drawn from the key.
    """
    env = ControlEnv(TASKS[task_name])
    params = env.default_params()
    policies = list(POLICIES[task_name].values())

    def run(key, level, policy, pose):
        reset_key, key = jax.random.split(key)
        _, state = env.reset_to_level(reset_key, level, params)
        physics = state.env_state.physics.replace(**pose)
        obs = env.gym.get_obs(physics)
        state = state.replace(env_state=state.env_state.replace(physics=physics))
        state = state.replace(init_state=state.env_state, init_obs=obs)

        def body(carry, xs):
            obs, state = carry
            step_key, t = xs
            action = jax.lax.switch(policy, policies, obs, t)
            out = env.step(step_key, state, action, params)
            return (out.obs, out.state), (out.done, out.info["success"], obs)

        steps = HORIZON[task_name]
        xs = (jax.random.split(key, steps), jnp.arange(steps))
        return jax.lax.scan(body, (obs, state), xs)[1]

    return jax.jit(run)


def _run(task, policy: str, pose: dict, key: int = 0, **values):
    """(done, success, obs) as NumPy arrays of one scripted episode on a level."""
    index = list(POLICIES[task.name]).index(policy)
    pose = {k: jnp.float32(v) for k, v in pose.items()}
    out = _scripted(task.name)(jax.random.key(key), _level(task, **values), index, pose)
    return tuple(np.asarray(x) for x in out)


def _first_done(done: np.ndarray) -> int:
    """Index of the first True along the last axis (the episode's last step)."""
    assert done.any(), "no episode ended"
    return int(np.argmax(done))


def _level(task, **values):
    return spec.make_level(task, **values)


# --- equivalence with gymnax ----------------------------------------------------------


@pytest.mark.parametrize("task_name", sorted(TASKS))
def test_default_physics_matches_gymnax_step_for_step(task_name):
    max_steps = 40  # short, so Pendulum and MountainCar reach the time limit too
    (obs0, gym_obs0), (ours, theirs) = _paired_rollout(task_name, 60, max_steps)(jax.random.key(3))
    np.testing.assert_array_equal(obs0, gym_obs0)
    obs, reward, done = (np.asarray(x) for x in ours)
    g_obs, g_reward, g_done = (np.asarray(x) for x in theirs)
    end = _first_done(done)
    assert end == _first_done(g_done) and end < max_steps
    # Up to the end of the first episode (after it gymnax resets to a new random start,
    # while ours replays the level): same observations, rewards and episode end. The
    # observations agree to float32 rounding: gymnax's physics are compile-time constants,
    # ours are level values (traced), so XLA may fold or fuse the arithmetic differently.
    np.testing.assert_allclose(obs[:end], g_obs[:end], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(reward[: end + 1], g_reward[: end + 1])
    np.testing.assert_array_equal(done[: end + 1], g_done[: end + 1])
    # Ours replays: the step that ends the episode shows the level's first observation.
    np.testing.assert_array_equal(obs[end], obs0)


def test_level_sets_gymnax_params():
    env = ControlEnv(CARTPOLE)
    level = _level(CARTPOLE, gravity=20.0, cart_mass=2.0, pole_mass=0.5, pole_length=1.0)
    p = env.gymnax_params(level)
    assert float(p.gravity) == 20.0 and float(p.total_mass) == 2.5
    assert float(p.polemass_length) == 0.5 and float(p.length) == 1.0
    assert float(p.force_mag) == 10.0 and float(p.tau) == 0.02  # default / not a level field


# --- physics known answers ------------------------------------------------------------


TILTED = {"x": 0.0, "x_dot": 0.0, "theta": 0.05, "theta_dot": 0.0}  # at rest, 0.05 rad


def _cartpole_fall_step(**values) -> int:
    """Steps until the tilted pole falls under alternating pushes."""
    return _first_done(_run(CARTPOLE, "alternate", TILTED, **values)[0])


def test_cartpole_pole_falls_faster_under_stronger_gravity():
    steps = [_cartpole_fall_step(gravity=g) for g in (2.0, 9.8, 25.0)]
    assert steps[0] > steps[1] > steps[2], steps


def test_cartpole_longer_pole_falls_slower():
    assert _cartpole_fall_step(pole_length=2.0) > _cartpole_fall_step(pole_length=0.25)


def test_mountain_car_strong_gravity_blocks_the_goal():
    at_bottom = {"position": -0.5, "velocity": 0.0}
    done, success, _ = _run(MOUNTAIN_CAR, "pump", at_bottom)
    end = _first_done(done)
    assert success[end] and end < 199  # the default car reaches the flag by pumping
    # Three times the gravity: even at the speed cap the car cannot climb to the flag.
    done, success, _ = _run(MOUNTAIN_CAR, "pump", at_bottom, gravity=0.0075)
    assert not success.any() and _first_done(done) == 199


def test_pendulum_swings_faster_under_stronger_gravity():
    displaced = {"theta": np.pi - 0.3, "theta_dot": 0.0}  # 0.3 rad off hanging straight down
    speeds = [
        abs(_run(PENDULUM, "zero_torque", displaced, gravity=g)[2][5, 2]) for g in (5, 10, 15)
    ]
    assert speeds[0] < speeds[1] < speeds[2], speeds


# --- success definitions --------------------------------------------------------------


def test_cartpole_success_is_surviving_the_episode():
    done, success, _ = _run(CARTPOLE, "balance", TILTED)
    assert _first_done(done) == 499 and success[499] and success.sum() == 1
    done, success, _ = _run(CARTPOLE, "push_right", TILTED)
    assert _first_done(done) < 50 and not success.any()


def test_pendulum_success_is_ending_upright():
    # Balanced exactly upright it stays there: success on the last step only.
    done, success, _ = _run(PENDULUM, "zero_torque", {"theta": 0.0, "theta_dot": 0.0})
    assert _first_done(done) == 199 and success[199] and success.sum() == 1
    # Hanging down it never comes up.
    done, success, _ = _run(PENDULUM, "zero_torque", {"theta": np.pi, "theta_dot": 0.0})
    assert done[199] and not success.any()


# --- generators, editors, named levels ------------------------------------------------


@pytest.fixture(scope="module")
def cartpole_env():
    return ControlEnv(CARTPOLE)


def test_uniform_generator_covers_the_ranges(cartpole_env):
    env = cartpole_env
    levels = jax.jit(jax.vmap(_family(env).generators["uniform"](env)))(
        jax.random.split(jax.random.key(0), 512)
    )
    x = np.asarray(spec.to_vector(CARTPOLE, levels))
    low, high = spec.vector_of(CARTPOLE, "train_low"), spec.vector_of(CARTPOLE, "train_high")
    assert (x >= low).all() and (x <= high).all()
    width = high - low
    assert (x.min(0) < low + 0.05 * width).all() and (x.max(0) > high - 0.05 * width).all()


def test_uniform_generator_options():
    env = ControlEnv(CARTPOLE, ranges={"gravity": [20.0, 30.0]})
    gen = _family(env).generators["uniform"](env, randomize=["gravity"])
    levels = jax.vmap(gen)(jax.random.split(jax.random.key(0), 64))
    assert np.all((np.asarray(levels.gravity) >= 20) & (np.asarray(levels.gravity) <= 30))
    np.testing.assert_array_equal(np.asarray(levels.pole_length), np.float32(0.5))
    with pytest.raises(ValueError, match="unknown parameter 'gravty'.*allowed"):
        _family(env).generators["uniform"](env, randomize=["gravty"])
    with pytest.raises(ValueError, match="ranges.gravity"):
        ControlEnv(CARTPOLE, ranges={"gravity": [-1.0, 30.0]})
    with pytest.raises(ValueError, match="max_steps"):
        ControlEnv(CARTPOLE, max_steps=0)


def test_uniform_generator_randomizing_nothing_is_the_standard_task(cartpole_env):
    gen = _family(cartpole_env).generators["uniform"](cartpole_env, randomize=[])
    assert _family(cartpole_env).level_to_text(cartpole_env, gen(jax.random.key(5))) == (
        "gravity=9.8 cart_mass=1.0 pole_mass=0.1 pole_length=0.5 force_mag=10.0"
    )


@pytest.fixture(scope="module")
def edited(cartpole_env):
    """64 uniform levels and their perturb_param / reset_param edits."""
    env = cartpole_env
    levels = jax.vmap(_family(env).generators["uniform"](env))(
        jax.random.split(jax.random.key(0), 64)
    )
    keys = jax.random.split(jax.random.key(1), 64)
    out = {"base": levels}
    for name in ("perturb_param", "reset_param"):
        out[name] = jax.jit(jax.vmap(_family(env).editors[name](env).edit))(keys, levels)
    return out


def test_perturb_changes_one_parameter_within_its_range(edited):
    before = np.asarray(spec.to_vector(CARTPOLE, edited["base"]))
    after = np.asarray(spec.to_vector(CARTPOLE, edited["perturb_param"]))
    changed = before != after
    assert (changed.sum(1) <= 1).all() and changed.sum() >= 60
    assert len(set(np.flatnonzero(changed.any(0)))) == 5  # every parameter gets picked
    low, high = spec.vector_of(CARTPOLE, "train_low"), spec.vector_of(CARTPOLE, "train_high")
    assert (after >= low).all() and (after <= high).all()
    step = np.abs(after - before).max(0) / (high - low)
    assert (step <= 0.2 + 1e-6).all()


def test_reset_param_restores_one_default(edited):
    before = np.asarray(spec.to_vector(CARTPOLE, edited["base"]))
    after = np.asarray(spec.to_vector(CARTPOLE, edited["reset_param"]))
    changed = before != after
    assert (changed.sum(1) == 1).all()
    np.testing.assert_array_equal(
        after[changed], np.broadcast_to(spec.vector_of(CARTPOLE, "default"), after.shape)[changed]
    )


def test_menu_and_repeat_compose_control_editors(cartpole_env):
    env = cartpole_env
    edit = menu(
        {
            "perturb_param": (_family(env).editors["perturb_param"](env), 3.0),
            "reset_param": (_family(env).editors["reset_param"](env), 1.0),
        }
    )
    edit_n = jax.jit(jax.vmap(repeat(edit, 4)))
    base = jax.vmap(lambda k: _family(env).example_level(env))(
        jax.random.split(jax.random.key(0), 32)
    )
    out = edit_n(jax.random.split(jax.random.key(1), 32), base, jnp.full((32,), 4))
    assert bool(jax.vmap(lambda lv: _family(env).is_valid(env, lv))(out).all())
    moved = np.asarray(spec.to_vector(CARTPOLE, out)) != spec.vector_of(CARTPOLE, "default")
    assert moved.any(1).mean() > 0.5
    same = edit_n(jax.random.split(jax.random.key(1), 32), base, jnp.zeros((32,), jnp.int32))
    np.testing.assert_array_equal(np.asarray(same.gravity), np.asarray(base.gravity))


def test_named_levels_reach_beyond_the_training_ranges(cartpole_env):
    named = _family(cartpole_env).named_levels(cartpole_env)
    assert {"default", "pole_length_very_high", "force_mag_very_low", "long_heavy_pole"} <= set(
        named
    )
    train = {p.name: p.train for p in CARTPOLE.params}
    assert float(named["pole_length_very_high"].pole_length) > train["pole_length"][1]
    assert float(named["force_mag_very_low"].force_mag) < train["force_mag"][0]
    assert len(named) == 1 + 4 * 5 + len(CARTPOLE.named)
    for task in TASKS.values():
        levels = FAMILIES[task.name].named_levels(ControlEnv(task)).values()
        assert all(bool(spec.is_valid(task, level)) for level in levels), task.name


def test_is_valid_checks_physical_bounds():
    assert bool(spec.is_valid(CARTPOLE, _level(CARTPOLE, pole_length=5.0)))
    bad = _level(CARTPOLE).replace(pole_mass=jnp.float32(-0.1))
    assert not bool(spec.is_valid(CARTPOLE, bad))
    assert not bool(spec.is_valid(CARTPOLE, _level(CARTPOLE).replace(gravity=jnp.float32(np.nan))))


# --- text format and render -----------------------------------------------------------


def test_text_format(cartpole_env):
    env, family = cartpole_env, FAMILIES["cartpole"]
    level = family.level_from_text(env, "gravity=20 pole_length=0.75  # a long pole\nforce_mag=5")
    assert family.level_to_text(env, level) == (
        "gravity=20.0 cart_mass=1.0 pole_mass=0.1 pole_length=0.75 force_mag=5.0"
    )
    default = family.level_to_text(env, family.example_level(env))
    assert family.level_to_text(env, family.level_from_text(env, "")) == default
    errors = {
        "gravty=9.8": "unknown parameter 'gravty' of cartpole; allowed: .*'gravity'",
        "gravity": "'gravity' must look like name=value",
        "gravity=heavy": "gravity='heavy' is not a number",
        "pole_mass=-1": r"pole_mass=-1 is outside its valid range \[0.001, 100.0\]",
        "gravity=1 gravity=2": "'gravity' is given twice",
        "\ngravity=nan": "line 2: gravity=nan is outside",
    }
    for text, message in errors.items():
        with pytest.raises(ValueError, match=message):
            family.level_from_text(env, text)


def test_text_accepts_values_at_the_bounds():
    # Regression: bounds were compared as Python floats, and float32("0.05") > 0.05.
    env = ControlEnv(MOUNTAIN_CAR)
    level = _family(env).level_from_text(env, "force=0.05 gravity=0.00001")
    assert bool(_family(env).is_valid(env, level))
    assert _family(env).level_to_text(env, level) == "force=0.05 gravity=0.00001"


def test_family_text_round_trip_is_exact_for_small_values():
    family = get_family("mountain_car")
    env = family.make_env()
    level = jax.vmap(family.generators["uniform"](env))(jax.random.split(jax.random.key(0), 8))
    for i in range(8):
        one = jax.tree.map(lambda x, i=i: x[i], level)
        back = family.level_from_text(env, family.level_to_text(env, one))
        assert float(back.force) == float(one.force) and float(back.gravity) == float(one.gravity)


def test_render_shows_parameters_and_state(cartpole_env):
    env, family = cartpole_env, FAMILIES["cartpole"]
    base = family.render(env, family.example_level(env))
    heavy = family.render(env, _level(CARTPOLE, pole_mass=1.0))
    assert base.dtype == np.uint8 and base.shape == heavy.shape
    assert (base != heavy).any()
    params = env.default_params()
    _, state = env.reset_to_level(jax.random.key(0), family.example_level(env), params)
    assert family.render(env, state).shape == base.shape  # a ReplayState draws its current pose
    with pytest.raises(TypeError, match="CartPoleLevel"):
        family.render(env, "gravity=9.8")
