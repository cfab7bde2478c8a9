"""The studio's API through Starlette's test client, on one finished toy run: what each read
returns, and every write refused for bad input, size, type, origin or a missing token.
(Hostile requests, DNS rebinding and the token on every request: test_studio_security.py.)"""

import json

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient  # noqa: E402

from tests.toy_family import REPLAY_CURRICULUM, toy_config  # noqa: E402
from ued.api import load_config
from ued.config import config as config_lib  # noqa: E402
from ued.human import inbox  # noqa: E402
from ued.studio.app import MAX_BODY, TOKEN_HEADER, create_app  # noqa: E402

STEPS = 4 * 8
JSON = {"Content-Type": "application/json"}
LOCAL = "http://127.0.0.1:8765"  # the test client's requests carry this Host


def write_run(run_dir, cfg):
    """A finished run folder without training: config, metrics rows, a summary and one
    checkpoint of an initial state whose buffer holds two levels (through add_levels)."""
    import jax

    from ued.host.checkpoint import Checkpointer
    from ued.step.experiment import build
    from ued.step.parallel import make_runner

    exp = build(cfg)
    runner = make_runner(exp)
    state = runner.init(runner.seed_keys(0))
    texts = ("A.G...", "G...A.")
    levels = exp.family.stack([exp.family.level_from_text(exp.env, t) for t in texts])
    curriculum = exp.curriculum.add_levels(state.curriculum, levels, jax.random.PRNGKey(0))
    run_dir.mkdir(parents=True)
    config_lib.dump(cfg, run_dir / "config.yaml")
    rows = [
        {"updates": u, "env_steps": u * STEPS, "sps": 100.0, "mean_return": 0.1 * u} for u in (1, 2)
    ]
    rows.append({"updates": 2, "env_steps": 2 * STEPS, "eval/solve_rate": 0.5,
                 "eval/far/solve_rate": 0.0, "eval/near/solve_rate": 1.0})  # fmt: skip
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run_dir / "summary.json").write_text(json.dumps({"status": "finished"}))
    with Checkpointer(run_dir / "checkpoints", background=False) as ckpt:
        ckpt.save(2, state.replace(curriculum=curriculum), cfg, {"inbox_ids": []})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("studio")
    cfg = toy_config(
        curriculum={"name": "plr", **REPLAY_CURRICULUM},
        run={"total_env_steps": 2 * STEPS, "dir": str(root / "toy")},
    )
    write_run(root / "toy", cfg)
    # A run that has not checkpointed yet: a config and nothing else.
    (root / "fresh").mkdir()
    config_lib.dump(config_lib.replace(cfg, run={"dir": str(root / "fresh")}),
                    root / "fresh" / "config.yaml")  # fmt: skip
    (root / "not_a_run").mkdir()
    return root


@pytest.fixture(scope="module")
def client(runs):
    return TestClient(create_app(runs), base_url=LOCAL)


def test_runs_are_listed_with_status_and_progress(client):
    body = client.get("/api/runs").json()
    by_name = {r["name"]: r for r in body["runs"]}
    assert set(by_name) == {"toy", "fresh"}
    assert by_name["toy"]["status"] == "finished" and by_name["toy"]["progress"] == 1.0
    assert by_name["toy"]["curriculum"] == "plr"
    assert by_name["fresh"]["status"] == "stopped" and by_name["fresh"]["progress"] == 0.0
    info = client.get("/api/runs/toy").json()
    assert info["family_info"]["kind"] == "text" and info["family_info"]["example"] == "AG...."


def test_metrics_page_on_from_a_line(client):
    first = client.get("/api/runs/toy/metrics").json()
    assert [r["updates"] for r in first["rows"] if "sps" in r] == [1, 2] and first["next"] == 3
    rest = client.get(f"/api/runs/toy/metrics?since={first['next']}").json()
    assert rest["rows"] == [] and rest["next"] == first["next"]
    bad = client.get("/api/runs/toy/metrics?since=-1")
    assert bad.status_code == 400 and "since=-1 must be in" in bad.json()["error"]


def test_levels_show_the_buffer_and_the_named_levels(client):
    body = client.get("/api/runs/toy/levels?limit=4").json()
    assert body["checkpoint"] == 2
    cur = body["curriculum"]
    assert cur["kind"] == "buffer" and cur["size"] == 2 and cur["capacity"] == 16
    # Added together, so scored alike (just above an empty buffer's 0): listed by slot.
    assert [lv["text"] for lv in cur["levels"]] == ["A.G...", "G...A."]
    assert cur["levels"][0]["score"] == cur["levels"][1]["score"] > 0
    assert {"slot", "score", "staleness", "num_edits", "text"} <= set(cur["levels"][0])
    assert {lv["name"]: lv["solve_rate"] for lv in body["named"]} == {"far": 0.0, "near": 1.0}
    assert client.get("/api/runs/fresh/levels").json()["checkpoint"] is None


