"""The five control tasks: level fields, parameter ranges, success definitions.

Success, per task (``info["success"]``, which solve rates and learnability use):

- **cartpole**: the pole stayed up for the whole episode (``max_steps`` steps, 500 by
  default) without the cart leaving the track: truncated, not terminated.
- **pendulum**: the pendulum ends the episode upright: within ``UPRIGHT_ANGLE`` (0.3 rad,
  about 17 degrees) of vertical for each of the last ``max_steps // 4`` steps (50 of 200).
- **acrobot**: the free end swung above the goal line (gym's test, in joint angles:
  ``-cos(a1) - cos(a1 + a2) > 1``; the line does not move with the links' lengths).
- **mountain_car**, **mountain_car_continuous**: the car reached the flag
  (position >= 0.5, resp. 0.45) before the time limit.
"""

from __future__ import annotations

import chex
import jax.numpy as jnp
from flax import struct
from gymnax.environments.classic_control import (
    Acrobot,
    CartPole,
    ContinuousMountainCar,
    MountainCar,
    Pendulum,
)

from envs.control.render import (
    draw_acrobot,
    draw_cartpole,
    draw_mountain_car,
    draw_pendulum,
)
from envs.control.spec import Outcome, Param, Task

UPRIGHT_ANGLE = 0.3  # rad, Pendulum counts as upright within this angle of vertical


def survived(o: Outcome) -> chex.Array:
    """The episode ran to the time limit without a natural termination (failure)."""
    return o.truncated & ~o.terminated


def reached_goal(o: Outcome) -> chex.Array:
    """The natural termination is the goal."""
    return o.terminated


