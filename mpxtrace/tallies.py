"""Aggregates the kernel program keeps itself: the `tallies` array (enum mpxtrace_tally in
bpf/mpxtrace_event.h).

Every event is counted by kind; the sizes of flagged mappings made (EV_MAP) and flagged VMAs
destroyed (EV_UNMAP), and the lifetimes of mappings destroyed exactly as they were made, go
into log2 histograms, in submit(), before the stream buffer may refuse the event: an
overflowing stream loses none of them (bpftrace's way).  The tracer reads
the array (a mapped array: no system call) at every interval and at the end, and logs it as a
cumulative `tallies` record, so `report` shows the same figures.  Per-process figures and the
lifetimes of mappings split, merged or moved before they died are not here: they need the
per-VMA picture, which the stream (and resync after a loss) keeps in user space.
"""
from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence

from .events import Kind, Record

__all__ = ["TALLIES_RECORD", "SIZE", "BUCKETS", "INDEX", "tallies_record", "window_counts"]

TALLIES_RECORD = "tallies"
BUCKETS = 64  # MPXTRACE_TALLY_BUCKETS
# enum mpxtrace_tally
INDEX: Dict[str, int] = {"EMITTED": 0, "MAP_BYTES": 16, "UNMAP_BYTES": 17, "MAP_LOG2": 18, "UNMAP_LOG2": 82,
                         "LIFETIME_NS": 146, "LIFETIME_LOG2": 147}
SIZE = 211  # TALLY_MAX


def _histogram(values: Sequence[int], sum_at: int, log2_at: int, unit: str) -> Record:
    buckets = values[log2_at:log2_at + BUCKETS]
    return {unit: values[sum_at], "log2": [[k, n] for k, n in enumerate(buckets) if n]}


def tallies_record(values: Sequence[int], ts: int) -> Record:
    """The log record for the array's current `values` (cumulative since the program loaded)."""
    if len(values) != SIZE:
        raise ValueError(f"the tallies array has {len(values)} values, the layout {SIZE}")
    emitted = {kind.name.lower(): values[INDEX["EMITTED"] + kind.value] for kind in Kind}
    # Each map (unmap) adds one to its kind's count and then one to a size bucket.  The array is
    # read while the kernel writes it: a read between the two adds saw a count one ahead of the
    # histogram (7.2 lab, overload: `report --strict` refused 458,217 sizes against 458,216
    # unmaps).  Counted from the histogram, the two agree by construction.
    for kind, log2_at in (("map", INDEX["MAP_LOG2"]), ("unmap", INDEX["UNMAP_LOG2"])):
        emitted[kind] = sum(values[log2_at:log2_at + BUCKETS])
    return {"type": TALLIES_RECORD, "ts": ts, "emitted": {k: v for k, v in emitted.items() if v},
            "mapped": _histogram(values, INDEX["MAP_BYTES"], INDEX["MAP_LOG2"], "bytes"),
            "destroyed": _histogram(values, INDEX["UNMAP_BYTES"], INDEX["UNMAP_LOG2"], "bytes"),
            "lifetimes": _histogram(values, INDEX["LIFETIME_NS"], INDEX["LIFETIME_LOG2"], "ns")}


COUNT_NAMES = ("events", "mapped", "mapped_bytes", "destroyed", "destroyed_bytes")


def window_counts(rec: Optional[Mapping[str, object]]) -> List[int]:
    """The cumulative counts an interval subtracts: events, mappings made and their bytes,
    VMAs destroyed and their bytes (zeros before the first tallies record)."""
    if rec is None:
        return [0] * len(COUNT_NAMES)
    emitted: Mapping[str, int] = rec["emitted"]  # type: ignore[assignment]
    mapped: Mapping[str, int] = rec["mapped"]  # type: ignore[assignment]
    destroyed: Mapping[str, int] = rec["destroyed"]  # type: ignore[assignment]
    return [sum(emitted.values()), emitted.get("map", 0), mapped["bytes"], emitted.get("unmap", 0),
            destroyed["bytes"]]
