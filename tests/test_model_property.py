"""Property: for any operation sequence, the model agrees with an idealised kernel."""
from __future__ import annotations

from typing import List

from hypothesis import given, settings
from hypothesis import strategies as st

from mpxtrace.stats import Session

from helpers import MASK, OTHER, header
from kernel_sim import SimKernel, page

FLAGS = st.sampled_from([0, MASK, MASK | OTHER, OTHER])
SPAN = 24

op = st.one_of(
    st.tuples(st.just("mmap"), st.integers(0, 3), st.integers(0, SPAN - 1), st.integers(1, 6), FLAGS),
    st.tuples(st.just("munmap"), st.integers(0, 3), st.integers(0, SPAN - 1), st.integers(1, 6)),
    st.tuples(st.just("setflags"), st.integers(0, 3), st.integers(0, SPAN - 1), st.integers(1, 6), FLAGS,
              st.booleans()),
    st.tuples(st.just("mremap"), st.integers(0, 3), st.integers(0, SPAN - 1), st.integers(1, 4),
              st.integers(0, SPAN + 8)),
    st.tuples(st.just("fork"), st.integers(0, 3)),
    st.tuples(st.just("exit"), st.integers(0, 3)),
)


def run(ops: List[tuple], seeds: List[tuple]) -> None:
    sim = SimKernel()
    first = sim.new_mm()
    session = Session(header())
    for start, n, flags in seeds:
        if sim._index(first, page(start)) is None and all(sim._index(first, page(p)) is None for p in range(start, start + n)):
            rec = sim.seed(first, page(start), page(start + n), flags)
            if rec:
                session.apply(rec)
    live = [first]
    applied = 0
    for o in ops:
        if not live:
            break
        mm = live[o[1] % len(live)]
        if o[0] == "mmap":
            sim.mmap(mm, page(o[2]), page(o[2] + o[3]), o[4])
        elif o[0] == "munmap":
            sim.munmap(mm, page(o[2]), page(o[2] + o[3]))
        elif o[0] == "setflags":
            rng = range(o[2], o[2] + o[3])
            if all(sim._index(mm, page(p)) is not None for p in rng):
                sim.setflags(mm, page(o[2]), page(o[2] + o[3]), o[4], o[5])
        elif o[0] == "mremap":
            i = sim._index(mm, page(o[2]))
            if i is None:
                continue
            s, e, _ = sim.mms[mm][i]
            end = min(e, page(o[2] + o[3]))
            target = page(o[4])
            if target < end and page(o[2]) < target + (end - page(o[2])):
                continue  # overlapping move: the kernel refuses it
            sim.mremap(mm, page(o[2]), end, target)
        elif o[0] == "fork":
            live.append(sim.fork(mm))
        elif o[0] == "exit" and len(live) > 1:
            sim.exit(mm)
            live.remove(mm)
        for rec in sim.events[applied:]:
            session.apply(rec)
        applied = len(sim.events)
        by_mm = {s.mm: s for s in session.model.live_spaces() if s.mm is not None}
        for m in live:
            expected = sim.flagged(m)
            space = by_mm.get(m)
            got = [(s, e) for s, e, _ in space.vmas] if space else []
            assert got == expected, (o, got, expected)
    for space in session.model.spaces:
        assert space.allocated_bytes + space.seeded_bytes - space.freed_bytes == space.live_bytes
        assert space.live_bytes == sum(e - s for s, e, _ in space.vmas)
    assert session.model.anomalies == []


@settings(max_examples=400, deadline=None)
@given(st.lists(op, max_size=30), st.lists(st.tuples(st.integers(0, SPAN - 1), st.integers(1, 4), FLAGS), max_size=3))
def test_model_matches_idealised_kernel(ops: List[tuple], seeds: List[tuple]) -> None:
    run(ops, seeds)
