"""The studio against hostile requests and run folders: a page on a foreign name (DNS
rebinding) can neither read nor send, off loopback every request needs the token, a deep
JSON body is a 400, and FIFOs in a run folder do not stall the server. The real server
(scripts/studio.py) is checked too: a foreign Host, a bad port, a port in use, an empty
token off loopback."""

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx")

from starlette.testclient import TestClient  # noqa: E402

from tests.scripts_loader import load_script  # noqa: E402
from tests.toy_family import REPLAY_CURRICULUM, toy_config  # noqa: E402
from tests.ued.test_studio_api import STEPS, write_run  # noqa: E402
from ued.human import inbox  # noqa: E402
from ued.studio.app import MAX_DEPTH, TOKEN_HEADER, create_app  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "t0ken-of-twenty-chars"
EVIL = "http://evil.example:8765"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("studio_security")
    cfg = toy_config(
        curriculum={"name": "plr", **REPLAY_CURRICULUM},
        run={"total_env_steps": 2 * STEPS, "dir": str(root / "toy")},
    )
    write_run(root / "toy", cfg)
    return root


def test_a_foreign_host_can_neither_read_nor_send(runs):
    """DNS rebinding: evil.example resolves to 127.0.0.1, so the browser sends the page's own
    name as Host and as Origin; the server must refuse it on every request."""
    client = TestClient(create_app(runs), base_url=EVIL)
    before = inbox.pending(runs / "toy")
    for path in ("/", "/api/runs", "/api/runs/toy", "/api/runs/toy/metrics", "/static/app.js"):
        res = client.get(path, headers={"Origin": EVIL})
        assert res.status_code == 403, path
        assert "not to Host 'evil.example:8765'" in res.json()["error"]
    res = client.post("/api/runs/toy/send", json={"level": "A...G."}, headers={"Origin": EVIL})
    assert res.status_code == 403 and inbox.pending(runs / "toy") == before
    for host in ("127.0.0.1:8765", "localhost:8765", "[::1]:8765", "LOCALHOST", "127.0.0.1"):
        client = TestClient(create_app(runs), base_url=f"http://{host}")
        assert client.get("/api/runs").status_code == 200, host


def test_off_loopback_every_request_needs_the_token(runs):
    for token in (None, "", "short"):
        with pytest.raises(ValueError, match="needs a token of at least 16 characters"):
            create_app(runs, token, hosts=["*"])
    with pytest.raises(ValueError, match="a token is made of"):
        create_app(runs, "a token; with=odd chars", hosts=["*"])
    app = create_app(runs, TOKEN, hosts=["*"])
    anyone = TestClient(app, base_url="http://192.0.2.7:8765")
    for path in ("/", "/api/runs", "/api/info", "/api/runs/toy/levels", "/static/app.js"):
        res = anyone.get(path)
        assert res.status_code == 403 and "needs its token" in res.json()["error"], path
    assert anyone.get("/api/runs", headers={TOKEN_HEADER: "wrong" * 5}).status_code == 403
    assert anyone.get("/api/runs", headers={TOKEN_HEADER: TOKEN}).status_code == 200
    # The printed URL opens the page and leaves a cookie the page's requests then carry.
    page = anyone.get(f"/?token={TOKEN}")
    assert page.status_code == 200
    cookie = page.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and TOKEN in cookie
    assert anyone.get("/static/app.js").status_code == 200  # the client kept the cookie
    assert anyone.get("/api/runs").status_code == 200
    anyone.cookies.clear()
    assert anyone.get("/api/runs").status_code == 403


def test_a_deeply_nested_body_is_a_400(runs):
    client = TestClient(create_app(runs), base_url="http://127.0.0.1:8765")
    headers = {"Content-Type": "application/json"}
    deep = '{"level": ' + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "}"
    for body in ("[" * 30_000 + "]" * 30_000, deep):
        res = client.post("/api/runs/toy/check", content=body.encode()[:60_000], headers=headers)
        assert res.status_code == 400 and "nest" in res.json()["error"]
    ok = client.post("/api/runs/toy/check", content=b'{"level": "A..G"}', headers=headers)
    assert ok.status_code == 200 and ok.json()["valid"]


