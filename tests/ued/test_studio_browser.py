"""The studio end to end: a real training process, a real server and headless Chromium.

One tiny maze PLR run trains in its own process while the browser draws a level on the grid,
tries the run's latest policy on it, sends it to training and waits until the page shows it
in the buffer; the trainer's own records must agree. Chromium comes from the system's
package manager (``.ci/run`` installs Debian's ``chromium``); without it these tests skip.
Set ``UED_STUDIO_SCREENSHOTS=DIR`` to keep a screenshot of each page there.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("uvicorn")
sync_api = pytest.importorskip("playwright.sync_api")

from tests.progress import Progress  # noqa: E402
from ued.human import inbox  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (install Debian's chromium package)"
)
SHOTS = os.environ.get("UED_STUDIO_SCREENSHOTS")
TINY = [
    "env.options.max_size=7",
    "env.options.max_steps=30",
    "env.generator_options.num_walls=6",
    "ppo.num_envs=4",
    "ppo.num_steps=32",
    "ppo.epochs=1",
    "network.kind=mlp",
    "network.mlp_sizes=[16]",
    "network.head_size=8",
    "curriculum.options.buffer.capacity=256",
    "curriculum.options.buffer.min_fill_ratio=0.05",
    "run.total_env_steps=100000000",
    "run.chunk_updates=2",
    "run.checkpoint_every=2",
    "eval.interval=20",
    "eval.episodes=2",
    "run.progress=false",
    "run.compile_cache=",
    # One XLA device: split over host devices, a chunk's collectives can time out (XLA
    # aborts after 40 s) while the browser and the server's compiles share the cores.
    "run.devices=1",
]
# Drawn below: a wall down column 3, the agent top left facing right, the goal top right.
DRAWN = ">..#..G\n...#...\n...#...\n...#...\n...#...\n.......\n......."


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A training process, the studio server and a browser, started together."""
    runs = tmp_path_factory.mktemp("runs")
    run_dir = runs / "live"
    experiment = str(ROOT / "experiments" / "maze_plr.yaml")
    command = [sys.executable, str(ROOT / "scripts" / "train.py"), experiment, *TINY]
    command.append(f"run.dir={run_dir}")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = (runs / "trainer.log").open("w")  # a file: a full pipe would stall the trainer
    trainer = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    import uvicorn

    from ued.studio.app import create_app

    server = uvicorn.Server(
        uvicorn.Config(create_app(runs), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    pw = sync_api.sync_playwright().start()
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))

    def alive():
        assert trainer.poll() is None, (runs / "trainer.log").read_text()

    # Deadlines follow the trainer's progress (its CPU time while it compiles, its log,
    # metrics and checkpoints after), not the wall clock alone: a loaded machine may take
    # minutes to compile.
    progress = Progress([trainer.pid], [runs / "trainer.log", run_dir], stall=180, cap=1800,
                        alive=alive)  # fmt: skip
    try:
        progress.wait_for(
            lambda: server.started and list(run_dir.glob("checkpoints/[0-9]*/meta/metadata")),
            "first checkpoint",
        )
        port = server.servers[0].sockets[0].getsockname()[1]
        yield {"url": f"http://127.0.0.1:{port}/", "page": page, "run_dir": run_dir,
               "trainer": trainer, "errors": errors, "progress": progress,
               "browser": browser}  # fmt: skip
    finally:
        browser.close()
        pw.stop()
        server.should_exit = True
        if trainer.poll() is None:
            trainer.send_signal(signal.SIGINT)
            try:
                trainer.wait(timeout=60)
            except subprocess.TimeoutExpired:
                trainer.kill()
        thread.join(timeout=10)
        log.close()


def shot(page, name):
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def cell(page, x, y):
    box = page.locator("#grid").bounding_box()
    tile = box["width"] // 7
    return box["x"] + (x + 0.5) * tile, box["y"] + (y + 0.5) * tile


def test_runs_and_watch_pages_show_the_live_run(live):
    page = live["page"]
    page.goto(live["url"] + "#/runs")
    row = page.locator('tr[data-run="live"]')
    sync_api.expect(row.locator(".badge")).to_have_text("running", timeout=20_000)
    shot(page, "runs")
    page.goto(live["url"] + "#/watch/live")
    sync_api.expect(page.locator("#charts canvas")).to_have_count(9, timeout=20_000)
    sync_api.expect(page.locator("#buffer-levels .level-card").first).to_be_visible(timeout=30_000)
    assert "buffer:" in page.locator("#levels-note").inner_text()
    shot(page, "watch")
    assert live["errors"] == []


