"""Pictures of control levels and states (host-side NumPy + PIL, not jitted).

``render`` draws, top to bottom, a frame of the system (the state's pose, or a resting pose
for a level) and one bar per parameter: the grey track spans the held-out test range, the
blue band is the env's training range, the black tick the default and the red mark the
level's value.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from envs.control.env import ControlState
from envs.core import ReplayState

WIDTH = 320
FRAME_HEIGHT = 160
ROW_HEIGHT = 22
LABEL_WIDTH = 150
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)
TRACK = (215, 215, 215)
TRAIN = (150, 190, 240)
DEFAULT = (0, 0, 0)
VALUE = (220, 40, 40)
BODY = (60, 60, 60)
ACCENT = (40, 120, 200)
GOAL = (40, 170, 70)
PX_PER_M = 35.0


def _split(env, obj: Any):
    """(level, gymnax physics state or None) of a level, ``ControlState`` or ``ReplayState``."""
    if isinstance(obj, ReplayState):
        obj = obj.env_state
    if isinstance(obj, ControlState):
        level, physics = obj.level, obj.physics
    elif isinstance(obj, env.task.level_cls):
        level, physics = obj, None
    else:
        raise TypeError(
            f"render takes a {env.task.level_cls.__name__}, ControlState or ReplayState, "
            f"got {type(obj).__name__}"
        )
    if np.ndim(getattr(level, env.task.names[0])) != 0:
        raise ValueError("render takes one level or state, not a batch; index it first")
    return level, physics


def _value(physics, field: str, default: float = 0.0) -> float:
    return default if physics is None else float(np.asarray(getattr(physics, field)))


def render(env, level_or_state: Any) -> np.ndarray:
    """uint8 (H, 320, 3): a frame of the system over one bar per parameter (see module)."""
    level, physics = _split(env, level_or_state)
    task = env.task
    frame_h = FRAME_HEIGHT if task.draw is not None else 0
    image = Image.new("RGB", (WIDTH, frame_h + ROW_HEIGHT * len(task.params) + 4), BACKGROUND)
    if task.draw is not None:
        frame = Image.new("RGB", (WIDTH, frame_h), BACKGROUND)
        task.draw(ImageDraw.Draw(frame), (WIDTH, frame_h), env, level, physics)
        image.paste(frame, (0, 0))
    draw = ImageDraw.Draw(image)
    for row, p in enumerate(task.params):
        top = frame_h + 2 + row * ROW_HEIGHT
        value = float(np.asarray(getattr(level, p.name)))
        draw.text((4, top + 5), f"{p.name} {value:.4g} {p.unit}", fill=TEXT)
        lo, hi = min(p.test[0], value), max(p.test[1], value)
        x0, x1 = LABEL_WIDTH, WIDTH - 8

        def x(v: float, lo=lo, hi=hi, x0=x0, x1=x1) -> float:
            return x0 + (v - lo) / max(hi - lo, 1e-12) * (x1 - x0)

        y0, y1 = top + 4, top + ROW_HEIGHT - 4
        draw.rectangle((x0, y0, x1, y1), fill=TRACK)
        train = env.ranges[p.name]
        draw.rectangle((x(train[0]), y0, max(x(train[1]), x(train[0]) + 1), y1), fill=TRAIN)
        draw.line((x(p.default), y0 - 2, x(p.default), y1 + 2), fill=DEFAULT, width=1)
        draw.rectangle((x(value) - 2, y0 - 3, x(value) + 2, y1 + 3), fill=VALUE)
    return np.asarray(image, dtype=np.uint8)


# --- frames of each system (used by the tasks) ----------------------------------------


def draw_cartpole(draw: ImageDraw.ImageDraw, size, env, level, physics) -> None:
    """Track, cart (width grows with its mass) and pole (length and width from the level)."""
    w, h = size
    ground = h - 30
    scale = (w - 20) / 4.8  # the track is [-2.4, 2.4] m
    draw.line((10, ground, w - 10, ground), fill=BODY, width=2)
    cx = w / 2 + _value(physics, "x") * scale
    cart_w = 20 + 12 * math.sqrt(float(level.cart_mass))
    draw.rectangle((cx - cart_w / 2, ground - 16, cx + cart_w / 2, ground), fill=BODY)
    theta = _value(physics, "theta")
    length = 2 * float(level.pole_length) * PX_PER_M
    tip = (cx + length * math.sin(theta), ground - 16 - length * math.cos(theta))
    width = max(2, int(2 + 8 * math.sqrt(float(level.pole_mass))))
    draw.line((cx, ground - 16, *tip), fill=ACCENT, width=width)


def draw_pendulum(draw: ImageDraw.ImageDraw, size, env, level, physics) -> None:
    """Pivot, rod (length from the level) and bob (size from the mass); 0 rad is upright."""
    w, h = size
    pivot = (w / 2, h / 2)
    theta = _value(physics, "theta", math.pi)  # a level rests hanging down
    length = float(level.length) * PX_PER_M
    bob = (pivot[0] + length * math.sin(theta), pivot[1] - length * math.cos(theta))
    draw.line((*pivot, *bob), fill=BODY, width=3)
    r = 4 + 5 * math.sqrt(float(level.mass))
    draw.ellipse((bob[0] - r, bob[1] - r, bob[0] + r, bob[1] + r), fill=ACCENT)
    draw.ellipse((pivot[0] - 3, pivot[1] - 3, pivot[0] + 3, pivot[1] + 3), fill=TEXT)


def draw_acrobot(draw: ImageDraw.ImageDraw, size, env, level, physics) -> None:
    """Two links hanging from the pivot (0 rad is straight down) and gym's goal line."""
    w, h = size
    pivot = (w / 2, h / 2)
    scale = PX_PER_M * 0.6
    draw.line((0, pivot[1] - scale, w, pivot[1] - scale), fill=GOAL, width=1)
    a1, a2 = _value(physics, "joint_angle1"), _value(physics, "joint_angle2")
    l1, l2 = float(level.link_length_1) * scale, float(level.link_length_2) * scale
    p1 = (pivot[0] + l1 * math.sin(a1), pivot[1] + l1 * math.cos(a1))
    p2 = (p1[0] + l2 * math.sin(a1 + a2), p1[1] + l2 * math.cos(a1 + a2))
    draw.line((*pivot, *p1), fill=BODY, width=max(2, int(3 * float(level.link_mass_1))))
    draw.line((*p1, *p2), fill=ACCENT, width=max(2, int(3 * float(level.link_mass_2))))
    draw.ellipse((pivot[0] - 3, pivot[1] - 3, pivot[0] + 3, pivot[1] + 3), fill=TEXT)


def draw_mountain_car(draw: ImageDraw.ImageDraw, size, env, level, physics) -> None:
    """The hill ``y = sin(3 x)`` over [-1.2, 0.6], the flag and the car."""
    w, h = size
    gym = env.gym.default_params
    lo, hi = float(gym.min_position), float(gym.max_position)

    def point(x: float) -> tuple[float, float]:
        return (10 + (x - lo) / (hi - lo) * (w - 20), 0.6 * h - 0.35 * h * math.sin(3 * x))

    xs = np.linspace(lo, hi, 60)
    draw.line([point(float(x)) for x in xs], fill=BODY, width=2)
    fx, fy = point(float(gym.goal_position))
    draw.line((fx, fy, fx, fy - 25), fill=TEXT, width=1)
    draw.polygon([(fx, fy - 25), (fx + 12, fy - 21), (fx, fy - 17)], fill=GOAL)
    cx, cy = point(_value(physics, "position", -math.pi / 6))
    draw.ellipse((cx - 6, cy - 12, cx + 6, cy), fill=ACCENT)