def test_fifos_in_a_run_folder_do_not_stall_the_server(tmp_path):
    run = tmp_path / "run"
    cfg = toy_config(run={"total_env_steps": 2 * STEPS, "dir": str(run)})
    write_run(run, cfg)
    fifos = []
    for name in (".lock", "summary.json", "metrics.jsonl", "grounding.jsonl"):
        (run / name).unlink(missing_ok=True)
        os.mkfifo(run / name)
        fifos.append(run / name)
    (run / "inbox").mkdir()
    os.mkfifo(run / "inbox" / f"{'a' * 32}.json")
    fifos.append(run / "inbox" / f"{'a' * 32}.json")
    client = TestClient(create_app(tmp_path), base_url="http://127.0.0.1:8765")
    answers = {}

    def ask():  # in a thread of its own: a server blocked on a FIFO fails the test, no hang
        answers["runs"] = client.get("/api/runs").json()["runs"]
        answers["metrics"] = client.get("/api/runs/run/metrics").json()
        answers["inbox"] = client.get("/api/runs/run/inbox").json()

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(60)
    for _ in range(20):  # let a blocked server go (each FIFO opened for writing once more)
        if not thread.is_alive():
            break
        for fifo in fifos:
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(0.5)
    assert "inbox" in answers, "the server blocked on a FIFO in the run folder"
    (summary,) = answers["runs"]
    assert summary["status"] == "stopped" and summary["pending"] == 1
    assert answers["metrics"]["rows"] == []
    assert answers["inbox"]["pending"] == ["a" * 32] and "resumed" in answers["inbox"]["note"]
    assert all(Path(f).is_fifo() for f in fifos)


# --- the real server -----------------------------------------------------------------------


def studio_command(runs, *extra):
    return [sys.executable, str(ROOT / "scripts" / "studio.py"), str(runs), *extra]


def run_studio(runs, *extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(studio_command(runs, *extra), cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


def test_the_server_refuses_a_foreign_host(runs):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(studio_command(runs, "--port", "0"), cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert line.startswith("[ued] studio on http://127.0.0.1:"), line
        port = int(line.rsplit(":", 1)[1].strip("/\n"))

        def get(host, path="/api/runs", method="GET", body=None):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            headers = {"Host": host, "Origin": f"http://{host}"}
            if body is not None:
                headers["Content-Type"] = "application/json"
            conn.request(method, path, body=body, headers=headers)
            res = conn.getresponse()
            return res.status, res.read()

        assert get(f"127.0.0.1:{port}")[0] == 200
        assert get(f"localhost:{port}")[0] == 200
        status, body = get(f"evil.example:{port}")
        assert status == 403 and b"evil.example" in body
        send = json.dumps({"level": "A...G."})
        assert get(f"evil.example:{port}", "/api/runs/toy/send", "POST", send)[0] == 403
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_cli_refuses_what_it_cannot_serve(runs):
    studio = load_script("studio")
    for argv, message in (
        (["--port", "99999"], "--port must be in [0, 65535]"),
        (["--port", "-1"], "--port must be in [0, 65535]"),
        (["--host", "0.0.0.0", "--token", ""], "--token must be at least 16 characters"),
        (["--host", "0.0.0.0", "--token", "short"], "--token must be at least 16 characters"),
    ):
        with pytest.raises(SystemExit) as stop:
            studio.parse([str(runs), *argv])
        assert stop.value.code == 2, (argv, message)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        for argv, message in (
            (["--port", "99999"], "--port must be in [0, 65535] (0: any free port), got 99999"),
            (["--host", "0.0.0.0", "--token", ""], "--token must be at least 16 characters"),
            (["--port", str(port)], f"port {port} on 127.0.0.1 is in use"),
            (["--host", "no-such-host.invalid"], "cannot listen on 'no-such-host.invalid'"),
        ):
            result = run_studio(runs, *argv)
            assert result.returncode == 2, (argv, result.stderr)
            assert message in result.stderr and "Traceback" not in result.stderr
            lines = [ln for ln in result.stderr.splitlines() if ln and ln[0] not in " u"]
            assert len(lines) == 1, result.stderr  # one line besides argparse's usage
            assert not result.stdout  # no server started
    finally:
        taken.close()