def test_check_names_the_problem(client):
    ok = client.post("/api/runs/toy/check", json={"level": "A..G"}).json()
    assert ok["valid"] and ok["metrics"]["distance"] == 3.0
    assert "path" not in ok  # the toy family draws no path (the default solution_path)
    bad = client.post("/api/runs/toy/check", json={"level": "A...."}).json()
    assert not bad["valid"] and "exactly one A and one G" in bad["error"]
    two = client.post("/api/runs/toy/check", json={"level": "A.G\n\nG.A"}).json()
    assert not two["valid"] and "the text holds 2 levels; send one" in two["error"]


def test_try_runs_the_latest_policy(client):
    res = client.post("/api/runs/toy/try", json={"level": "A...G.", "episodes": 3}).json()
    assert res["checkpoint"] == 2 and res["episodes"] == 3
    assert 0.0 <= res["solve_rate"] <= 1.0
    steps = res["episode"]["steps"]
    assert len(steps["pos"]) == res["episode"]["length"] + 1 and steps["pos"][0] == 0
    refused = client.post("/api/runs/toy/try", json={"level": "A...G.", "episodes": 65})
    assert refused.status_code == 400 and "'episodes'=65 must be in [1, 64]" in refused.text
    none = client.post("/api/runs/fresh/try", json={"level": "A...G."})
    assert none.status_code == 409 and "no readable checkpoint" in none.json()["error"]


def test_a_step_removed_by_the_trainer_mid_read_is_still_read(runs, tmp_path, monkeypatch):
    """A fast trainer keeps only its newest steps: one removed while the studio reads it
    must not make the try fail (the read works on a pinned, hard-linked copy)."""
    import shutil

    from ued.studio import runs as runs_lib

    run_dir = tmp_path / "toy"
    shutil.copytree(runs / "toy", run_dir)
    pin = runs_lib.pin_step

    def pin_then_remove(step_dir, into):
        pin(step_dir, into)
        shutil.rmtree(step_dir)  # the trainer's max_to_keep, right after the pin

    monkeypatch.setattr(runs_lib, "pin_step", pin_then_remove)
    step, _, meta = runs_lib.RunModel(run_dir).latest()
    assert step == 2 and meta["step"] == 2
    assert not (run_dir / "checkpoints" / "2").exists()


def test_steps_that_vanish_before_the_read_send_it_back_to_the_listing(runs, monkeypatch):
    """The newest listed step is gone before it is pinned (newer ones were saved
    meanwhile): the reader lists again instead of giving up or falling back to older steps
    (which a trainer removes first)."""
    from ued.studio import runs as runs_lib

    listings = iter([[7], [5, 6], [2]])  # 7, 6 and 5 do not exist: only step 2 does
    monkeypatch.setattr(runs_lib, "checkpoint_steps", lambda run_dir: next(listings))
    step, _, _ = runs_lib.RunModel(runs / "toy").latest()
    assert step == 2
    with pytest.raises(runs_lib.Vanished):
        runs_lib.pin_step(runs / "toy" / "checkpoints" / "7", runs / "unused")


def test_send_writes_one_validated_message(client, runs):
    res = client.post("/api/runs/toy/send", json={"level": "..A.G.", "source": "test"})
    assert res.status_code == 200, res.text
    body = res.json()
    message = json.loads((runs / "toy" / "inbox" / f"{body['id']}.json").read_text())
    assert message["level"] == "..A.G." and message["source"] == "test"
    assert "the run is finished: nothing reads sent levels until it is resumed" in body["note"]
    box = client.get("/api/runs/toy/inbox").json()  # the page shows it beside the pending level
    assert box["pending"] == [body["id"]] and box["note"] == body["note"]
    bad = client.post("/api/runs/toy/send", json={"level": "A...."})
    assert bad.status_code == 400 and "exactly one A and one G" in bad.json()["error"]
    assert [p.stem for p in inbox.pending(runs / "toy")] == [body["id"]]


