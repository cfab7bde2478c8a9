"""The studio's levels endpoint on a program-curriculum run: the archive's occupied slots,
fittest first, with programs inside the space's bounds and sample levels that parse and are
valid, as read from the newest checkpoint of a short real (toy) training run."""

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient  # noqa: E402

from tests.toy_family import toy_config  # noqa: E402
from ued.host.train import train  # noqa: E402
from ued.human import inbox  # noqa: E402
from ued.studio import runs as runs_lib  # noqa: E402
from ued.studio.app import create_app  # noqa: E402


@pytest.fixture(scope="module")
def program_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("studio_archive")
    cfg = toy_config(
        curriculum={"name": "programs", "options": {"archive_programs": 2, "new_programs": 2,
                                                    "capacity": 8}},
        ppo={"num_envs": 8, "epochs": 1},
        eval={"levels": "none"},
        run={"total_env_steps": 3 * 64, "chunk_updates": 3, "dir": str(root / "prog")},
    )  # fmt: skip
    train(cfg, verbose=False)
    return root


def test_levels_show_the_program_archive_fittest_first(program_run):
    client = TestClient(create_app(program_run), base_url="http://127.0.0.1:8765")
    body = client.get("/api/runs/prog/levels").json()
    model = runs_lib.RunModel(program_run / "prog")
    step, state, _ = model.latest()
    exp = model.experiment()
    archive = state.curriculum.archive
    space = exp.curriculum.space
    cur = body["curriculum"]
    assert body["checkpoint"] == step == 3
    assert cur["kind"] == "archive"
    filled = int(np.asarray(archive.filled).sum())
    assert filled >= 1 and cur["size"] == filled == len(cur["levels"])
    assert cur["capacity"] == 8 and cur["updates"] == 3
    assert cur["stage"] == int(state.curriculum.stage) and cur["num_stages"] == 3
    assert cur["grid"] and cur["num_cells"] == exp.curriculum.estimates.num_cells
    assert 1 <= cur["occupied_cells"] <= min(filled, cur["num_cells"])
    assert cur["coverage"] == pytest.approx(cur["occupied_cells"] / cur["num_cells"])
    fitness = [-np.inf if lv["fitness"] is None else lv["fitness"] for lv in cur["levels"]]
    assert fitness == sorted(fitness, reverse=True)
    assert {lv["slot"] for lv in cur["levels"]} == set(np.flatnonzero(archive.filled).tolist())
    low, high = space.stage_bounds()
    for lv in cur["levels"]:
        assert list(lv["program"]) == list(space.names)
        values = np.array(list(lv["program"].values()))
        assert np.all(values >= low[-1]) and np.all(values <= high[-1])
        np.testing.assert_allclose(values, archive.programs[lv["slot"]])
        assert set(lv["descriptors"]) == set(space.descriptor_names)
        assert len(lv["cell"]) == len(cur["grid"])
        assert all(0 <= c < cur["grid_resolution"] for c in lv["cell"])
        assert lv["age"] >= 0 and lv["born"] <= 3
        assert lv["lp_spread"] is None or lv["lp_spread"] >= 0
        level = inbox.parse_level(exp.family, exp.env, lv["text"])
        assert bool(exp.family.is_valid(exp.env, level))
        # The toy's program (start, distance) fixes its level: the sample is that level.
        start, distance = int(values[0]), int(values[1])
        assert int(level.start) == start and int(level.goal) == (start + distance) % 6
        checked = client.post("/api/runs/prog/check", json={"level": lv["text"]}).json()
        assert checked["valid"] and checked["text"] == lv["text"]
    # A limit keeps the fittest; the same seed-0 view through the query parameter.
    top = client.get("/api/runs/prog/levels?limit=1&seed=0").json()["curriculum"]
    assert top["levels"] == cur["levels"][:1] and top["size"] == filled
    assert cur["stage_bounds"] == exp.curriculum.current_bounds(state.curriculum)


def test_the_archive_view_reads_bounds_past_the_ladder(program_run):
    """A model in the loop widens past the ladder's last stage: the view reports the
    specification's own bounds (it indexed the ladder by stage and failed there)."""
    import jax.numpy as jnp

    from ued.step.parallel import per_seed

    model = runs_lib.RunModel(program_run / "prog")
    _, state, _ = model.latest()
    exp = model.experiment()
    cstate = per_seed(state.curriculum, exp.cfg.run.num_seeds)[0]
    spec = cstate.spec.replace(low=cstate.spec.low - 1.0, high=cstate.spec.high + 2.0,
                               stage=jnp.asarray(exp.curriculum.space.num_stages + 3))  # fmt: skip
    cstate = cstate.replace(spec=spec)
    view = exp.curriculum.level_view(cstate).summary
    low, high = np.asarray(spec.low), np.asarray(spec.high)
    names = exp.curriculum.space.names
    assert view["stage"] == exp.curriculum.space.num_stages + 3
    assert view["stage_bounds"] == {n: [float(low[i]), float(high[i])] for i, n in enumerate(names)}
