"""The tracer's loop keeps turning under a load faster than it: one ring-buffer poll takes at
most POLL_BATCH events (libbpf's poll returns only when the ring is empty, which a sustained
load never lets happen; the soak saw snapshots unanswered and memory growing)."""
from __future__ import annotations

import ctypes
from types import SimpleNamespace
from typing import Any, Callable, Optional

from mpxtrace.events import RawEvent
from mpxtrace.flags import resolve_flags
from mpxtrace.tracer import POLL_BATCH, TraceOptions, Tracer


class EndlessRing:
    """A ring buffer under a producer that never stops: poll calls back until told to stop."""

    def __init__(self) -> None:
        self.config = SimpleNamespace(buffer="ring")
        self.on_event: Optional[Callable[[Any], int]] = None
        self.event = RawEvent()
        self.event.kind = 1  # a map
        self.event.start, self.event.end, self.event.vm_flags = 0x1000, 0x2000, 0x2000
        self.delivered = 0

    def open_buffer(self, on_event: Callable[[Any], int], on_lost: Callable[[int], None]) -> None:
        self.on_event = on_event

    def poll(self, timeout_ms: int) -> None:
        assert self.on_event is not None
        while self.delivered < 10 * POLL_BATCH:  # stands for "forever"
            self.delivered += 1
            if self.on_event(ctypes.addressof(self.event)) < 0:
                return


def test_one_poll_takes_a_bounded_batch_and_the_rest_waits_in_the_ring() -> None:
    t = Tracer(TraceOptions(resolve_flags(["lo"], None), seed=False), features=None)  # type: ignore[arg-type]
    ring = EndlessRing()
    t._program = ring  # type: ignore[assignment]
    ring.open_buffer(t._on_raw, lambda count: None)
    ring.poll(100)
    assert ring.delivered == POLL_BATCH == len(t._pending)
    t._pending.clear()  # the loop drained them
    ring.poll(100)
    assert ring.delivered == 2 * POLL_BATCH



def test_catching_up_stops_at_events_newer_than_the_call(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A snapshot or a resync pass reads what was there when it asked, not what an endless
    load adds meanwhile (under the soak's load a snapshot waited 38 s)."""
    import time as time_mod
    t = Tracer(TraceOptions(resolve_flags(["lo"], None), seed=False), features=None)  # type: ignore[arg-type]
    ring = EndlessRing()
    t._program = ring  # type: ignore[assignment]
    monkeypatch.setattr(t, "_read_counters", lambda now: None)
    from mpxtrace.stats import Session
    from helpers import header
    t.session = Session(header())
    clock = [1_000]
    monkeypatch.setattr(time_mod, "monotonic_ns", lambda: clock[0])
    ring.event.ts_ns = 500  # older than the call: the backlog
    calls = []

    def poll(timeout_ms: int) -> None:
        calls.append(timeout_ms)
        EndlessRing.poll(ring, timeout_ms)
        ring.event.ts_ns = 2_000  # from the second batch on, events newer than the call
    ring.poll = poll  # type: ignore[method-assign]
    ring.open_buffer(t._on_raw, lambda count: None)
    t._flush_all()
    assert len(calls) == 2  # the backlog, then one batch reaching past the call: not 64


def test_catching_up_ends_a_poll_at_the_first_event_newer_than_the_call(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Not a whole batch past it: under the 7.2 overload test the tracer had a seventh of a CPU,
    a batch took 10-14 s to apply, and a snapshot waited for it."""
    import time as time_mod
    t = Tracer(TraceOptions(resolve_flags(["lo"], None), seed=False), features=None)  # type: ignore[arg-type]
    ring = EndlessRing()
    t._program = ring  # type: ignore[assignment]
    monkeypatch.setattr(t, "_read_counters", lambda now: None)
    from mpxtrace.stats import Session
    from helpers import header
    t.session = Session(header())
    monkeypatch.setattr(time_mod, "monotonic_ns", lambda: 1_000)

    def on_event(data: Any) -> int:  # the ring holds 10 events older than the call, then newer ones
        ring.event.ts_ns = 500 if ring.delivered <= 10 else 2_000
        return t._on_raw(data)
    ring.open_buffer(on_event, lambda count: None)
    t._flush_all()
    assert ring.delivered == 11  # the ten older ones and the first newer one, not a batch
    assert t._poll_until is None  # the next ordinary poll takes a full batch again
    t._pending.clear()
    ring.poll(100)
    assert ring.delivered == 11 + POLL_BATCH
