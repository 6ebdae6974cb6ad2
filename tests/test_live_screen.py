"""The full-screen view in a real terminal: `report LOG --live` inside tmux, read back with
capture-pane; keys sort and quit, and a resize redraws for the new width."""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator, List

import pytest

from synthetic_capture import capture, write

ROOT = Path(__file__).resolve().parent.parent


SOCKET = ""  # a tmux server of each test's own (set below)


@pytest.fixture(autouse=True)
def own_tmux_server() -> Iterator[None]:
    """A fresh server per test: reusing one socket right after kill-server raced with the old
    server's exit (new-session then exited 1, now and then)."""
    global SOCKET
    SOCKET = f"mpxtrace-test-{uuid.uuid4().hex[:8]}"
    try:
        yield
    finally:
        subprocess.run(["tmux", "-L", SOCKET, "kill-server"], capture_output=True, env=ENV)


# pytest exports COLUMNS/LINES, which rich would take over the terminal's real size
ENV = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", "-L", SOCKET, *args], check=True, capture_output=True, text=True, env=ENV).stdout


def _wait_for(session: str, ready: Callable[[str], bool], timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    screen = ""
    while time.monotonic() < deadline:
        screen = _tmux("capture-pane", "-p", "-t", session)
        if ready(screen):
            return screen
        time.sleep(0.2)
    raise AssertionError(f"screen never got there; last capture:\n{screen}")


def _bytes(text: str) -> float:
    if text == "-":  # not sampled yet: sorts last
        return -1.0
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return float(text.rstrip("KMG") or 0) * units[text[-1] if text[-1] in "KMG" else ""]


def _column(screen: str, name: str) -> List[float]:
    """The values of one column of the process table, top to bottom."""
    lines = screen.splitlines()
    head = next(line for line in lines if line.startswith("┃") and f" {name} " in line)
    index = [cell.strip() for cell in head.split("┃")].index(name)
    rows = [line for line in lines if line.startswith("│") and line.count("│") == head.count("┃")]
    return [_bytes(row.split("│")[index].strip()) for row in rows if row.split("│")[1].strip()]


def test_live_replay_in_tmux(tmp_path: Path) -> None:
    log = tmp_path / "capture.ndjson"
    write(log, capture(seconds=60))
    session = "live"
    command = (f"unset COLUMNS LINES; cd {shlex.quote(str(ROOT))} && {shlex.quote(sys.executable)} -m mpxtrace report "
               f"{shlex.quote(str(log))} --live --speed 2; echo EXIT=$?; sleep 60")
    _tmux("new-session", "-d", "-s", session, "-x", "130", "-y", "40", command)
    try:
        # a whole frame: the title at the top, the table, the histograms at the bottom
        wide = _wait_for(session, lambda s: "mpxtrace replay VM_LOCKED x2" in s and "sorted by live" in s
                         and "python3" in s and "%VSZ" in s and "lifetime, last 1s" in s)
        assert "allocation size, last 1s" in wide and "lifetime, last 1s" in wide and "live bytes" in wide
        lives = _column(wide, "LIVE")
        assert len(lives) >= 2 and lives == sorted(lives, reverse=True), wide

        _tmux("send-keys", "-t", session, "s")
        by_resident = _wait_for(session, lambda s: "sorted by resident" in s and "lifetime, last 1s" in s)
        resident = _column(by_resident, "RESIDENT")
        assert len(resident) >= 2 and resident == sorted(resident, reverse=True), by_resident

        _tmux("resize-window", "-t", session, "-x", "80", "-y", "24")
        narrow = _wait_for(session, lambda s: "%VSZ" not in s and "sorted by resident" in s and "%RSS" in s)
        assert max(len(line.rstrip()) for line in narrow.splitlines()) <= 80

        _tmux("send-keys", "-t", session, "q")
        after = _wait_for(session, lambda s: "EXIT=" in s)
        assert "EXIT=0" in after and "mpxtrace summary: VM_LOCKED" in _tmux(
            "capture-pane", "-p", "-S", "-200", "-t", session)
    finally:
        subprocess.run(["tmux", "-L", SOCKET, "kill-server"], capture_output=True)


def test_trace_on_a_terminal_shows_the_screen_and_q_ends_the_trace() -> None:
    # the real CLI with a recorded kernel (tests/fake_trace_main.py): 120 s of events unless stopped
    command = (f"unset COLUMNS LINES; cd {shlex.quote(str(ROOT / 'tests'))} && {shlex.quote(sys.executable)} "
               f"fake_trace_main.py; echo EXIT=$?; sleep 60")
    session = "trace"
    _tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "36", command)
    try:
        screen = _wait_for(session, lambda s: "mpxtrace VM_LOCKED (0x2000)   last 1s" in s and "sorted by live" in s
                           and "python3" in s and "lifetime, last 1s" in s)
        assert "LIVE, VMAS, RESIDENT, %: now" in screen
        asked = time.monotonic()
        _tmux("send-keys", "-t", session, "q")
        _wait_for(session, lambda s: "EXIT=" in s, timeout=10)
        assert time.monotonic() - asked < 10
        history = _tmux("capture-pane", "-p", "-S", "-300", "-t", session)
        assert "EXIT=0" in history and "mpxtrace summary: VM_LOCKED" in history
    finally:
        subprocess.run(["tmux", "-L", SOCKET, "kill-session", "-t", session], capture_output=True, env=ENV)
