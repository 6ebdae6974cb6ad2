"""Exited address spaces are folded, not kept forever (issue 8: a fork storm must not grow memory)."""
from __future__ import annotations

import tracemalloc
from typing import List

from mpxtrace.model import EXITED_KEPT, Model
from mpxtrace.stats import Session

from helpers import MASK, MM, PAGE, ev, header

A = 0x7F0000000000
CHILD = 0xFFFF888100000000


def fork_storm(apply, cycles: int, first: int = 0, pages=lambda i: 1) -> int:  # type: ignore[no-untyped-def]
    """The parent forks `cycles` children one after another; each maps, unmaps and exits.
    Child mm pointers are reused (as the kernel's slab does).  Returns the next timestamp."""
    ts = first * 10 + 1
    for i in range(first, first + cycles):
        mm, pid = CHILD + (i % 7) * 0x1000, 1000 + i
        n = pages(i)
        apply(ev("task", ts, mm=mm, tgid=pid, owner=False, comm="child"))
        apply(ev("map", ts + 1, A, A + n * PAGE, mm=mm, tgid=pid, comm="child"))
        apply(ev("unmap", ts + 2, A, A + n * PAGE, mm=mm, tgid=pid))
        apply(ev("mm_exit", ts + 3, mm=mm, tgid=pid))
        ts += 10
    return ts


def test_exited_spaces_are_folded_with_their_counts() -> None:
    m = Model(MASK, exited_kept=10)
    m.apply(ev("map", 0, A, A + PAGE))  # the parent, alive throughout
    fork_storm(m.apply, 1000, pages=lambda i: 5 if i in (3, 500) else 1)
    assert len(m.spaces) <= 1 + 2 * 10
    assert [s.pid for s in m.live_spaces()] == [100]
    kept = [s for s in m.spaces if s.exited]
    assert len(kept) >= 10
    assert {1003, 1500} <= {s.pid for s in kept}  # the busiest exited ones are kept whole
    assert m.folded.processes + len(kept) == 1000
    totals = m.totals()
    assert (totals["allocations"], totals["frees"]) == (1001, 1000)
    assert totals["allocated_bytes"] == (1 + 1000 + 2 * 4) * PAGE == totals["freed_bytes"] + PAGE


def test_session_summary_and_intervals_count_folded_spaces() -> None:
    session = Session(header())
    session.apply(ev("map", 0, A, A + PAGE))
    ts = fork_storm(session.apply, 3 * EXITED_KEPT)
    first = session.interval_snapshot(ts)
    ts = fork_storm(session.apply, 3 * EXITED_KEPT, first=3 * EXITED_KEPT)
    second = session.interval_snapshot(ts)
    summary = session.summary()
    assert summary["totals"]["allocations"] == 1 + 6 * EXITED_KEPT
    assert summary["totals"]["frees"] == 6 * EXITED_KEPT
    assert summary["exited_folded"]["processes"] + len(summary["processes"]) - 1 == 6 * EXITED_KEPT
    assert len(summary["processes"]) <= 1 + 2 * EXITED_KEPT
    # every interval counts exactly its own children, folded or not
    assert first["totals"]["allocations"] == 1 + 3 * EXITED_KEPT
    assert second["totals"]["allocations"] == second["totals"]["frees"] == 3 * EXITED_KEPT
    assert len(session._window_counts) <= len(session.model.spaces)
    cumulative = session.interval_snapshot(ts + 1, cumulative=True)
    assert cumulative["totals"]["allocations"] == 1 + 6 * EXITED_KEPT


def test_fork_storm_memory_stays_flat() -> None:
    session = Session(header())
    session.apply(ev("map", 0, A, A + PAGE, mm=MM))
    ts = fork_storm(session.apply, 3 * EXITED_KEPT)  # warm-up: the kept exited spaces fill up
    tracemalloc.start()
    try:
        sizes: List[int] = []
        for round_ in range(1, 9):
            ts = fork_storm(session.apply, EXITED_KEPT, first=EXITED_KEPT * (2 + round_))
            session.interval_snapshot(ts)
            sizes.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    # 6,000 more exited spaces kept between rounds 2 and 8 would take over 5 MB
    assert sizes[-1] - sizes[1] < 1_000_000, sizes
    assert len(session.model.spaces) <= 1 + 2 * EXITED_KEPT
