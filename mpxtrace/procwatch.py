"""Knowing when the processes given with ``-p`` are gone, so ``trace -p`` ends with them.

The kernel's process connector (cn_proc, through pyroute2) announces every exit as it
happens; each announcement for a watched pid is confirmed against /proc, so a thread's exit
is not mistaken for its process's.  Without the connector (CONFIG_PROC_EVENTS unset, not
root) /proc alone is checked on every poll; with it, /proc is still swept every second,
since the connector's multicast can drop messages under load.
"""
from __future__ import annotations

import select
import time
from typing import Any, Iterable, Optional, Set

__all__ = ["ExitWatcher"]

SWEEP_SECONDS = 1.0
MAX_BATCHES = 8  # connector reads per poll


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie (which has released its memory already)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


class ExitWatcher:
    def __init__(self, pids: Iterable[int]) -> None:
        self.watched: Set[int] = set(pids)
        self.gone: Set[int] = {pid for pid in self.watched if not _alive(pid)}
        self._suspects: Set[int] = set()
        self._last_sweep = time.monotonic()
        self._sock: Optional[Any] = None
        try:
            from pyroute2.netlink.connector.cn_proc import ProcEventSocket
            sock = ProcEventSocket()
            sock.bind()
            sock.control(listen=True)
            self._sock = sock
        except Exception:  # noqa: BLE001 - no connector here: fall back to /proc polling
            self._sock = None

    @property
    def uses_connector(self) -> bool:
        return self._sock is not None

    def poll(self) -> Set[int]:
        """Watched pids found gone since the last call (never blocks)."""
        now = time.monotonic()
        if self._sock is None or now - self._last_sweep >= SWEEP_SECONDS:
            # netlink multicast drops messages when its socket buffer overflows: sweep /proc too
            self._suspects |= self.watched - self.gone
            self._last_sweep = now
        if self._sock is not None:
            # A bounded read: under a fork/exit storm the socket never runs dry, and reading it
            # to the end would starve the event stream the trace loop must drain.
            try:
                for _ in range(MAX_BATCHES):
                    if not select.select([self._sock], [], [], 0)[0]:
                        break
                    for msg in self._sock.get():
                        if msg.get("event") == "PROC_EVENT_EXIT" and msg.get("process_tgid") in self.watched:
                            self._suspects.add(int(msg.get("process_tgid")))
                else:
                    self._last_sweep = 0.0  # messages left unread: the next sweep covers them
            except Exception:  # noqa: BLE001 - ENOBUFS (messages lost) or a message pyroute2
                # cannot parse (struct.error, seen under stress-ng): /proc answers instead
                self._last_sweep = 0.0
        # an exit announcement can come before the last thread is gone: keep asking until it is
        newly = {pid for pid in self._suspects if pid not in self.gone and not _alive(pid)}
        self._suspects -= newly
        self.gone |= newly
        return newly

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except Exception:  # noqa: BLE001
                pass
            self._sock = None
