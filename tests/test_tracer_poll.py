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

