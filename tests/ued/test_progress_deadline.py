"""The browser tests' deadlines follow a process's progress (tests/progress.py): a slow but
working process is waited for past any fixed deadline, an idle one fails after the stall."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.progress import Progress, Stalled

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")

BUSY = (  # {s} CPU seconds of work, then a file
    "import sys, time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\n"
    "open(sys.argv[1], 'w').close()\ntime.sleep(60)"
)


def test_a_working_process_is_waited_for_past_the_stall(tmp_path):
    done = tmp_path / "done"
    proc = subprocess.Popen([sys.executable, "-c", BUSY.format(s=6), str(done)])
    try:
        start = time.monotonic()
        progress = Progress([proc.pid], stall=3, cap=300)
        progress.wait_for(done.exists, "the file", poll=0.2)
        assert time.monotonic() - start >= 3  # longer than the stall: its CPU time counted
    finally:
        proc.kill()
        proc.wait()


def test_an_idle_process_fails_after_the_stall_naming_what_was_awaited(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        time.sleep(1)  # past its start-up
        progress = Progress([proc.pid], [tmp_path], stall=2, cap=300)
        start = time.monotonic()
        with pytest.raises(Stalled, match="no first checkpoint: no progress for 2 s"):
            progress.wait_for(lambda: False, "first checkpoint", poll=0.2)
        assert time.monotonic() - start < 10
    finally:
        proc.kill()
        proc.wait()


def test_growing_files_count_as_progress(tmp_path):
    log = tmp_path / "log"
    log.write_text("")
    progress = Progress([], [log], stall=1.5, cap=300)
    for i in range(8):  # 8 x 0.5 s: longer than the stall, each step writing a line
        log.write_text(log.read_text() + f"line {i}\n")
        progress.tick("a line")
        time.sleep(0.5)
    with pytest.raises(Stalled, match="within 1 s"):
        Progress([], [log], stall=60, cap=1).wait_for(lambda: time.sleep(1.2), "anything")
