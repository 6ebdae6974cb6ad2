"""Bounds-table statistics built from the model: log2 histograms, a per-interval timeline,
and the summary record.  Everything is derived from event timestamps, never from the wall
clock, so the live run and ``mpxtrace report`` produce the same summary."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from .events import Record
from .model import AddressSpace, Model
from .resync import RESYNC_RECORD, apply_resync
from .tallies import COUNT_NAMES as KERNEL_COUNTS, TALLIES_RECORD, window_counts

__all__ = ["Log2Histogram", "Stats", "Session", "SUMMARY_VERSION", "RESIDENT_RECORD"]

SUMMARY_VERSION = 1
RESIDENT_RECORD = "resident"  # sampled resident memory (mpxtrace/resident.py): I/O, kept out of the model


class Log2Histogram:
    """bpf_log2l-style buckets: bucket k holds values in [2^(k-1), 2^k); bucket 0 holds 0."""

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.buckets: Dict[int, int] = {}
        self.count = 0
        self.total = 0

    def add(self, value: int) -> None:
        key = value.bit_length() if value > 0 else 0
        self.buckets[key] = self.buckets.get(key, 0) + 1
        self.count += 1
        self.total += value

    @classmethod
    def from_buckets(cls, unit: str, buckets: List[List[int]], total: int) -> "Log2Histogram":
        """The histogram the kernel built (tallies.py): [bucket, count] pairs and the sum."""
        hist = cls(unit)
        hist.buckets = {bucket: count for bucket, count in buckets}
        hist.count = sum(hist.buckets.values())
        hist.total = total
        return hist

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


TIMELINE_ROWS = 4096  # at most; beyond, the interval doubles (Stats._coarsen)


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
    # the same two histograms for the current interval only (reset by Session.interval_snapshot)
    window_sizes: Log2Histogram = field(default_factory=lambda: Log2Histogram("bytes"))
    window_lifetimes: Log2Histogram = field(default_factory=lambda: Log2Histogram("ns"))

    def reset_window(self) -> None:
        self.window_sizes = Log2Histogram("bytes")
        self.window_lifetimes = Log2Histogram("ns")

    def _bucket(self, ts: int) -> _Bucket:
        key = max(0, ts - self.start_ns) // self.interval_ns
        bucket = self.timeline.get(key)
        if bucket is None:
            if len(self.timeline) >= TIMELINE_ROWS:
                self._coarsen()
                return self._bucket(ts)
            bucket = self.timeline[key] = _Bucket()
        return bucket

    def _coarsen(self) -> None:
        """Twice the interval, each pair of rows summed: a trace of days keeps a bounded timeline
        (one row per busy second was 86,400 a day), and `report` coarsens at the same record."""
        merged: Dict[int, _Bucket] = {}
        for key, b in self.timeline.items():
            into = merged.setdefault(key // 2, _Bucket())
            into.allocations += b.allocations
            into.allocated_bytes += b.allocated_bytes
            into.frees += b.frees
            into.freed_bytes += b.freed_bytes
        self.timeline = merged
        self.interval_ns *= 2

    def on_allocation(self, space: AddressSpace, ident: int, size: int, origin: str, ts: int) -> None:
        self.sizes.add(size)
        self.window_sizes.add(size)
        self.by_origin[origin] = self.by_origin.get(origin, 0) + 1
        bucket = self._bucket(ts)
        bucket.allocations += 1
        bucket.allocated_bytes += size

    def on_release(self, space: AddressSpace, ident: int, size: int, origin: str, born_ns: Optional[int],
                   nbytes: int, remaining: int, ts: int) -> None:
        bucket = self._bucket(ts)
        bucket.freed_bytes += nbytes
        if remaining == 0:
            bucket.frees += 1
            if born_ns is not None:
                self.lifetimes.add(ts - born_ns)
                self.window_lifetimes.add(ts - born_ns)

    def on_merge(self, space: AddressSpace, joined: int, ts: int) -> None:
        self.merges += joined

    def timeline_json(self) -> List[Dict[str, int]]:
        return [
            {"t_ns": key * self.interval_ns, "allocations": b.allocations, "allocated_bytes": b.allocated_bytes,
             "frees": b.frees, "freed_bytes": b.freed_bytes}
            for key, b in sorted(self.timeline.items())
        ]


_WINDOW_COUNTS = ("allocations", "frees", "allocated_bytes", "freed_bytes")


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
        self.drifts = 0  # --verify's drift records (counted: a lasting drift repeats at every check)
        self.resyncs = 0  # resync records: the picture re-read from smaps after lost events (resync.py)
        self.resident: Optional[Record] = None  # the latest resident sample, if the tracer took any
        self.tallies: Optional[Record] = None  # the kernel's own aggregates, latest (tallies.py)
        # where the current interval began: event and lost totals, per-space counts (by id: a
        # space the model drops is forgotten here at once, so ids stay unique), and what spaces
        # the model dropped during the interval counted in it (folded)
        self.intervals = 0
        self._window_start_ns = int(header["start_ns"])
        self._window_events = 0
        self._window_lost: Dict[str, int] = {}
        self._window_counts: Dict[int, Tuple[int, ...]] = {}
        self._window_folded = dict.fromkeys(_WINDOW_COUNTS, 0)
        self._window_kernel = window_counts(None)
        self.model.on_fold.append(self._forget)

    def _forget(self, spaces: List[AddressSpace]) -> None:
        """The model folded these exited spaces: what they did this interval stays in its totals."""
        for space in spaces:
            before = self._window_counts.pop(id(space), (0,) * len(_WINDOW_COUNTS))
            for name, b in zip(_WINDOW_COUNTS, before):
                self._window_folded[name] += getattr(space, name) - b

    def apply(self, rec: Record) -> None:
        self.records += 1
        kind = rec.get("type")
        if kind == "event":  # nearly every record: straight to the model
            self.model.apply_event(rec)
            ts = int(rec["ts"])
            if ts > self.last_ns:
                self.last_ns = ts
            return
        if kind == "lost":
            source = str(rec.get("source", "kernel"))
            self.lost[source] = self.lost.get(source, 0) + int(rec["count"])
            if "slots" in rec:  # whose they were (lostspaces.py)
                self.model.charge_lost({int(slot): int(count) for slot, count in rec["slots"]})
            else:
                self.model.lost_unattributed = True
        elif kind == "end":
            self.end_ns = int(rec["ts"])
        elif kind == RESIDENT_RECORD:
            self.resident = rec
        elif kind == TALLIES_RECORD:
            self.tallies = rec
        elif kind == "drift":
            self.drifts += 1
        elif kind == RESYNC_RECORD:
            self.resyncs += 1
            apply_resync(self.model, rec)
        else:
            self.model.apply(rec)
        if "ts" in rec:
            self.last_ns = max(self.last_ns, int(rec["ts"]))

    @property
    def lost_events(self) -> int:
        return sum(self.lost.values())

    def interval_snapshot(self, now_ns: Optional[int] = None, cumulative: bool = False) -> Record:
        """The interval record, then a new interval begins.

        Every windowed figure (counts, bytes, events, lost events, histograms) covers the same
        window: the last interval, or since the start with `cumulative`; live figures are as of
        the end of it.  Only per-interval bookkeeping is reset, so the summary is unaffected.
        """
        end = max(self.last_ns, now_ns if now_ns is not None else self.last_ns)
        start = self.stats.start_ns if cumulative else self._window_start_ns
        seconds = max(end - start, 1) / 1e9
        processes = []
        folded = self.model.folded
        window_totals = ({name: folded.sums[name] for name in _WINDOW_COUNTS} if cumulative
                         else dict(self._window_folded))
        for space in self.model.spaces:
            now_counts = tuple(getattr(space, name) for name in _WINDOW_COUNTS)
            before = (0,) * len(_WINDOW_COUNTS) if cumulative else self._window_counts.get(id(space), (0,) * 4)
            self._window_counts[id(space)] = now_counts
            delta = dict(zip(_WINDOW_COUNTS, (n - b for n, b in zip(now_counts, before))))
            if space.exited and not any(delta.values()):
                continue
            for name, value in delta.items():
                window_totals[name] += value
            processes.append(dict(space.to_json(), **delta))
        resident = self._resident_by_space()
        for proc in processes:
            proc.update(resident.get((proc["pid"], proc["mm"]), {}))
        processes.sort(key=lambda p: (-int(p["live_bytes"]), int(p["pid"])))
        lost = {k: v - (0 if cumulative else self._window_lost.get(k, 0)) for k, v in sorted(self.lost.items())}
        events = self.model.events - (0 if cumulative else self._window_events)
        sizes = self.stats.sizes if cumulative else self.stats.window_sizes
        lifetimes = self.stats.lifetimes if cumulative else self.stats.window_lifetimes
        rec: Record = {
            "type": "interval",
            "ts": end,
            "seq": self.intervals,
            "window": "since_start" if cumulative else "interval",
            "window_start_ns": start,
            "window_ns": end - start,
            "events": events,
            "lost_events": sum(lost.values()),
            "lost_by_source": {k: v for k, v in lost.items() if v},
            "totals": dict(window_totals,
                           live_bytes=sum(s.live_bytes for s in self.model.spaces),
                           live_vmas=sum(s.live_vmas for s in self.model.spaces),
                           processes=sum(1 for s in self.model.spaces if s.live_bytes)),
            "rate": {"allocations_per_s": round(window_totals["allocations"] / seconds, 3),
                     "allocated_bytes_per_s": round(window_totals["allocated_bytes"] / seconds),
                     "freed_bytes_per_s": round(window_totals["freed_bytes"] / seconds),
                     "events_per_s": round(events / seconds, 3)},
            "processes": processes,
            "histograms": {"allocation_size": sizes.to_json(), "lifetime": lifetimes.to_json()},
            "resident": self._resident_system(),
            "kernel": self._kernel_window(cumulative, seconds),
        }
        self.intervals += 1
        self._window_start_ns = end
        self._window_events = self.model.events
        self._window_lost = dict(self.lost)
        self._window_folded = dict.fromkeys(_WINDOW_COUNTS, 0)
        self._window_kernel = window_counts(self.tallies)
        self.stats.reset_window()
        return rec

    def _kernel_window(self, cumulative: bool, seconds: float) -> Optional[Record]:
        """The window's figures from the kernel's own counts (as of the latest tallies record):
        complete even when the stream lost events."""
        if self.tallies is None:
            return None
        before = window_counts(None) if cumulative else self._window_kernel
        delta = {name: now - then for name, now, then in zip(KERNEL_COUNTS, window_counts(self.tallies), before)}
        return dict(delta, **{f"{name}_per_s": round(value / seconds, 3) for name, value in delta.items()})

    def kernel_histograms(self) -> Dict[str, Log2Histogram]:
        """The kernel's histograms as of the latest tallies record (none before it): sizes of
        flagged mappings made and VMAs destroyed, and the lifetimes of mappings destroyed exactly
        as they were made (bpf/mpxtrace.bpf.c tally_event)."""
        rec = self.tallies
        if rec is None:
            return {}
        return {name: Log2Histogram.from_buckets(unit, rec[part]["log2"], rec[part][unit])
                for name, part, unit in (("mapped", "mapped", "bytes"), ("destroyed", "destroyed", "bytes"),
                                         ("lifetime", "lifetimes", "ns"))}

    def kernel_tallies(self) -> Optional[Record]:
        """The summary's `kernel_tallies`: what the kernel program counted itself (tallies.py)."""
        rec = self.tallies
        if rec is None:
            return None
        emitted: Dict[str, int] = rec["emitted"]
        out: Record = {"ts": rec["ts"], "events": sum(emitted.values()), "events_by_kind": dict(sorted(emitted.items()))}
        out.update((name, hist.to_json()) for name, hist in self.kernel_histograms().items())
        return out

    def _resident_by_space(self) -> Dict[Tuple[object, object], Dict[str, object]]:
        if self.resident is None:
            return {}
        return {(p["pid"], p.get("mm")): {k: v for k, v in p.items() if k not in ("pid", "mm", "comm")}
                for p in self.resident.get("processes", [])}

    def _resident_system(self) -> Optional[Dict[str, object]]:
        if self.resident is None:
            return None
        return {k: v for k, v in self.resident.items() if k not in ("type", "processes")}

    def summary(self) -> Record:
        end = self.end_ns if self.end_ns is not None else self.last_ns
        spaces = self.model.spaces
        totals = self.model.totals()
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
                "allocations": totals["allocations"],
                "allocated_bytes": totals["allocated_bytes"],
                "frees": totals["frees"],
                "freed_bytes": totals["freed_bytes"],
                "merges": self.stats.merges,
                "allocations_by_origin": dict(sorted(self.stats.by_origin.items())),
            },
            # live spaces and the busiest exited ones; the other exited ones summed (model.FoldedSpaces)
            "processes": [s.to_json() for s in spaces],
            "exited_folded": self.model.folded.to_json(),
            "histograms": {
                "allocation_size": self.stats.sizes.to_json(),
                "lifetime": self.stats.lifetimes.to_json(),
            },
            "interval_ns": self.stats.interval_ns,
            "timeline": self.stats.timeline_json(),
            "anomalies": [a.to_json() for a in self.model.anomalies],  # the first ANOMALIES_KEPT
            "anomaly_count": self.model.anomaly_count,
            "anomalies_after_loss": self.model.anomalies_after_loss,
            # trace --verify: VMAs where the model and /proc/PID/smaps disagreed
            "drift": self.drifts,
            # after lost events: how often the picture was re-read from smaps; the histograms,
            # timeline and counts hold only what the stream delivered
            "resyncs": self.resyncs,
            "histograms_complete": not self.lost_events,
            "resident": self.resident,
            # counted in the kernel, so complete even when the stream lost events (tallies.py)
            "kernel_tallies": self.kernel_tallies(),
        }
