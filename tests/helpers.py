"""Builders of kernel event records for model tests (the shape decode_raw produces)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple

from mpxtrace.eventlog import LOG_VERSION, LogWriter, open_log
from mpxtrace.stats import Session

MASK = 0x2000  # VM_LOCKED
OTHER = 0x1  # a flag that only makes neighbours unmergeable
PAGE = 4096
MM = 0xFFFF888000100000
MM2 = 0xFFFF888000200000


def ev(kind: str, ts: int, start: int = 0, end: int = 0, flags: int = MASK, *, mm: int = MM, tgid: int = 100,
       owner: bool = True, comm: str = "work", ext: Optional[Tuple[int, int]] = None,
       **named: int) -> Dict[str, Any]:
    """`named`: the kind's own fields (split `at`, move `old_start`/`old_end`, fork `parent_mm`...)."""
    rec: Dict[str, Any] = {"type": "event", "kind": kind, "ts": ts, "mm": mm, "tgid": tgid, "tid": tgid,
                           "owner": owner, "comm": comm}
    if kind not in ("task", "mm_exit"):
        rec.update(start=start, end=end, flags=flags)
    if ext:
        rec["ext"] = list(ext)
    rec.update(named)
    return rec


def header(start_ns: int = 0, interval_ns: int = 1_000_000_000, mask: int = MASK) -> Dict[str, Any]:
    return {"type": "header", "format": "mpxtrace-log", "version": LOG_VERSION, "start_ns": start_ns,
            "interval_ns": interval_ns, "mask": mask, "names": ["VM_LOCKED"], "mnemonics": ["lo"], "tracer_pid": 1}


def live_and_replayed(records: Iterable[Dict[str, Any]], log: Path) -> Tuple[Session, Session]:
    """`records` applied live while written to the log `log`, and the log read back strictly and
    replayed as `report` does: the two sessions, to compare."""
    live = Session(header())
    writer = LogWriter(log)
    writer.write(live.header)
    for rec in records:
        writer.write(rec)
        live.apply(rec)
    writer.close()
    reader = open_log(log, strict=True)
    replay = Session(reader.header)
    for rec in reader.records():
        replay.apply(rec)
    return live, replay
