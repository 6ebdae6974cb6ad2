"""``/proc/PID/smaps``: the kernel's own snapshot of what is mapped, with each VMA's flags.

Used to seed the model with flagged VMAs that existed before tracing began, by ``scan``,
and by the tests as the oracle the live model must agree with.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, FrozenSet, Iterable, List, Optional, Sequence

from .records import kernel_text, printable

__all__ = ["SmapsVma", "read_smaps", "flagged_vmas", "ProcessScan", "scan"]

_HEX_DIGITS = frozenset("0123456789abcdef")
_HEADER = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) ([0-9a-f]+) \S+ \d+\s*(.*)$")


@dataclass(frozen=True)
class SmapsVma:
    start: int
    end: int
    perms: str
    offset: int
    path: str
    rss_kb: int
    flags: FrozenSet[str]

    @property
    def size(self) -> int:
        return self.end - self.start


def parse_smaps(text: str) -> List[SmapsVma]:
    vmas: List[SmapsVma] = []
    head: Optional[re.Match[str]] = None
    rss = 0
    flags: List[str] = []

    def finish() -> None:
        if head is not None:
            vmas.append(SmapsVma(int(head.group(1), 16), int(head.group(2), 16), head.group(3),
                                 int(head.group(4), 16), printable(head.group(5)), rss, frozenset(flags)))

    for line in text.splitlines():
        # A VMA's header begins with its start address (lowercase hex), its ~25 fields with a
        # capitalised name: the regex runs on headers only (resync reads processes with
        # thousands of VMAs, on the tracer's CPU).
        first = line[:1]
        if first in _HEX_DIGITS:
            m = _HEADER.match(line)
            if m:
                finish()
                head, rss, flags = m, 0, []
        elif first == "V" and head is not None and line.startswith("VmFlags:"):
            flags = line.split()[1:]
        elif first == "R" and head is not None and line.startswith("Rss:"):
            rss = int(line.split()[1])
    finish()
    return vmas


def read_smaps(pid: int, proc: Path = Path("/proc")) -> List[SmapsVma]:
    """The process's VMAs; [] if it has gone, is a kernel thread, or exited while we read
    (a read cut short by the exit would otherwise pass for the whole picture)."""
    try:
        raw = (proc / str(pid) / "smaps").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return []
    if not _alive(pid, proc):
        return []
    return parse_smaps(raw.decode("utf-8", "backslashreplace"))  # paths are bytes: escaped, never a decode error


def _alive(pid: int, proc: Path = Path("/proc")) -> bool:
    """Still running (not gone, not a zombie whose memory is already torn down)."""
    try:
        stat = (proc / str(pid) / "stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return (proc / str(pid)).is_dir()  # gone, unless this /proc has no stat files (a test tree)
    except OSError:
        return True  # cannot tell: trust what we read
    state = stat[stat.rfind(b")") + 2:stat.rfind(b")") + 3]  # the comm in parentheses may hold anything
    return state not in (b"Z", b"X", b"x")


def flagged_vmas(vmas: Iterable[SmapsVma], mnemonics: Sequence[str]) -> List[SmapsVma]:
    wanted = set(mnemonics)
    return [v for v in vmas if v.flags & wanted]


@dataclass(frozen=True)
class ProcessScan:
    pid: int
    comm: str
    vmas: List[SmapsVma]

    @property
    def live_bytes(self) -> int:
        return sum(v.size for v in self.vmas)

    @property
    def rss_bytes(self) -> int:
        return sum(v.rss_kb for v in self.vmas) * 1024

    def to_json(self) -> Dict[str, object]:
        return {"pid": self.pid, "comm": self.comm, "live_bytes": self.live_bytes, "live_vmas": len(self.vmas),
                "rss_bytes": self.rss_bytes,
                "vmas": [{"start": f"{v.start:#x}", "end": f"{v.end:#x}", "size": v.size, "rss_kb": v.rss_kb,
                          "perms": v.perms, "path": v.path, "flags": sorted(v.flags)} for v in self.vmas]}


def all_pids(proc: Path = Path("/proc")) -> List[int]:
    return sorted(int(name) for name in os.listdir(proc) if name.isdigit())


def comm_of(pid: int, proc: Path = Path("/proc")) -> str:
    """The process name as printable text (a name is bytes, not necessarily UTF-8)."""
    try:
        return kernel_text((proc / str(pid) / "comm").read_bytes().rstrip(b"\n"))
    except OSError:
        return ""


def scan(mnemonics: Sequence[str], pids: Optional[Sequence[int]] = None, proc: Path = Path("/proc"),
         skip: Sequence[int] = ()) -> List[ProcessScan]:
    """Every process (or `pids`) that has at least one VMA carrying one of `mnemonics`."""
    out: List[ProcessScan] = []
    for pid in dict.fromkeys(pids) if pids else all_pids(proc):  # each process once
        if pid in skip:
            continue
        try:
            vmas = flagged_vmas(read_smaps(pid, proc), mnemonics)
        except PermissionError:
            continue
        if vmas:
            out.append(ProcessScan(pid, comm_of(pid, proc), vmas))
    return out