def test_draw_try_and_send_a_level_into_training(live, capsys):
    page, run_dir = live["page"], live["run_dir"]
    page.goto(live["url"] + "#/draw/live")
    sync_api.expect(page.locator("#check")).to_contain_text("valid level", timeout=30_000)
    page.click("#clear")
    page.check('input[name="tool"][value="wall"]')
    page.mouse.move(*cell(page, 3, 0))
    page.mouse.down()
    for y in range(1, 5):
        page.mouse.move(*cell(page, 3, y), steps=3)
    page.mouse.up()
    page.check('input[name="tool"][value="goal"]')
    page.mouse.click(*cell(page, 6, 0))
    page.check('input[name="tool"][value="agent"]')
    page.mouse.click(*cell(page, 0, 0))
    assert page.locator("#level-text").input_value() == DRAWN
    sync_api.expect(page.locator("#check")).to_contain_text("shortest_path 16", timeout=10_000)

    page.fill("#episodes", "4")
    page.click("#try")
    summary = page.locator("#try-summary")
    # The server (this process) compiles the try: its CPU time is the progress.
    serving = Progress([os.getpid()], stall=120, cap=900)
    serving.expect(
        lambda: sync_api.expect(summary).to_contain_text("over 4 episodes", timeout=10_000),
        "try result",
    )
    assert "solve rate" in summary.inner_text()
    sync_api.expect(page.locator("#frame")).to_contain_text("step", timeout=5_000)
    shot(page, "draw_try")

    t0 = time.monotonic()
    page.click("#send")
    trained = page.locator("#send-result td.trained .ok")
    live["progress"].expect(
        lambda: sync_api.expect(trained).to_contain_text("in the buffer", timeout=10_000),
        "sent level in the buffer",
    )
    seconds = time.monotonic() - t0
    shot(page, "draw_sent")
    with capsys.disabled():
        print(f"\n[studio] send -> in the buffer: {seconds:.1f} s ({trained.inner_text()})")

    (event,) = [e for e in inbox.read_events(run_dir) if e["accepted"]]
    row = page.locator(f'#send-result tr[data-id="{event["id"]}"]')
    assert f"accepted into the buffer (slot {event['slot']}) at update {event['update']}" in (
        row.inner_text()
    )
    assert (run_dir / "inbox" / "applied" / f"{event['id']}.json").exists()
    live["trainer"].send_signal(signal.SIGINT)
    assert live["trainer"].wait(timeout=60) == 4  # interrupted with a checkpoint
    newest = max(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())
    meta = json.loads((run_dir / "checkpoints" / str(newest) / "meta" / "metadata").read_text())
    assert meta["inbox_ids"] == [event["id"]]
    assert live["errors"] == []


def test_a_bad_level_is_refused_in_the_page(live):
    page = live["page"]
    page.goto(live["url"] + "#/draw/live")
    page.fill("#level-text", ">..\n..X")
    sync_api.expect(page.locator("#check")).to_contain_text("not valid", timeout=10_000)
    sync_api.expect(page.locator("#check")).to_contain_text("'X'")
    page.click("#send")
    sync_api.expect(page.locator("#send-result .bad")).to_contain_text("bad level", timeout=10_000)


def test_a_level_sent_to_a_finished_run_says_it_waits_for_a_resume(live, tmp_path):
    """A finished run reads no inbox: the page says so beside the pending level."""
    import uvicorn

    from tests.toy_family import REPLAY_CURRICULUM, toy_config
    from tests.ued.test_studio_api import STEPS, write_run
    from ued.studio.app import create_app

    cfg = toy_config(curriculum={"name": "plr", **REPLAY_CURRICULUM},
                     run={"total_env_steps": 2 * STEPS, "dir": str(tmp_path / "done")})  # fmt: skip
    write_run(tmp_path / "done", cfg)
    server = uvicorn.Server(
        uvicorn.Config(create_app(tmp_path), host="127.0.0.1", port=0, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    page = live["browser"].new_page()  # the module's browser (one Playwright per process)
    try:
        Progress([os.getpid()], stall=60, cap=300).wait_for(lambda: server.started, "server")
        port = server.servers[0].sockets[0].getsockname()[1]
        page.goto(f"http://127.0.0.1:{port}/#/draw/done")
        sync_api.expect(page.locator("#level-text")).to_be_visible(timeout=60_000)
        page.fill("#level-text", "A...G.")
        page.click("#send")
        row = page.locator("#send-result tr", has_text="pending")
        sync_api.expect(row).to_contain_text(
            "the run is finished: nothing reads sent levels until it is resumed", timeout=60_000
        )
        assert len(inbox.pending(tmp_path / "done")) == 1
    finally:
        page.close()
        server.should_exit = True
        thread.join(timeout=10)
