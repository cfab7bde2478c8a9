"""Screenshots of the studio's pages, taken with the system's headless Chromium.

    python scripts/studio_screenshots.py RUNS OUT [--maze RUN] [--control RUN]

Starts the studio over RUNS, opens the runs page, then the watch and draw pages of the maze
run (the draw page after trying the agent on a level) and the draw page of the control run,
and writes OUT/runs.png, OUT/watch.png, OUT/draw.png and OUT/draw_control.png. Needs the
dev extra (Playwright) and Debian's chromium.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import threading
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs")
    parser.add_argument("out")
    parser.add_argument("--maze", help="the maze run to watch and draw on")
    parser.add_argument("--control", help="a control run to draw on")
    args = parser.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("studio_screenshots: no chromium on PATH", file=sys.stderr)
        return 2
    import uvicorn
    from playwright.sync_api import expect, sync_playwright

    from ued.studio.app import create_app

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    server = uvicorn.Server(
        uvicorn.Config(create_app(args.runs), host="127.0.0.1", port=0, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.1)
    url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 860})
        page.goto(url + "#/runs")
        expect(page.locator("#runs-table tbody tr").first).to_be_visible(timeout=30_000)
        page.screenshot(path=str(out / "runs.png"), full_page=True)
        if args.maze:
            page.goto(url + f"#/watch/{args.maze}")
            expect(page.locator("#buffer-levels .level-card").first).to_be_visible(timeout=60_000)
            time.sleep(2)
            page.screenshot(path=str(out / "watch.png"), full_page=True)
            page.goto(url + f"#/draw/{args.maze}")
            expect(page.locator("#check")).to_contain_text("valid", timeout=60_000)
            page.select_option("#source", index=1)
            page.click("#try")
            expect(page.locator("#try-summary")).to_be_visible(timeout=120_000)
            time.sleep(1.5)
            page.screenshot(path=str(out / "draw.png"), full_page=True)
        if args.control:
            page.goto(url + f"#/draw/{args.control}")
            # The control editor's check names its parameters (not the maze's, still shown
            # for a moment after the page switches runs).
            expect(page.locator("#check")).to_contain_text("valid level · gravity", timeout=60_000)
            page.click("#try")
            expect(page.locator("#try-summary")).to_be_visible(timeout=120_000)
            time.sleep(1.0)
            page.screenshot(path=str(out / "draw_control.png"), full_page=True)
        browser.close()
    server.should_exit = True
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