def held_at_end(o: Outcome) -> chex.Array:
    """At the time limit, ``hold`` held for each of the last ``max_steps // 4`` steps."""
    return o.truncated & (o.hold_steps >= max(1, o.max_steps // 4))


# --- CartPole ---------------------------------------------------------------------------


@struct.dataclass
class CartPoleLevel:
    gravity: chex.Array  # () float32, m/s^2
    cart_mass: chex.Array  # () float32, kg
    pole_mass: chex.Array  # () float32, kg
    pole_length: chex.Array  # () float32, m, half the pole's length (gym's ``length``)
    force_mag: chex.Array  # () float32, N, the push of either action


def _cartpole_params(defaults, level: CartPoleLevel):
    return defaults.replace(
        gravity=level.gravity,
        masscart=level.cart_mass,
        masspole=level.pole_mass,
        total_mass=level.cart_mass + level.pole_mass,
        length=level.pole_length,
        polemass_length=level.pole_mass * level.pole_length,
        force_mag=level.force_mag,
    )


CARTPOLE = Task(
    name="cartpole",
    make_gymnax=CartPole,
    level_cls=CartPoleLevel,
    params=(
        Param("gravity", 9.8, (5.0, 15.0), (2.0, 25.0), (0.01, 100.0), "m/s2", "gravity"),
        Param("cart_mass", 1.0, (0.5, 2.0), (0.25, 5.0), (0.01, 100.0), "kg", "mass of the cart"),
        Param("pole_mass", 0.1, (0.05, 0.5), (0.02, 1.0), (0.001, 100.0), "kg", "pole mass"),
        Param("pole_length", 0.5, (0.25, 1.0), (0.1, 2.0), (0.01, 10.0), "m", "half-length"),
        Param("force_mag", 10.0, (5.0, 15.0), (2.5, 25.0), (0.1, 100.0), "N", "push force"),
    ),
    to_gymnax=_cartpole_params,
    success=survived,
    named={
        "long_heavy_pole": {"pole_length": 2.0, "pole_mass": 1.0},
        "short_light_pole": {"pole_length": 0.1, "pole_mass": 0.02},
        "weak_force_heavy_cart": {"force_mag": 2.5, "cart_mass": 5.0},
        "strong_gravity_short_pole": {"gravity": 25.0, "pole_length": 0.1},
    },
    draw=draw_cartpole,
)


# --- Pendulum ---------------------------------------------------------------------------


@struct.dataclass
class PendulumLevel:
    gravity: chex.Array  # () float32, m/s^2
    mass: chex.Array  # () float32, kg
    length: chex.Array  # () float32, m


def _pendulum_params(defaults, level: PendulumLevel):
    return defaults.replace(g=level.gravity, m=level.mass, l=level.length)


def _upright(physics) -> chex.Array:
    angle = (physics.theta + jnp.pi) % (2 * jnp.pi) - jnp.pi
    return jnp.abs(angle) <= UPRIGHT_ANGLE


PENDULUM = Task(
    name="pendulum",
    make_gymnax=Pendulum,
    level_cls=PendulumLevel,
    params=(
        Param("gravity", 10.0, (5.0, 15.0), (2.0, 20.0), (0.01, 100.0), "m/s2", "gravity"),
        Param("mass", 1.0, (0.5, 1.5), (0.25, 2.5), (0.01, 100.0), "kg", "bob mass"),
        Param("length", 1.0, (0.5, 1.5), (0.25, 2.0), (0.01, 10.0), "m", "rod length"),
    ),
    to_gymnax=_pendulum_params,
    success=held_at_end,
    hold=_upright,
    named={
        "heavy_long": {"mass": 2.5, "length": 2.0},
        "strong_gravity_heavy": {"gravity": 20.0, "mass": 2.5},
    },
    draw=draw_pendulum,
)


# --- Acrobot ----------------------------------------------------------------------------


@struct.dataclass
class AcrobotLevel:
    link_length_1: chex.Array  # () float32, m (centre of mass at half-length)
    link_length_2: chex.Array  # () float32, m (centre of mass at half-length)
    link_mass_1: chex.Array  # () float32, kg
    link_mass_2: chex.Array  # () float32, kg
    max_torque: chex.Array  # () float32, N m, torque of actions 0 / 2 (-, +)


def _acrobot_params(defaults, level: AcrobotLevel):
    return defaults.replace(
        available_torque=level.max_torque * jnp.array([-1.0, 0.0, 1.0], jnp.float32),
        link_length_1=level.link_length_1,
        link_length_2=level.link_length_2,
        link_mass_1=level.link_mass_1,
        link_mass_2=level.link_mass_2,
        link_com_pos_1=0.5 * level.link_length_1,
        link_com_pos_2=0.5 * level.link_length_2,
    )


ACROBOT = Task(
    name="acrobot",
    make_gymnax=Acrobot,
    level_cls=AcrobotLevel,
    params=(
        Param("link_length_1", 1.0, (0.5, 1.5), (0.3, 2.0), (0.05, 10.0), "m", "upper link"),
        Param("link_length_2", 1.0, (0.5, 1.5), (0.3, 2.0), (0.05, 10.0), "m", "lower link"),
        Param("link_mass_1", 1.0, (0.5, 1.5), (0.25, 2.5), (0.01, 100.0), "kg", "upper mass"),
        Param("link_mass_2", 1.0, (0.5, 1.5), (0.25, 2.5), (0.01, 100.0), "kg", "lower mass"),
        Param("max_torque", 1.0, (0.5, 1.5), (0.25, 2.0), (0.01, 100.0), "Nm", "joint torque"),
    ),
    to_gymnax=_acrobot_params,
    success=reached_goal,
    named={
        "heavy_lower_link_weak_motor": {"link_mass_2": 2.5, "max_torque": 0.25},
        "long_links": {"link_length_1": 2.0, "link_length_2": 2.0},
    },
    draw=draw_acrobot,
)


# --- MountainCar (discrete and continuous) ----------------------------------------------


@struct.dataclass
class MountainCarLevel:
    force: chex.Array  # () float32, velocity change per step of a push
    gravity: chex.Array  # () float32, scale of the slope's pull


@struct.dataclass
class ContinuousMountainCarLevel:
    power: chex.Array  # () float32, velocity change per step at full throttle
    gravity: chex.Array  # () float32, scale of the slope's pull


def _mountain_car_params(defaults, level: MountainCarLevel):
    return defaults.replace(force=level.force, gravity=level.gravity)


def _continuous_mountain_car_params(defaults, level: ContinuousMountainCarLevel):
    return defaults.replace(power=level.power, gravity=level.gravity)


_GRAVITY = Param("gravity", 0.0025, (0.0015, 0.0035), (0.001, 0.005), (1e-5, 0.05), "", "pull")

MOUNTAIN_CAR = Task(
    name="mountain_car",
    make_gymnax=MountainCar,
    level_cls=MountainCarLevel,
    params=(
        Param("force", 0.001, (0.0006, 0.0015), (0.0004, 0.002), (1e-5, 0.05), "", "engine"),
        _GRAVITY,
    ),
    to_gymnax=_mountain_car_params,
    success=reached_goal,
    named={"weak_engine_strong_gravity": {"force": 0.0006, "gravity": 0.0035}},
    draw=draw_mountain_car,
)

MOUNTAIN_CAR_CONTINUOUS = Task(
    name="mountain_car_continuous",
    make_gymnax=ContinuousMountainCar,
    level_cls=ContinuousMountainCarLevel,
    params=(
        Param("power", 0.0015, (0.0008, 0.0025), (0.0005, 0.003), (1e-5, 0.05), "", "engine"),
        _GRAVITY,
    ),
    to_gymnax=_continuous_mountain_car_params,
    success=reached_goal,
    named={"weak_engine_strong_gravity": {"power": 0.0008, "gravity": 0.0035}},
    draw=draw_mountain_car,
)

TASKS: dict[str, Task] = {
    t.name: t for t in (CARTPOLE, PENDULUM, ACROBOT, MOUNTAIN_CAR, MOUNTAIN_CAR_CONTINUOUS)
}
