"""Evaluation (batched, compiled once), CVaR, level files and galleries, on the toy family."""

import jax
import numpy as np
import pytest

from envs import images as images_lib
from tests.toy_family import toy_config
from ued.curricula.base import LevelView
from ued.evaluation import gallery
from ued.evaluation.evaluate import (
    LevelEvaluator,
    cvar,
    format_table,
    set_result,
    summarize,
)
from ued.step.experiment import build


@pytest.fixture(scope="module")
def exp():
    return build(toy_config())


@pytest.fixture(scope="module")
def params(exp):
    return exp.init(jax.random.PRNGKey(0)).student.params


@pytest.fixture(scope="module")
def evaluator(exp):
    return LevelEvaluator(exp.env, exp.env_params, exp.network, 16, 12, batch_levels=2)


def test_cvar_on_hand_made_solve_rates():
    rates = np.concatenate([np.zeros(3), np.full(7, 0.5), np.ones(90)])  # 100 levels
    assert float(cvar(rates, 0.01)) == 0.0  # the worst level
    assert float(cvar(rates, 0.10)) == pytest.approx(0.35)  # 3 zeros and 7 halves
    assert float(cvar(np.array([0.2, 0.8]), 0.01)) == pytest.approx(0.2)  # at least one level
    summary = summarize({"solve_rate": rates, "mean_return": rates, "mean_length": rates})
    assert summary["cvar_1"] == 0.0 and summary["cvar_10"] == pytest.approx(0.35)
    assert summary["solve_rate"] == pytest.approx(0.935)


def test_levels_from_text_splits_on_blank_lines(exp):
    levels = exp.family.levels_from_text(exp.env, "\nAG....\n\n\n....GA\n  \nA....G\n")
    assert [int(lv.goal) for lv in levels] == [1, 4, 5]
    with pytest.raises(ValueError, match="level 2 \\(starting on line 3\\)"):
        exp.family.levels_from_text(exp.env, "AG....\n\nA.....\n")
    with pytest.raises(ValueError, match="no levels"):
        exp.family.levels_from_text(exp.env, "\n \n")


def test_batched_evaluation_compiles_once_with_known_outcomes(exp, params, evaluator):
    texts = ["AG....", "A....G", "....GA", "A.G...", "GA...."]
    levels = exp.family.stack([exp.family.level_from_text(exp.env, t) for t in texts])
    result = evaluator(jax.random.PRNGKey(1), params, levels)  # 3 batches of 2, the last padded
    assert {k: v.shape for k, v in result.items()} == {
        "solve_rate": (5,),
        "mean_return": (5,),
        "mean_length": (5,),
    }
    # Goal next to the agent: a random walk reaches it in 12 steps almost surely.
    assert result["solve_rate"][0] > 0.9 and result["mean_length"][0] < 6
    assert np.all((result["solve_rate"] >= 0) & (result["solve_rate"] <= 1))
    assert np.all(result["mean_length"] <= 12)
    evaluator(
        jax.random.PRNGKey(2), params, exp.family.stack([levels_of(levels, 0)])
    )  # a 1-level set
    assert evaluator._fn._cache_size() == 1


def levels_of(levels, i):
    return jax.tree.map(lambda x: x[i], levels)


def test_set_result_and_table():
    per_level = {
        "solve_rate": np.array([1.0, 0.0]),
        "mean_return": np.array([0.9, 0.0]),
        "mean_length": np.array([2.0, 12.0]),
    }
    named = set_result(per_level, ["near", "far"])
    assert named["levels"]["far"] == {"solve_rate": 0.0, "mean_return": 0.0, "mean_length": 12.0}
    assert named["summary"]["solve_rate"] == 0.5 and named["num_levels"] == 2
    random = set_result(per_level, None)
    assert random["per_level"]["mean_length"] == [2.0, 12.0] and "levels" not in random
    table = format_table({"named": named, "random:uniform": random})
    assert "far" in table and "random:uniform (2 levels)" in table


