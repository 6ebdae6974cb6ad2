"""What flagged memory really costs: resident bytes sampled from ``/proc`` at the interval.

The model knows the virtual size of every flagged VMA; how much of it is in RAM only the
kernel's page tables know.  ``/proc/PID/smaps`` gives Rss per VMA (pyroute2's taskstats only
per task, see bench/resident_sampling.py), so one read per process gives the flagged VMAs'
resident bytes, the process's RSS and its virtual size.  Sampling is I/O: it is done here,
outside the model, and stored as its own ``resident`` record (in the log too), so a replay
shows the same figures without touching /proc.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .events import Record
from .smaps import SmapsVma, read_smaps
from .stats import RESIDENT_RECORD, Session

__all__ = ["mem_total_bytes", "sample_process", "sample"]


def mem_total_bytes(proc: Path = Path("/proc")) -> int:
    """MemTotal from /proc/meminfo (0 if unreadable)."""
    try:
        for line in (proc / "meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _flagged(vma: SmapsVma, mnemonics: Sequence[str], ranges: Sequence[Tuple[int, int]]) -> bool:
    if mnemonics:
        return bool(vma.flags.intersection(mnemonics))
    return any(start < vma.end and vma.start < end for start, end in ranges)


def _share(part: int, whole: int) -> float:
    return round(part / whole, 6) if whole else 0.0


def sample_process(pid: int, mnemonics: Sequence[str], ranges: Sequence[Tuple[int, int]] = (),
                   proc: Path = Path("/proc")) -> Optional[Dict[str, object]]:
    """Resident bytes of the process's flagged VMAs, its RSS and virtual size; None once it is gone.

    `mnemonics` pick the flagged VMAs by VmFlags; a mask with no smaps mnemonic falls back to
    the model's `ranges`.
    """
    try:
        vmas = read_smaps(pid, proc)
    except PermissionError:
        return None
    if not vmas:
        return None
    flagged = [v for v in vmas if _flagged(v, mnemonics, ranges)]
    resident = sum(v.rss_kb for v in flagged) * 1024
    rss = sum(v.rss_kb for v in vmas) * 1024
    vsize = sum(v.size for v in vmas)
    flagged_size = sum(v.size for v in flagged)
    return {"pid": pid, "resident_bytes": resident, "smaps_flagged_bytes": flagged_size, "rss_bytes": rss,
            "vsize_bytes": vsize, "rss_share": _share(resident, rss), "vsize_share": _share(flagged_size, vsize)}


def sample(session: Session, now_ns: int, proc: Path = Path("/proc")) -> Record:
    """A ``resident`` record for every live process that holds flagged memory now."""
    started = time.perf_counter_ns()
    mnemonics = [str(m) for m in session.header.get("mnemonics", [])]
    processes: List[Dict[str, object]] = []
    for space in session.model.live_spaces():
        if not space.live_bytes or space.pid <= 0:
            continue
        ranges = [(start, end) for start, end, _ in space.vmas] if not mnemonics else []
        figures = sample_process(space.pid, mnemonics, ranges, proc)
        if figures is not None:
            figures["mm"] = f"{space.mm:#x}" if space.mm is not None else None
            processes.append(figures)
    total = mem_total_bytes(proc)
    flagged_resident = sum(int(p["resident_bytes"]) for p in processes)  # type: ignore[call-overload]
    return {"type": RESIDENT_RECORD, "ts": now_ns, "source": "smaps", "mem_total_bytes": total,
            "flagged_resident_bytes": flagged_resident, "ram_share": _share(flagged_resident, total),
            "processes_sampled": len(processes), "sample_ns": time.perf_counter_ns() - started,
            "processes": processes}
