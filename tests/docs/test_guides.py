"""Every code and YAML block of the guides in docs/ is checked as shipped, so a guide cannot
drift from the code: YAML experiments load (no legacy keys, no warnings) and build, Python
blocks run where they say they go, shell commands name scripts, tests and experiments that
exist and overrides that parse. The curriculum guide's module is checked byte for byte in
``tests/ued/test_curriculum_guide.py``."""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import sys
import warnings
from pathlib import Path

import jax
import numpy as np
import pytest

from envs import core as envs_core
from ued.api import load_config
from ued.config import config as config_lib
from ued.step.experiment import build

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
GUIDES = sorted(p.name for p in DOCS.glob("*.md"))
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks(guide: str, lang: str | None = None) -> list[str]:
    text = (DOCS / guide).read_text()
    return [body for kind, body in BLOCK.findall(text) if lang is None or kind == lang]


def header(block: str) -> str:
    """The block's first line when it is a ``# path`` comment, else ''."""
    first = block.splitlines()[0] if block.strip() else ""
    return first[2:].split()[0] if first.startswith("# ") else ""


def test_guides_are_found():
    assert {"adding_a_curriculum.md", "adding_an_editor.md", "adding_an_environment.md"} <= set(
        GUIDES
    )


@pytest.mark.parametrize("guide", GUIDES)
def test_every_python_block_compiles(guide):
    for i, body in enumerate(blocks(guide, "python")):
        source = body.replace("\n    ...,\n", "\n")  # "the rest of the dict" placeholders
        compile(source, f"{guide}[python {i}]", "exec")


@pytest.fixture
def experiments_copy(tmp_path):
    """experiments/ copied, so a guide's experiment file can sit beside its ``base``."""
    target = tmp_path / "experiments"
    shutil.copytree(ROOT / "experiments", target)
    return target


def load_guide_yaml(body: str, experiments: Path, overrides=()):
    name = header(body)
    assert name.startswith("experiments/"), f"a guide's YAML block names its file: {name!r}"
    path = experiments / Path(name).name
    path.write_text(body)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # legacy keys load with a FutureWarning: not in guides
        return load_config(path, list(overrides))


def check_commands(guide: str, known_experiments: set[str]):
    """Every shell command in ``guide`` names things that exist; train.py overrides parse."""
    for body in blocks(guide, "bash"):
        for line in body.strip().splitlines():
            words = shlex.split(line)
            assert words[0] == "python", line
            if words[1:3] == ["-m", "pytest"]:
                assert (ROOT / words[3]).exists(), line
                continue
            script = ROOT / words[1]
            assert script.exists(), line
            if script.name != "train.py":
                continue
            experiment, overrides = words[2], words[3:]
            assert experiment in known_experiments or (ROOT / experiment).exists(), line
            if (ROOT / experiment).exists():
                load_config(ROOT / experiment, overrides)


# --- adding_an_editor.md -------------------------------------------------------------------


def exec_into(module, source: str) -> dict:
    """Runs ``source`` in ``module``'s namespace copy (the guide says where it goes)."""
    namespace = dict(vars(module))
    exec(compile(source, module.__name__, "exec"), namespace)
    return namespace


def test_editor_guide(monkeypatch, experiments_copy):
    from envs.core import EditSpec, get_family

    # The modules (the packages export dicts of the same name).
    maze_editors = importlib.import_module("envs.maze.editors")
    control_editors = importlib.import_module("envs.control.editors")

    guide = "adding_an_editor.md"
    py = blocks(guide, "python")
    assert header(py[0]) == "" and "class EditSpec(NamedTuple):  # envs/core.py" in py[0]
    assert EditSpec._fields == ("edit", "feasible")

    # The maze editor, put where the guide says, registered as the guide says.
    assert header(py[1]) == "envs/maze/editors.py"
    maze_ns = exec_into(maze_editors, py[1])
    assert '"add_wall_near_goal": make_add_wall_near_goal' in py[2]
    maze = get_family("maze")
    monkeypatch.setitem(maze.editors, "add_wall_near_goal", maze_ns["make_add_wall_near_goal"])

    # The guide's known-answer test, run as shipped.
    assert header(py[3]).startswith("tests/envs/")
    test_ns: dict = {}
    exec(compile(py[3], "guide_test", "exec"), test_ns)
    test_ns["test_add_wall_near_goal"]()

    # The control editor: keeps the level inside its shapes and training range.
    assert header(py[4]) == "envs/control/editors.py"
    control_ns = exec_into(control_editors, py[4])
    cartpole = get_family("cartpole")
    env = cartpole.make_env()
    edit_spec = control_ns["make_scale_param"](env)
    level = cartpole.example_level(env)
    edited = jax.jit(edit_spec.edit)(jax.random.key(0), level)
    same = jax.tree.map(lambda a, b: a.shape == b.shape and a.dtype == b.dtype, level, edited)
    assert all(jax.tree.leaves(same))
    assert bool(cartpole.is_valid(env, edited)) and bool(edit_spec.feasible(level))
    pairs = zip(jax.tree.leaves(level), jax.tree.leaves(edited), strict=True)
    changed = [not np.array_equal(a, b) for a, b in pairs]
    assert sum(changed) == 1

    # The experiment: loads without legacy keys and builds with the new editor.
    (body,) = blocks(guide, "yaml")
    cfg = load_guide_yaml(body, experiments_copy)
    assert cfg.curriculum.options["editors"]["add_wall_near_goal"] == 2.0
    build(config_lib.replace(cfg, ppo={"num_envs": 4, "num_steps": 8}))
    check_commands(guide, {"experiments/maze_accel_near_goal.yaml"})


