"""Command-line values checked at parse time, before anything is loaded or attached.

A root tracer that fails after attaching leaves work half done, so every number is finite
and bounded, every pid names a live process, and the files it creates cannot collide.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import click

__all__ = ["Seconds", "ProcessId", "INTERVAL", "DURATION", "PID", "unique_pids", "distinct_outputs", "new_files"]

PID_MAX = 1 << 22  # the kernel's PID_MAX_LIMIT on 64-bit


class Seconds(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click
    """A finite number of seconds in [low, high]: no nan, no inf, nothing that rounds to 0 ns."""

    name = "seconds"

    def __init__(self, low: float, high: float) -> None:
        self.low = low
        self.high = high

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> float:
        if isinstance(value, float) and math.isfinite(value) and self.low <= value <= self.high:
            return value
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(seconds):
            self.fail(f"{value!r} is not a finite number of seconds", param, ctx)
        if not self.low <= seconds <= self.high:
            self.fail(f"{value!r} is outside {self.low:g}..{self.high:g} seconds", param, ctx)
        return seconds


class ProcessId(click.ParamType):  # type: ignore[type-arg]
    """The id of a process that exists now (not a thread of another one)."""

    name = "pid"

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self.proc = proc

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> int:
        try:
            pid = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a process id", param, ctx)
        if not 1 <= pid <= PID_MAX:
            self.fail(f"{value!r} is not a process id (1..{PID_MAX})", param, ctx)
        if not (self.proc / str(pid)).is_dir():
            self.fail(f"no process with id {pid} (it may have exited; see `ps -e`)", param, ctx)
        tgid = _tgid(self.proc, pid)
        if tgid is not None and tgid != pid:
            self.fail(f"{pid} is a thread of process {tgid}: give -p {tgid}", param, ctx)
        return pid


def _tgid(proc: Path, pid: int) -> Optional[int]:
    try:
        for line in (proc / str(pid) / "status").read_bytes().splitlines():
            if line.startswith(b"Tgid:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


YEAR = 366 * 86400.0
INTERVAL = Seconds(0.01, YEAR)  # below 10 ms a report per 100 ms poll is all there can be
DURATION = Seconds(0.001, 10 * YEAR)
PID = ProcessId()


def unique_pids(pids: Tuple[int, ...]) -> Tuple[int, ...]:
    """Each pid once, in the order given (`-p P -p P` must not count P twice)."""
    return tuple(dict.fromkeys(pids))


def distinct_outputs(paths: Dict[str, Optional[Path]]) -> None:
    """Files mpxtrace creates must be distinct paths (the second create would fail after attach)."""
    seen: Dict[str, str] = {}
    for option, path in paths.items():
        if path is None:
            continue
        key = os.path.normpath(os.path.abspath(os.fspath(path)))
        if key in seen:
            raise click.UsageError(f"{seen[key]} and {option} name the same file ({path}): give them different paths")
        seen[key] = option


def new_files(paths: Dict[str, Optional[Path]]) -> None:
    """Files mpxtrace creates must not exist yet: say so before attaching, not after."""
    distinct_outputs(paths)
    for option, path in paths.items():
        if path is not None and os.path.lexists(path):
            raise click.UsageError(f"{option} {path} already exists: mpxtrace never overwrites a file; "
                                   "choose another path or remove it first")
