"""Property: RangeMap behaves as the obvious implementation, a plain list scanned whole.

Chunks are made tiny (a few ranges) so that splitting, merging and dropping chunks happen
within the short operation sequences hypothesis tries; one test runs the real chunk size.
Values and bounds that array('Q') cannot hold (negative, 2**64 and above, not ints) are mixed
in, so the switch to plain lists is covered too.
"""
from __future__ import annotations

import random
from typing import Any, List, Optional, Tuple
from unittest import mock

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from mpxtrace import rangemap
from mpxtrace.rangemap import RangeMap

Range = Tuple[int, int, Any]
SPAN = 80  # addresses used, in units above the base


class Reference:
    """A sorted list of (start, end, value), every operation a full scan."""

    def __init__(self) -> None:
        self.ranges: List[Range] = []

    def _set(self, ranges: List[Range]) -> None:
        self.ranges = sorted(ranges, key=lambda r: r[0])

    def insert(self, start: int, end: int, value: Any) -> None:
        if start >= end or any(s < end and start < e for s, e, _ in self.ranges):
            raise ValueError("empty or overlapping")
        self._set(self.ranges + [(start, end, value)])

    def carve(self, start: int, end: int) -> List[Range]:
        if start >= end:
            return []
        kept: List[Range] = []
        removed: List[Range] = []
        for s, e, v in self.ranges:
            if e <= start or s >= end:
                kept.append((s, e, v))
                continue
            if s < start:
                kept.append((s, start, v))
            if e > end:
                kept.append((end, e, v))
            removed.append((max(s, start), min(e, end), v))
        self._set(kept)
        return removed

    def split_at(self, addr: int) -> bool:
        for s, e, v in self.ranges:
            if s < addr < e:
                self._set([r for r in self.ranges if r[0] != s] + [(s, addr, v), (addr, e, v)])
                return True
        return False

    def containing(self, addr: int) -> Optional[Range]:
        return next(((s, e, v) for s, e, v in self.ranges if s <= addr < e), None)

    def overlapping(self, start: int, end: int) -> List[Range]:
        return [(max(s, start), min(e, end), v) for s, e, v in self.ranges if s < end and start < e]

    def gaps(self, start: int, end: int) -> List[Tuple[int, int]]:
        """Address by address: the runs no range covers."""
        covered = {a for s, e, _ in self.ranges for a in range(max(s, start), min(e, end))}
        out: List[Tuple[int, int]] = []
        for a in range(start, end):
            if a in covered:
                continue
            if out and out[-1][1] == a:
                out[-1] = (out[-1][0], a + 1)
            else:
                out.append((a, a + 1))
        return out


LENGTHS = st.one_of(st.integers(-1, 8), st.integers(-1, SPAN))  # mostly holes inside or across a few ranges
VALUES = st.one_of(st.integers(0, 3), st.integers(0, 2**64 - 1),
                   st.sampled_from([-1, 2**64, "x", None]))


class RangeMapMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.real: RangeMap[Any] = RangeMap()
        self.ref = Reference()
        self.base = 0
        self._load: Any = None

    @initialize(load=st.sampled_from([2, 4, 8]),
                base=st.sampled_from([0, 0x7F0000000000, 2**64 - SPAN // 2]))  # the last: ends past 2**64-1
    def setup(self, load: int, base: int) -> None:
        self._load = mock.patch.object(rangemap, "_LOAD", load)
        self._load.start()
        self.base = base

    def teardown(self) -> None:
        if self._load is not None:
            self._load.stop()

    def _addr(self, unit: int) -> int:
        return self.base + unit

    @rule(start=st.integers(0, SPAN), length=st.integers(-1, 6), value=VALUES)
    def insert(self, start: int, length: int, value: Any) -> None:
        lo, hi = self._addr(start), self._addr(start + length)
        try:
            self.ref.insert(lo, hi, value)
        except ValueError:
            with pytest.raises(ValueError):
                self.real.insert(lo, hi, value)
        else:
            self.real.insert(lo, hi, value)

    @rule(start=st.integers(0, SPAN), count=st.integers(1, 12), value=VALUES)
    def insert_descending(self, start: int, count: int, value: Any) -> None:
        """One-unit ranges at falling addresses, where free: the kernel's order."""
        for unit in range(start, max(start - 2 * count, -1), -2):
            lo = self._addr(unit)
            if not self.ref.overlapping(lo, lo + 1):
                self.ref.insert(lo, lo + 1, value)
                self.real.insert(lo, lo + 1, value)

    @rule(start=st.integers(-2, SPAN + 2), length=LENGTHS)
    def carve(self, start: int, length: int) -> None:
        lo, hi = self._addr(start), self._addr(start + length)
        assert self.real.carve(lo, hi) == self.ref.carve(lo, hi)

    @rule(addr=st.integers(-1, SPAN + 2))
    def split_at(self, addr: int) -> None:
        assert self.real.split_at(self._addr(addr)) == self.ref.split_at(self._addr(addr))

    @rule(start=st.integers(-2, SPAN + 2), length=st.integers(-1, SPAN))
    def queries(self, start: int, length: int) -> None:
        lo, hi = self._addr(start), self._addr(start + length)
        assert self.real.overlapping(lo, hi) == self.ref.overlapping(lo, hi)
        assert self.real.gaps(lo, hi) == self.ref.gaps(lo, hi)
        assert self.real.containing(lo) == self.ref.containing(lo)

    @invariant()
    def same_contents(self) -> None:
        assert list(self.real) == self.ref.ranges  # iteration is ascending
        assert len(self.real) == len(self.ref.ranges)
        assert self.real.total() == sum(e - s for s, e, _ in self.ref.ranges)


TestRangeMapAgainstReference = RangeMapMachine.TestCase
TestRangeMapAgainstReference.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)


def test_real_chunk_size_descending_maps_then_holes() -> None:
    """Thousands of ranges at the default chunk size: chunks split, empty and merge."""
    real: RangeMap[int] = RangeMap()
    ref = Reference()
    page = 4096
    for i in range(3000):  # descending, one page apart
        start = 0x7FFF00000000 - 2 * page * i
        real.insert(start, start + page, i)
        ref.ranges.insert(0, (start, start + page, i))  # stays sorted without a scan
    assert list(real) == ref.ranges
    rnd = random.Random(9)
    low, high = ref.ranges[0][0], ref.ranges[-1][1]
    for _ in range(60):
        lo = rnd.randrange(low, high)
        hi = lo + rnd.choice([page // 2, page, 50 * page, 700 * page])
        assert real.carve(lo, hi) == ref.carve(lo, hi)
        assert list(real) == ref.ranges
        assert (len(real), real.total()) == (len(ref.ranges), sum(e - s for s, e, _ in ref.ranges))
    assert real.carve(0, 1 << 64) == ref.carve(0, 1 << 64)
    assert (list(real), len(real), real.total()) == ([], 0, 0)


@pytest.mark.parametrize("load", [2, 4])
def test_hole_in_each_range_at_each_chunk_fill(load: int) -> None:
    """A hole punched inside one range grows its chunk by one: at every fill level and
    position, including the one that makes the chunk split."""
    with mock.patch.object(rangemap, "_LOAD", load):
        for count in range(1, 4 * load + 2):
            for victim in range(count):
                real: RangeMap[int] = RangeMap()
                ref = Reference()
                for k in range(count):
                    real.insert(4 * k, 4 * k + 3, k)
                    ref.insert(4 * k, 4 * k + 3, k)
                hole = (4 * victim + 1, 4 * victim + 2)
                assert real.carve(*hole) == ref.carve(*hole)
                assert list(real) == ref.ranges
                assert real.split_at(4 * victim + 3) is False
                assert real.split_at(4 * victim + 2) is False
                assert real.overlapping(0, 4 * count) == ref.overlapping(0, 4 * count)