# --- adding_an_environment.md --------------------------------------------------------------


@pytest.fixture
def corridor(tmp_path):
    """The guide's complete example imported as ``envs.corridor``, unregistered afterwards."""
    python = blocks("adding_an_environment.md", "python")
    (module_block,) = [b for b in python if header(b) == "envs/corridor/__init__.py"]
    path = tmp_path / "corridor.py"
    path.write_text(module_block)
    spec = importlib.util.spec_from_file_location("envs.corridor", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["envs.corridor"] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("envs.corridor", None)
        envs_core._REGISTRY.pop("corridor", None)


def test_environment_guide(corridor, experiments_copy):
    guide = "adding_an_environment.md"
    py = blocks(guide, "python")
    family = envs_core.get_family("corridor")
    env = family.make_env(max_steps=16)
    level = family.level_from_text(env, "A..G....")
    assert bool(family.is_valid(env, level))

    # The guide's tests, run as shipped against the guide's family.
    (tests_block,) = [b for b in py if header(b) == "tests/envs/test_corridor.py"]
    namespace: dict = {}
    exec(compile(tests_block, "guide_tests", "exec"), namespace)
    family_env = (family, env)
    namespace["test_walking_right_reaches_the_goal_and_replays"](family_env)
    namespace["test_text_errors_name_the_problem"](family_env)

    # What the studio asks: the maze's answers and the defaults, as the guide shows them.
    (studio_block,) = [b for b in py if "solution_path(env, level)" in b]
    exec(compile(studio_block, "guide_studio", "exec"), {})

    # The experiment loads without legacy keys, builds and trains a chunk.
    (body,) = blocks(guide, "yaml")
    cfg = load_guide_yaml(body, experiments_copy)
    cfg = config_lib.replace(cfg, ppo={"num_envs": 4, "num_steps": 16})
    exp = build(cfg)
    state, metrics = jax.jit(lambda s: exp.run_chunk(s, 2))(exp.init(jax.random.PRNGKey(0)))
    assert np.isfinite(np.asarray(metrics["mean_return"])).all()
    check_commands(guide, {"experiments/corridor_plr.yaml"})


# --- adding_a_curriculum.md ----------------------------------------------------------------


def test_curriculum_guide_experiment_and_variant(experiments_copy):
    import ued.curricula.target_difficulty  # noqa: F401  (the guide's module registers it)
    from ued.curricula import CURRICULA

    guide = "adding_a_curriculum.md"
    (body,) = blocks(guide, "yaml")
    cfg = load_guide_yaml(body, experiments_copy)
    assert cfg.curriculum.name == "target_difficulty"
    build(config_lib.replace(cfg, ppo={"num_envs": 4, "num_steps": 8}))
    check_commands(guide, {"experiments/maze_target.yaml"})

    # The composed variant: registering it is one decorator, and it builds.
    (variant,) = [b for b in blocks(guide, "python") if "accel_train_edits" in b]
    from ued.curricula import plr

    namespace = exec_into(plr, variant)
    try:
        assert "accel_train_edits" in CURRICULA
        accel = load_config(ROOT / "experiments" / "maze_accel.yaml")
        data = config_lib.to_dict(accel)
        data["curriculum"]["name"] = "accel_train_edits"
        data["ppo"].update(num_envs=4, num_steps=8)
        build(config_lib.from_dict(data))
    finally:
        CURRICULA.pop("accel_train_edits", None)
    assert callable(namespace["make_accel_train_edits"])


def test_program_space_guide_commands():
    check_commands("adding_a_program_space.md", set())
