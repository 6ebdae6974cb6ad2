"""``report LOG --perfetto FILE.json``: the capture in Chrome's trace-event format, which the
Perfetto UI (ui.perfetto.dev) and chrome://tracing open.

Per process (pid = the traced process's pid): a ``process_name`` metadata event, a counter
track ``flagged live bytes`` updated at every change, and one async slice per allocation from
its birth to its full release (or to the end of the capture, then ``args.live_at_end``).
Memory mapped before the trace began (seeded from smaps) has no birth: it is on the counter,
and gets a slice from the start only if it is released.
Times are microseconds since the trace started.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from ..events import Record
from ..model import AddressSpace, Observer
from ..render import human_bytes
from ..stats import Session
from .files import create_private

__all__ = ["perfetto_trace", "write_perfetto", "replay_events", "COUNTER_NAME", "SLICE_CATEGORY"]

COUNTER_NAME = "flagged live bytes"
SLICE_CATEGORY = "allocation"


class _Recorder:
    """Observer beside the session's own: turns births and releases into trace events."""

    def __init__(self, inner: Observer, start_ns: int) -> None:
        self.inner = inner
        self.start_ns = start_ns
        self.events: List[Dict[str, object]] = []
        self.open: Dict[int, Tuple[int, int, str, AddressSpace]] = {}  # ident -> (begin ts, size, origin, space)
        self.touched: Dict[int, AddressSpace] = {}  # spaces changed by the record being applied
        self.names: Dict[int, str] = {}
        self.last: Dict[int, int] = {}  # id(space) -> live bytes last put on its counter

    def us(self, ts: int) -> float:
        return max(0, ts - self.start_ns) / 1000

    def on_allocation(self, space: AddressSpace, ident: int, size: int, origin: str, ts: int) -> None:
        self.inner.on_allocation(space, ident, size, origin, ts)
        self.open[ident] = (ts, size, origin, space)
        self.touched[id(space)] = space

    def on_release(self, space: AddressSpace, ident: int, size: int, origin: str, born_ns: Optional[int],
                   nbytes: int, remaining: int, ts: int) -> None:
        self.inner.on_release(space, ident, size, origin, born_ns, nbytes, remaining, ts)
        self.touched[id(space)] = space
        if born_ns is None and ident not in self.open:  # mapped before the trace began
            self.open[ident] = (self.start_ns, size, origin, space)
        if remaining == 0:
            self.slice(ident, ts, live_at_end=False)

    def on_merge(self, space: AddressSpace, joined: int, ts: int) -> None:
        self.inner.on_merge(space, joined, ts)

    def counters(self, ts: int) -> None:
        """The live bytes of every space the last record changed, as the model has them now."""
        for key, space in self.touched.items():
            self.names[space.pid] = space.comm
            if self.last.get(key) == space.live_bytes:
                continue  # e.g. a split: nothing to draw
            self.last[key] = space.live_bytes
            self.events.append({"ph": "C", "name": COUNTER_NAME, "pid": space.pid, "ts": self.us(ts),
                                "args": {"bytes": space.live_bytes}})
        self.touched = {}

    def slice(self, ident: int, end_ts: int, live_at_end: bool) -> None:
        begin, size, origin, space = self.open.pop(ident)
        common = {"cat": SLICE_CATEGORY, "id": ident, "pid": space.pid, "tid": space.pid,
                  "name": f"{origin} {human_bytes(size)}"}
        self.events.append(dict(common, ph="b", ts=self.us(begin), args={"size": size, "origin": origin}))
        self.events.append(dict(common, ph="e", ts=self.us(end_ts), args={"live_at_end": live_at_end}))


def replay_events(header: Record, records: Iterable[Record]) -> Tuple[Session, List[Dict[str, object]], Dict[int, str]]:
    """Replay a capture: the session, its trace events (counters and slices), process names by pid."""
    session = Session(header)
    recorder = _Recorder(session.model.observer, int(header["start_ns"]))
    session.model.observer = recorder
    for rec in records:
        session.apply(rec)
        if rec.get("type") == "seed":  # not a birth, so no observer call: find its space by pid
            for space in session.model.spaces:
                if space.pid == int(rec["pid"]) and not space.exited:
                    recorder.touched[id(space)] = space
        if recorder.touched:
            recorder.counters(int(rec["ts"]))
    end = session.end_ns if session.end_ns is not None else session.last_ns
    for ident in sorted(recorder.open):  # still live when the capture ended
        recorder.slice(ident, end, live_at_end=True)
    return session, recorder.events, recorder.names


def perfetto_trace(header: Record, records: Iterable[Record]) -> Dict[str, object]:
    """The trace-event document for a capture."""
    session, events, names = replay_events(header, records)
    meta: List[Dict[str, object]] = [
        {"ph": "M", "name": "process_name", "pid": pid, "args": {"name": f"{comm or '?'} [{pid}]"}}
        for pid, comm in sorted(names.items())]
    return {"traceEvents": meta + events, "displayTimeUnit": "ns",
            "metadata": {"mpxtrace": {"flags": header.get("names", []), "mask": header.get("mask"),
                                      "kernel": header.get("kernel"), "events": session.model.events}}}


def write_perfetto(header: Record, records: Iterable[Record], path: Path) -> Dict[str, object]:
    doc = perfetto_trace(header, records)
    with create_private(path) as fh:
        fh.write(json.dumps(doc, separators=(",", ":")).encode())
    return doc