@pytest.mark.parametrize(
    "kwargs, status, message",
    [
        ({"json": {"level": "A.G", "x": 1}}, 400, "unknown key 'x'; allowed: ['level', 'source']"),
        ({"json": {"level": 3}}, 400, "'level' must be a str, got 3"),
        ({"json": {}}, 400, "'level' (the level in the family's text format) is missing"),
        ({"json": ["A.G"]}, 400, "the body must be a JSON object"),
        ({"content": b"{not json", "headers": JSON}, 400, "the body is not valid JSON"),
        ({"content": b'{"level": "A.G"}'}, 415, "Content-Type: application/json"),
        ({"content": b"x" * (MAX_BODY + 1), "headers": JSON}, 413, f"over {MAX_BODY} bytes"),
        ({"json": {"level": "A.G"}, "headers": {"Origin": "http://evil.test"}}, 403, "origin"),
    ],
)  # fmt: skip
def test_bad_writes_are_refused_with_a_reason(client, runs, kwargs, status, message):
    before = inbox.pending(runs / "toy")
    res = client.post("/api/runs/toy/send", **kwargs)
    assert res.status_code == status and message in res.json()["error"]
    assert inbox.pending(runs / "toy") == before


@pytest.mark.parametrize("name", ["nope", "not_a_run", "..", "%2E%2E%2Ftoy"])
def test_runs_are_found_by_name_only(client, name):
    res = client.post(f"/api/runs/{name}/send", json={"level": "A.G"})
    assert res.status_code == 404
    error = res.json()["error"]
    assert "runs: ['fresh', 'toy']" in error or error.startswith("no such path")


def test_a_token_guards_every_request(runs):
    client = TestClient(create_app(runs, token="s3cret"), base_url=LOCAL)
    for headers in ({}, {TOKEN_HEADER: "wrong"}):
        res = client.post("/api/runs/toy/check", json={"level": "A.G"}, headers=headers)
        assert res.status_code == 403 and TOKEN_HEADER in res.json()["error"]
        assert client.get("/api/runs", headers=headers).status_code == 403  # reads too
    good = {TOKEN_HEADER: "s3cret"}
    assert client.get("/api/info", headers=good).json()["token_required"] is True
    res = client.post("/api/runs/toy/check", json={"level": "A.G"}, headers=good)
    assert res.status_code == 200 and res.json()["valid"]


def test_the_page_and_its_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and '<script type="module" src="/static/app.js">' in page.text
    for name in ("app.js", "draw.js", "levels.js", "chart.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
        assert "https://" not in client.get(f"/static/{name}").text  # offline: no CDN
    assert client.get("/static/../app.py").status_code == 404


def test_control_levels_are_edited_with_sliders():
    from pathlib import Path

    from ued.step.experiment import build
    from ued.studio import levels

    root = Path(__file__).resolve().parents[2]
    exp = build(load_config(root / "experiments" / "cartpole_dr.yaml", []))
    info = levels.family_info(exp)
    assert info["kind"] == "params"
    gravity = next(p for p in info["params"] if p["name"] == "gravity")
    assert gravity["bounds"][0] <= gravity["default"] <= gravity["bounds"][1]
    ok = levels.check(exp, info["example"].replace("gravity=9.8", "gravity=12.5"))
    assert ok["valid"] and "gravity=12.5" in ok["text"]
    bad = levels.check(exp, "gravity=-3")
    assert not bad["valid"] and "gravity" in bad["error"]


def test_the_cli_asks_for_a_token_off_localhost(runs):
    """``scripts/studio.py`` on a non-local address prints a generated token with its URL,
    and the server refuses writes without it."""
    import subprocess
    import sys
    import urllib.error
    import urllib.request
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    command = [sys.executable, str(root / "scripts" / "studio.py"), str(runs),
               "--host", "127.0.0.2", "--port", "0"]  # fmt: skip
    proc = subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("[ued] studio on http://127.0.0.2:") and "?token=" in line
        url, token = line.split()[-1].split("?token=")
        assert len(token) >= 24
        body = json.dumps({"level": "A.G"}).encode()

        def post(headers):
            request = urllib.request.Request(
                url + "api/runs/toy/check", data=body, headers={**JSON, **headers}
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as res:
                    return res.status, ""
            except urllib.error.HTTPError as err:
                return err.code, json.loads(err.read())["error"]

        status, error = post({})
        assert status == 403 and f"the {TOKEN_HEADER} header" in error
        # With the token the request gets through; this process has no toy family to build
        # the run with, and says so.
        status, error = post({TOKEN_HEADER: token})
        assert status == 422 and "unknown environment family 'toy_corridor'" in error
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_tail_rows_reads_only_the_end_of_long_metrics(tmp_path):
    from ued.studio.runs import tail_rows

    rows = [{"updates": i, "env_steps": 8 * i, "pad": "x" * 50} for i in range(1, 2001)]
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (tmp_path / "metrics.jsonl").write_text(text + '{"updates": 2001, "env_st')  # mid-write
    tail = tail_rows(tmp_path, nbytes=4096)
    assert 0 < len(tail) < 100 and tail[-1] == rows[-1]
    assert [r["updates"] for r in tail] == list(range(2001 - len(tail), 2001))
