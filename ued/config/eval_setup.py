"""What an evaluation runs on: its level sets (``eval.levels``) and its env (horizon, size).

Level sets are named (``named``: the family's own held-out set; ``standard``: the mazes the
literature reports on; ``both``: the two; ``none``), a family's further sets (the maze's
``standard_large``), or text files of levels; several are joined with commas.

The evaluation env is the training env rebuilt with other options: the episode horizon
``max_steps`` (the papers evaluate the maze at T = 2 (h + 2) (w + 2) = 450, minimax
``maze_ood.py``, while training at 250) and ``max_size`` (for levels larger than the
training grid). The horizon is a static option of the env (its ``done`` and the reward
``1 - 0.9 t / T`` read it), so capping the evaluation loop alone cannot lengthen episodes.

A shipped set brings its own env (``SET_ENV``): the literature's ``standard`` mazes are
13x13 and played at 250 steps (JaxUED's and SFL's horizon; minimax and dcd use 450:
``--max-steps 450``), ``standard_large`` needs ``max_size`` 99 and each of its levels is
played at the horizon its file annotates (``; horizon:``, dcd's), ``ANNOTATED``. The size
only grows (a set of smaller levels is played in the training grid); explicit options win.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax

from ued.config.options import ConfigError, call_with_options

_MISSING = object()
ANNOTATED = "annotated"  # max_steps: each level's ``; horizon:`` annotation (its first number)
# The env options a shipped set is evaluated with, by (family, set name), unless overridden.
SET_ENV = {
    ("maze", "standard"): {"max_size": 13, "max_steps": 250},
    ("maze", "standard_large"): {"max_size": 99, "max_steps": ANNOTATED},
}
ALIASES = {"both": ("named", "standard"), "none": ()}
ALLOWED = (
    "a level set (named, both, none, or one a family offers: the maze's standard, "
    "standard_large and random_9x9) or a .txt level file, or several joined with commas"
)


def is_set_name(name: str) -> bool:
    """Whether ``name`` is ``named``, an alias, or a level set of a registered family."""
    if name == "named" or name in ALIASES:
        return True
    from envs.core import families  # the protocol's registry; imports every family once

    return any(name in family.level_sets for family in families().values())


def check_levels_spec(value: str) -> bool:
    """Whether ``value`` names level sets or ``.txt`` files (for ``eval.levels``)."""
    parts = [p.strip() for p in value.split(",")]
    return all(parts) and all(is_set_name(p) or p.endswith(".txt") for p in parts)


def expand(spec: str) -> list[str]:
    """Set names and paths of ``spec``, aliases expanded, duplicates dropped, in order."""
    out: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        for item in ALIASES.get(part, (part,)):
            if item not in out:
                out.append(item)
    return out


def load_level_sets(family, env, spec: str) -> dict[str, dict[str, Any]]:
    """``{set label: {level name: Level}}`` for ``spec`` on ``env`` (see the module doc).

    Files are labelled ``file:<name>`` and their levels ``<stem>/<i>``.

    Raises:
        ConfigError: a set the family does not have, a missing file, a bad level, or a
            level larger than the env's ``max_size`` (the message says what to raise).
    """
    sets: dict[str, dict[str, Any]] = {}
    for item in expand(spec):
        try:
            if item == "named":
                sets["named"] = dict(family.named_levels(env))
            elif is_set_name(item):
                if item not in family.level_sets:
                    have = ["named", *sorted(family.level_sets)]
                    raise ConfigError(
                        f"eval.levels: env family {family.name!r} has no level set {item!r}; "
                        f"it has {have}"
                    )
                sets[item] = dict(family.level_sets[item](env))
            else:
                levels = family.levels_from_file(env, item)
                stem = Path(item).stem
                sets[f"file:{Path(item).name}"] = {f"{stem}/{i}": lv for i, lv in enumerate(levels)}
        except (ValueError, OSError) as err:
            if isinstance(err, ConfigError):
                raise
            raise ConfigError(f"eval.levels {item!r}: {err}") from err
    return sets


def eval_env(
    exp,
    max_steps: int | None = None,
    max_size: int | None = None,
    options: Mapping[str, Any] | None = None,
):
    """``(env, env_params)``: the experiment's env rebuilt with ``max_steps`` and/or
    ``max_size`` (None keeps the training value) and any other env ``options`` (e.g. a
    suite set's ``env``) over the training env's options.

    Raises:
        ConfigError: the family's env takes no such option, or the new env's observations
            differ in shape from the training env's (the trained network could not read them,
            e.g. a fully observed maze with another ``max_size``).
    """
    explicit = {"max_steps": max_steps, "max_size": max_size}
    overrides = {**(options or {}), **{k: v for k, v in explicit.items() if v is not None}}
    if all(exp.cfg.env.options.get(k, _MISSING) == v for k, v in overrides.items()):
        overrides = {}
    if not overrides:
        return exp.env, exp.env_params
    options = {**exp.cfg.env.options, **overrides}
    env = call_with_options(exp.family.make_env, options, "env.options")
    env_params = env.default_params()
    horizon = overrides.get("max_steps")
    if horizon is not None and env.max_episode_steps(env_params) != horizon:
        raise ConfigError(f"env.options.max_steps={horizon} did not set the env's horizon")
    family = exp.family
    if _obs_shapes(family, env, env_params) != _obs_shapes(family, exp.env, exp.env_params):
        raise ConfigError(
            f"env.options {overrides} change the observation's shape, so the trained network "
            "cannot read it"
        )
    return env, env_params


def _obs_shapes(family, env, env_params) -> Mapping:
    def reset(key):
        return env.reset_to_level(key, family.example_level(env), env_params)[0]

    obs = jax.eval_shape(reset, jax.random.PRNGKey(0))
    return jax.tree.map(lambda s: (s.shape, s.dtype), obs)


def set_env_options(
    exp, item: str, max_steps: int | None = None, max_size: int | None = None
) -> dict[str, Any]:
    """The env options the set ``item`` is evaluated with: ``max_steps`` and ``max_size``
    when given, else the set's own (``SET_ENV``; a size only above the training one), else
    none (the training env's)."""
    own = dict(SET_ENV.get((exp.family.name, item), {}))
    trained = exp.cfg.env.options.get("max_size")
    if "max_size" in own and trained is not None and own["max_size"] <= trained:
        del own["max_size"]
    explicit = {"max_steps": max_steps, "max_size": max_size}
    return {**own, **{k: v for k, v in explicit.items() if v is not None}}


def level_annotations(text: str, key: str) -> list[str | None]:
    """Per level of a level file's text (levels separated by blank lines), the value of the
    ``; key: value`` comment above it (None without one)."""
    out: list[str | None] = []
    pending, inside = None, False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith(";"):
            inside = False
            name, sep, value = stripped[1:].partition(":")
            if sep and name.strip() == key:
                pending = value.strip()
        elif stripped:
            if not inside:
                out.append(pending)
                pending, inside = None, True
        else:
            inside = False
    return out


def level_horizons(text: str) -> list[int | None]:
    """Per level of a level file's text, the first integer of its ``; horizon:`` comment
    (None without one)."""
    out = []
    for value in level_annotations(text, "horizon"):
        numbers = [w for w in (value or "").replace(",", " ").split() if w.isdigit()]
        out.append(int(numbers[0]) if numbers else None)
    return out


def set_file(family, item: str) -> Path | None:
    """The level file of a shipped set or a ``.txt`` path (None for the named levels)."""
    if item.endswith(".txt"):
        return Path(item)
    if family.name == "maze" and item in ("standard", "standard_large", "random_9x9"):
        from envs.maze.standard import LEVELS_DIR, SET_FILES

        return LEVELS_DIR / SET_FILES[item]
    return None


def split_by_horizon(options: Mapping[str, Any], horizons: list[int | None], where: str):
    """``[(options with one max_steps, [level indices])]``: the levels grouped by their
    annotated horizon when ``options["max_steps"]`` is ``ANNOTATED``, else one group."""
    if options.get("max_steps") != ANNOTATED:
        return [(dict(options), list(range(len(horizons))))]
    if any(h is None for h in horizons):
        missing = [i for i, h in enumerate(horizons) if h is None]
        raise ConfigError(f"{where}: max_steps {ANNOTATED}, but levels {missing} have no "
                          "'; horizon:' annotation")  # fmt: skip
    groups: dict[int, list[int]] = {}
    for i, h in enumerate(horizons):
        groups.setdefault(h, []).append(i)
    return [({**options, "max_steps": h}, idx) for h, idx in groups.items()]