def test_tile_sizes_and_png(tmp_path):
    images = [np.zeros((8, 48, 3), np.uint8), np.zeros((10, 20, 3), np.uint8)]
    assert images_lib.tile(images, 8).shape == (10 + 8, 2 * (48 + 8), 3)
    captioned = images_lib.tile(images * 3, 4, [str(i) for i in range(6)])
    assert captioned.shape == (2 * (10 + 8 + 14), 4 * (48 + 8), 3)
    path = images_lib.save_png(tmp_path / "a" / "grid.png", captioned)
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (4 * 56, 2 * 32)
    with pytest.raises(ValueError, match="uint8"):
        images_lib.save_png(tmp_path / "bad.png", captioned.astype(np.float32))


def test_galleries_pick_top_scores_and_failures(exp):
    texts = ["AG....", "A....G", "....GA", "A.G..."]
    levels = exp.family.stack([exp.family.level_from_text(exp.env, t) for t in texts])
    scores, filled = np.array([0.1, 0.9, 5.0, -np.inf]), np.array([1, 1, 0, 1], bool)
    image = gallery.view_gallery(exp, LevelView("buffer", levels, filled, scores), k=16)
    assert image.shape == (8 + 8 + 14, 3 * (48 + 8), 3)  # 3 filled slots, one row
    # The best filled level (score 0.9, goal at 5) comes first: its goal column is green.
    first = image[4:12, 4:52]
    assert first[:, 5 * 8 : 6 * 8, 1].min() == 255 and first[:, :8, 1].max() == 0
    assert gallery.view_gallery(exp, None) is None
    empty = LevelView("buffer", levels, np.zeros(4, bool), np.zeros(4))
    assert gallery.view_gallery(exp, empty) is None
    unscored = LevelView("buffer", levels, filled)  # no scores: filled slots in slot order
    assert gallery.view_gallery(exp, unscored).shape == image.shape
    names = ["a", "b", "c", "d"]
    rates = np.array([1.0, 0.25, 1.0, 0.5])
    assert gallery.failure_gallery(exp, names, levels, rates).shape == (30, 2 * 56, 3)
    assert gallery.failure_gallery(exp, names, levels, np.ones(4)) is None


def test_record_episode_stops_at_done(exp, params, tmp_path):
    level = exp.family.level_from_text(exp.env, "AG....")
    frames, info = gallery.record_episode(jax.random.PRNGKey(3), exp, params, level)
    assert len(frames) == info["length"] + 1 and 1 <= info["length"] <= 12
    assert info["solved"] == (info["return"] > 0)
    path = images_lib.save_gif(tmp_path / "episode.gif", frames)
    assert path.read_bytes()[:6] == b"GIF89a"


def test_unbiased_cvar_ranks_on_one_play_and_measures_on_another():
    from ued.evaluation.evaluate import cvar, summarize, unbiased_cvar

    first = np.array([0.0, 0.5, 1.0, 0.2])  # level 0 looked worst in the first play...
    second = np.array([1.0, 0.0, 0.0, 0.0])  # ...and was solved every time in the second
    assert unbiased_cvar(first, second, 0.25) == 1.0
    assert float(cvar(first, 0.25)) == 0.0  # the same-episode CVaR: biased low
    assert unbiased_cvar(first, second, 0.5) == 0.5  # levels 0 and 3
    result = {m: first for m in ("solve_rate", "mean_return", "mean_length")}
    summary = summarize({**result, "solve_rate_independent": second})
    assert summary["cvar_1_unbiased"] == 1.0 and summary["cvar_1"] == 0.0


def test_random_levels_keep_only_accepted_ones():
    from envs.core import get_family
    from ued.evaluation.evaluate import random_levels

    maze = get_family("maze")
    env = maze.make_env(max_size=7)
    generator = maze.generators["random_walls"](env, num_walls=20)
    solvable = lambda lv: maze.level_metrics(env, lv)["solvable"] > 0  # noqa: E731
    key = jax.random.PRNGKey(0)
    every = random_levels(key, generator, 200)
    assert not np.asarray(jax.vmap(solvable)(every)).all()  # 20 walls on 7x7 block some
    kept = random_levels(key, generator, 200, accept=solvable)
    assert np.asarray(kept.wall_map).shape[0] == 200
    assert np.asarray(jax.vmap(solvable)(kept)).all()
    with pytest.raises(ValueError, match="accepted"):
        random_levels(key, generator, 5, accept=lambda lv: lv.width < 0, max_rounds=2)
