from __future__ import annotations

import subprocess
import time

from mpxtrace.procwatch import ExitWatcher


def _wait_gone(watcher: ExitWatcher, pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid in watcher.gone or pid in watcher.poll():
            return True
        time.sleep(0.02)
    return False


def test_sees_a_watched_process_exit() -> None:
    child = subprocess.Popen(["sleep", "0.3"])
    other = subprocess.Popen(["sleep", "5"])
    watcher = ExitWatcher([child.pid])
    try:
        assert not watcher.all_gone()
        child.wait()
        assert _wait_gone(watcher, child.pid)
        assert watcher.all_gone()
        assert other.pid not in watcher.gone
    finally:
        other.kill()
        watcher.close()


def test_already_dead_pid_counts_as_gone() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    watcher = ExitWatcher([child.pid])
    assert watcher.all_gone()
    watcher.close()


def test_connector_is_used_as_root() -> None:
    import os
    watcher = ExitWatcher([os.getpid()])
    try:
        if os.geteuid() == 0:
            assert watcher.uses_connector  # cn_proc works as root on the CI host (seen on 6.18)
        assert not watcher.all_gone()
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
