"""A sorted map of disjoint half-open address ranges to values.

Each address space keeps two of these: its flagged VMAs (value: vm_flags) and which
allocation each flagged byte belongs to (value: allocation id).  Address spaces hold tens
to thousands of ranges, so a bisected list is simpler and fast enough.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Generic, Iterator, List, Tuple, TypeVar

__all__ = ["RangeMap", "Piece"]

V = TypeVar("V")
Piece = Tuple[int, int, V]


class RangeMap(Generic[V]):
    def __init__(self) -> None:
        self._starts: List[int] = []
        self._ends: List[int] = []
        self._values: List[V] = []

    def __len__(self) -> int:
        return len(self._starts)

    def __iter__(self) -> Iterator[Tuple[int, int, V]]:
        return iter(zip(self._starts, self._ends, self._values))

    def total(self) -> int:
        return sum(e - s for s, e in zip(self._starts, self._ends))

    def _first_overlap(self, start: int) -> int:
        """Index of the first range that ends after `start`."""
        i = bisect_right(self._starts, start) - 1
        if i >= 0 and self._ends[i] > start:
            return i
        return i + 1

    def overlapping(self, start: int, end: int) -> List[Tuple[int, int, V]]:
        """Ranges meeting [start, end), clipped to it."""
        out: List[Tuple[int, int, V]] = []
        i = self._first_overlap(start)
        while i < len(self._starts) and self._starts[i] < end:
            out.append((max(self._starts[i], start), min(self._ends[i], end), self._values[i]))
            i += 1
        return out

    def gaps(self, start: int, end: int) -> List[Tuple[int, int]]:
        """Sub-ranges of [start, end) covered by no range."""
        out: List[Tuple[int, int]] = []
        cursor = start
        for s, e, _ in self.overlapping(start, end):
            if s > cursor:
                out.append((cursor, s))
            cursor = e
        if cursor < end:
            out.append((cursor, end))
        return out

    def split_at(self, addr: int) -> bool:
        """Cut the range strictly containing `addr` in two; False if none does."""
        i = bisect_right(self._starts, addr) - 1
        if i < 0 or not (self._starts[i] < addr < self._ends[i]):
            return False
        self._starts.insert(i + 1, addr)
        self._ends.insert(i + 1, self._ends[i])
        self._values.insert(i + 1, self._values[i])
        self._ends[i] = addr
        return True

    def carve(self, start: int, end: int) -> List[Tuple[int, int, V]]:
        """Remove [start, end) and return what was there, clipped; ranges straddling an edge are split."""
        if start >= end:
            return []
        self.split_at(start)
        self.split_at(end)
        lo = bisect_left(self._starts, start)
        hi = bisect_left(self._starts, end)
        removed = list(zip(self._starts[lo:hi], self._ends[lo:hi], self._values[lo:hi]))
        del self._starts[lo:hi], self._ends[lo:hi], self._values[lo:hi]
        return removed

    def insert(self, start: int, end: int, value: V) -> None:
        """Add [start, end), which must not overlap anything."""
        if start >= end:
            raise ValueError(f"empty range [{start:#x}, {end:#x})")
        i = bisect_left(self._starts, start)
        if (i > 0 and self._ends[i - 1] > start) or (i < len(self._starts) and self._starts[i] < end):
            raise ValueError(f"[{start:#x}, {end:#x}) overlaps an existing range")
        self._starts.insert(i, start)
        self._ends.insert(i, end)
        self._values.insert(i, value)
