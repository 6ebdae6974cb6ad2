"""Bounds-table statistics built from the model: log2 histograms, a per-interval timeline,
and the summary record.  Everything is derived from event timestamps, never from the wall
clock, so the live run and ``mpxtrace report`` produce the same summary."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .events import Record
from .model import AddressSpace, Allocation, Model

__all__ = ["Log2Histogram", "Stats", "Session", "SUMMARY_VERSION"]

SUMMARY_VERSION = 1


class Log2Histogram:
    """bpf_log2l-style buckets: bucket k holds values in [2^(k-1), 2^k); bucket 0 holds 0."""

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.buckets: Dict[int, int] = {}
        self.count = 0
        self.total = 0

    def add(self, value: int) -> None:
        key = max(0, int(value)).bit_length()
        self.buckets[key] = self.buckets.get(key, 0) + 1
        self.count += 1
        self.total += value

    def rows(self) -> List[Dict[str, int]]:
        """[low, high) and count per non-empty bucket, ascending."""
        out = []
        for key in sorted(self.buckets):
            low = 0 if key == 0 else 1 << (key - 1)
            out.append({"low": low, "high": 1 << key, "count": self.buckets[key]})
        return out

    def to_json(self) -> Dict[str, object]:
        return {"unit": self.unit, "count": self.count, "sum": self.total, "buckets": self.rows()}


@dataclass
class _Bucket:
    allocations: int = 0
    allocated_bytes: int = 0
    frees: int = 0
    freed_bytes: int = 0


@dataclass
class Stats:
    """Observer of the model: collects what the summary and interval views show."""

    start_ns: int
    interval_ns: int
    sizes: Log2Histogram = field(default_factory=lambda: Log2Histogram("bytes"))
    lifetimes: Log2Histogram = field(default_factory=lambda: Log2Histogram("ns"))
    timeline: Dict[int, _Bucket] = field(default_factory=dict)
    merges: int = 0
    by_origin: Dict[str, int] = field(default_factory=dict)

    def _bucket(self, ts: int) -> _Bucket:
        key = max(0, ts - self.start_ns) // self.interval_ns
        bucket = self.timeline.get(key)
        if bucket is None:
            bucket = self.timeline[key] = _Bucket()
        return bucket

    def on_allocation(self, space: AddressSpace, alloc: Allocation, ts: int) -> None:
        self.sizes.add(alloc.size)
        self.by_origin[alloc.origin] = self.by_origin.get(alloc.origin, 0) + 1
        bucket = self._bucket(ts)
        bucket.allocations += 1
        bucket.allocated_bytes += alloc.size

    def on_release(self, space: AddressSpace, alloc: Allocation, nbytes: int, ts: int) -> None:
        bucket = self._bucket(ts)
        bucket.freed_bytes += nbytes
        if alloc.remaining == 0:
            bucket.frees += 1
            if alloc.born_ns is not None:
                self.lifetimes.add(ts - alloc.born_ns)

    def on_merge(self, space: AddressSpace, joined: int, ts: int) -> None:
        self.merges += joined

    def timeline_json(self) -> List[Dict[str, int]]:
        return [
            {"t_ns": key * self.interval_ns, "allocations": b.allocations, "allocated_bytes": b.allocated_bytes,
             "frees": b.frees, "freed_bytes": b.freed_bytes}
            for key, b in sorted(self.timeline.items())
        ]


class Session:
    """One trace: the header, the model and its statistics, fed record by record.

    The live tracer and ``report`` both build a Session from the same records, which is
    why their summaries are identical.
    """

    def __init__(self, header: Record) -> None:
        if header.get("type") != "header":
            raise ValueError("a trace starts with a header record")
        self.header = header
        self.stats = Stats(int(header["start_ns"]), int(header["interval_ns"]))
        self.model = Model(int(header["mask"]), self.stats, int(header.get("tracer_pid", 0)))
        self.lost: Dict[str, int] = {}
        self.end_ns: Optional[int] = None
        self.last_ns = int(header["start_ns"])
        self.records = 0

    def apply(self, rec: Record) -> None:
        self.records += 1
        kind = rec.get("type")
        if kind == "lost":
            source = str(rec.get("source", "kernel"))
            self.lost[source] = self.lost.get(source, 0) + int(rec["count"])
        elif kind == "end":
            self.end_ns = int(rec["ts"])
        else:
            self.model.apply(rec)
        if "ts" in rec:
            self.last_ns = max(self.last_ns, int(rec["ts"]))

    @property
    def lost_events(self) -> int:
        return sum(self.lost.values())

    def summary(self) -> Record:
        end = self.end_ns if self.end_ns is not None else self.last_ns
        spaces = self.model.spaces
        return {
            "type": "summary",
            "version": SUMMARY_VERSION,
            "flags": {k: self.header[k] for k in ("mask", "names", "mnemonics") if k in self.header},
            "duration_ns": max(0, end - self.stats.start_ns),
            "complete": self.end_ns is not None,
            "events": self.model.events,
            "lost_events": self.lost_events,
            "lost_by_source": dict(sorted(self.lost.items())),
            "totals": {
                "live_bytes": sum(s.live_bytes for s in spaces),
                "live_vmas": sum(s.live_vmas for s in spaces),
                "allocations": sum(s.allocations for s in spaces),
                "allocated_bytes": sum(s.allocated_bytes for s in spaces),
                "frees": sum(s.frees for s in spaces),
                "freed_bytes": sum(s.freed_bytes for s in spaces),
                "merges": self.stats.merges,
                "allocations_by_origin": dict(sorted(self.stats.by_origin.items())),
            },
            "processes": [s.to_json() for s in spaces],
            "histograms": {
                "allocation_size": self.stats.sizes.to_json(),
                "lifetime": self.stats.lifetimes.to_json(),
            },
            "interval_ns": self.stats.interval_ns,
            "timeline": self.stats.timeline_json(),
            "anomalies": [a.to_json() for a in self.model.anomalies],
        }
