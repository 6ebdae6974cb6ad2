from __future__ import annotations

import os
import subprocess
import time

import pytest

from mpxtrace import procwatch
from mpxtrace.procwatch import ExitWatcher


@pytest.fixture(autouse=True)
def sweep_on_every_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every poll checks /proc for every watched pid, so a live one wrongly declared gone shows."""
    monkeypatch.setattr(procwatch, "SWEEP_SECONDS", 0.0)


def _wait_gone(watcher: ExitWatcher, pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid in watcher.gone or pid in watcher.poll():
            return True
        time.sleep(0.02)
    return False


def test_sees_a_watched_process_exit_and_only_that_one() -> None:
    child = subprocess.Popen(["sleep", "30"])
    other = subprocess.Popen(["sleep", "30"])
    watcher = ExitWatcher([child.pid, other.pid])
    try:
        assert watcher.poll() == set() and watcher.gone == set()
        child.kill()  # it ends when the test says so, however slow the machine
        child.wait()
        assert _wait_gone(watcher, child.pid)
        for _ in range(5):  # the watched process still running is never reported
            watcher.poll()
            time.sleep(0.02)
        assert watcher.gone == {child.pid}
    finally:
        for proc in (child, other):
            proc.kill()
            proc.wait()
        watcher.close()


def test_already_dead_pid_counts_as_gone() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    watcher = ExitWatcher([child.pid, os.getpid()])
    try:
        assert watcher.gone == {child.pid}
    finally:
        watcher.close()


def test_connector_is_used_as_root() -> None:
    watcher = ExitWatcher([os.getpid()])
    try:
        if os.geteuid() == 0:
            assert watcher.uses_connector  # cn_proc works as root on the CI host (seen on 6.18)
        assert watcher.poll() == set() and watcher.gone == set()
    finally:
        watcher.close()


def test_unreaped_zombie_counts_as_gone() -> None:
    child = subprocess.Popen(["sleep", "0.2"])
    watcher = ExitWatcher([child.pid])
    try:
        time.sleep(0.6)  # exited, not yet reaped: a zombie
        assert _wait_gone(watcher, child.pid)
    finally:
        child.wait()
        watcher.close()


def test_a_connector_that_never_runs_dry_does_not_hold_the_trace_loop(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import select as select_module
    from mpxtrace import procwatch

    class Endless:
        reads = 0

        def get(self) -> list:  # type: ignore[type-arg]
            Endless.reads += 1
            return [{"event": "PROC_EVENT_FORK"}]

    class Broken:
        def get(self) -> list:  # type: ignore[type-arg]
            import struct
            raise struct.error("unpack requires a buffer of 4 bytes")

    monkeypatch.setattr(select_module, "select", lambda r, w, x, t: (r, [], []))
    watcher = procwatch.ExitWatcher([])
    watcher.close()
    watcher._sock = Endless()
    assert watcher.poll() == set()
    assert Endless.reads == procwatch.MAX_BATCHES and watcher._last_sweep == 0.0
    watcher._sock = Broken()
    watcher._last_sweep = 5.0
    assert watcher.poll() == set() and watcher._last_sweep == 0.0
    watcher._sock = None
