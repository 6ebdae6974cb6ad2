"""Loss accounting in the tracer loop, with a stand-in for the loaded kernel program."""
from __future__ import annotations

from types import SimpleNamespace
from typing import List, Tuple

from mpxtrace.events import COUNTERS
from mpxtrace.flags import resolve_flags
from mpxtrace.tracer import TraceOptions, Tracer


class FakeProgram:
    def __init__(self, buffer: str) -> None:
        self.config = SimpleNamespace(buffer=buffer)
        self.values = dict.fromkeys(COUNTERS, 0)
        self.slots: List[int] = []  # lost_spaces: empty where the program keeps none

        self.misses = 0
        self.skipped = 0

    def counters(self) -> List[int]:
        return [self.values[name] for name in COUNTERS]

    def lost_slots(self) -> Tuple[int, ...]:
        return tuple(self.slots)

    def probe_misses(self) -> int:
        return self.misses

    def programs_skipped(self) -> int:
        return self.skipped


def tracer(buffer: str) -> Tracer:
    t = Tracer(TraceOptions(resolve_flags(["lo"], None)), features=None)  # type: ignore[arg-type]
    t._program = FakeProgram(buffer)  # type: ignore[assignment]
    return t


def lost(t: Tracer) -> List[tuple]:
    return [(r["source"], r["count"]) for r in t._pending if r["type"] == "lost"]


def test_ring_losses_come_from_the_kernel_counter_as_deltas() -> None:
    t = tracer("ring")
    t._program.values["lost_submit"] = 5  # type: ignore[union-attr]
    t._read_counters(1)
    t._read_counters(2)
    t._program.values["lost_submit"] = 7  # type: ignore[union-attr]
    t._read_counters(3)
    assert lost(t) == [("ring_buffer", 5), ("ring_buffer", 2)]


def test_perf_losses_counted_twice_are_reported_once() -> None:
    t = tracer("perf")
    t._program.values["lost_submit"] = 10  # type: ignore[union-attr]  # kernel saw -ENOSPC ten times
    t._read_counters(1)
    t._on_perf_lost(10)  # the callback reports the same ten, later
    t._read_counters(2)
    t._on_perf_lost(3)  # a kernel older than 5.4 counts nothing: only the callback knows
    t._read_counters(3)
    assert lost(t) == [("perf_buffer", 10), ("perf_buffer", 3)]


def test_frame_overflow_is_reported_separately() -> None:
    t = tracer("ring")
    t._program.values["frame_overflow"] = 2  # type: ignore[union-attr]
    t._read_counters(1)
    assert lost(t) == [("frame_overflow", 2)]


def test_signals_are_handled_from_the_moment_the_tracer_is_attached(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A caller that reacts to "attached" with SIGUSR1 or SIGINT must not kill the tracer (seen in the lab)."""
    import os
    import signal

    import mpxtrace.tracer as tracer_mod

    class Loaded(FakeProgram):
        def open_buffer(self, on_event, on_lost) -> None:  # type: ignore[no-untyped-def]
            pass

    monkeypatch.setattr(tracer_mod, "build_config", lambda *a, **k: SimpleNamespace(buffer="ring", plan=SimpleNamespace(attaches=[], uses=lambda hook: True)))
    monkeypatch.setattr(tracer_mod, "load_program", lambda config: Loaded("ring"))
    t = Tracer(TraceOptions(resolve_flags(["lo"], None), seed=False), features=None)  # type: ignore[arg-type]
    before = signal.getsignal(signal.SIGUSR1)
    t.start()
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGINT)
        assert t._snapshot_requested and t._stop
    finally:
        t._restore_signals()
    assert signal.getsignal(signal.SIGUSR1) == before


def test_stale_frames_full_maps_and_probe_misses_are_each_a_loss_source() -> None:
    t = tracer("ring")
    t._program.values["frame_stale"] = 3  # type: ignore[union-attr]
    t._program.values["map_full"] = 1  # type: ignore[union-attr]
    t._program.misses = 4  # type: ignore[union-attr]
    t._read_counters(1)
    t._read_counters(2)
    t._program.misses = 6  # type: ignore[union-attr]
    t._read_counters(3)
    assert sorted(lost(t)) == [("frame_stale", 3), ("map_full", 1), ("probe_missed", 2), ("probe_missed", 4)]


def test_programs_the_kernel_skipped_are_a_loss_source() -> None:
    """A preempted fentry/fexit program makes the kernel skip the others on its CPU: counted."""
    t = tracer("ring")
    t._program.skipped = 2  # type: ignore[union-attr]
    t._read_counters(1)
    t._program.skipped = 7  # type: ignore[union-attr]
    t._read_counters(2)
    t._read_counters(3)
    assert lost(t) == [("program_skipped", 2), ("program_skipped", 5)]


def test_recursion_misses_sits_where_the_kernel_uapi_puts_it() -> None:
    """struct bpf_prog_info: recursion_misses follows run_time_ns and run_cnt at byte 208."""
    from mpxtrace.kernel.proginfo import RECURSION_MISSES_OFFSET, recursion_misses
    assert RECURSION_MISSES_OFFSET == 208
    assert recursion_misses(-1) is None  # a bad fd: no figure, no exception


def test_the_costly_loss_counts_are_read_at_most_every_tenth_of_a_second_but_at_every_catch_up() -> None:
    """tracefs and one bpf call per program cost about 3 ms a turn under TCG; a catch-up (snapshot,
    resync pass, the end) must still see every loss, or a pass could miss one."""
    from mpxtrace.tracer import SLOW_COUNTERS_NS
    t = tracer("ring")
    reads = []
    t._program.probe_misses = lambda: reads.append(1) or t._program.misses  # type: ignore[union-attr, method-assign]
    t._read_counters(0, thorough=False)
    t._program.misses = 4  # type: ignore[union-attr]
    t._read_counters(SLOW_COUNTERS_NS - 1, thorough=False)  # too soon: not read
    assert len(reads) == 1 and lost(t) == []
    t._read_counters(SLOW_COUNTERS_NS - 1)  # a catch-up: read now
    assert len(reads) == 2 and lost(t) == [("probe_missed", 4)]
    t._program.misses = 6  # type: ignore[union-attr]
    t._read_counters(2 * SLOW_COUNTERS_NS, thorough=False)  # due again
    assert len(reads) == 3 and lost(t) == [("probe_missed", 4), ("probe_missed", 2)]
