"""A sorted map of disjoint half-open address ranges to values.

Each address space keeps two of these: its flagged VMAs (value: vm_flags) and which
allocation each flagged byte belongs to (value: allocation id).  One address space can hold
hundreds of thousands of ranges arriving in any order (the kernel hands out addresses top
down), so ranges live in sorted chunks of at most ``2 * _LOAD`` entries, found by bisecting
the chunks' first starts — the layout of sortedcontainers' SortedList.  An operation costs
two bisections, a memmove inside one chunk and, when a chunk is split, merged or dropped, a
memmove of the chunk index (n / _LOAD pointers): O(log n) in practice, never O(n) entries.

Chunks are ``array('Q')`` while every bound and value is an int in [0, 2**64): 24 bytes a
range, where a SortedList of (start, end, value) tuples took 185 and a SortedDict 224 (peak
RSS, 1M ranges) — which is why this is not built on sortedcontainers.  The first other value turns every chunk into a plain list, so
any value still works (slower and larger).
"""
from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from itertools import chain
from typing import Any, Generic, Iterable, Iterator, List, MutableSequence, Optional, Tuple, TypeVar

__all__ = ["RangeMap", "Piece"]

V = TypeVar("V")
Piece = Tuple[int, int, V]

_LOAD = 512  # chunks hold _LOAD // 2 .. 2 * _LOAD ranges (a lone chunk may hold fewer)
_U64 = (1 << 64) - 1

Chunk = MutableSequence[Any]


class RangeMap(Generic[V]):
    __slots__ = ("_starts", "_ends", "_values", "_firsts", "_len", "_total", "_compact")

    def __init__(self) -> None:
        # chunk c holds the ranges [_starts[c][i], _ends[c][i]) -> _values[c][i], ascending
        self._starts: List[Chunk] = []
        self._ends: List[Chunk] = []
        self._values: List[Chunk] = []
        self._firsts: List[int] = []  # _starts[c][0] of every chunk, bisected to find a chunk
        self._len = 0
        self._total = 0  # bytes covered, kept up to date: live_bytes is read every interval
        self._compact = True

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[Tuple[int, int, V]]:
        return chain.from_iterable(map(zip, self._starts, self._ends, self._values))

    def total(self) -> int:
        return self._total

    # -- lookups ----------------------------------------------------------------------------------
    def _first_ending_after(self, addr: int) -> Tuple[int, int]:
        """(chunk, index) of the first range that ends after `addr`; chunk == number of chunks if none."""
        c = bisect_right(self._firsts, addr) - 1
        if c < 0:
            return 0, 0  # everything starts after addr (or there is nothing)
        starts = self._starts[c]
        i = bisect_right(starts, addr) - 1  # >= 0: the chunk's first start is <= addr
        if self._ends[c][i] > addr:
            return c, i
        if i + 1 < len(starts):
            return c, i + 1
        return c + 1, 0

    def containing(self, addr: int) -> Optional[Tuple[int, int, V]]:
        """The whole range holding `addr` (not clipped), or None."""
        c, i = self._first_ending_after(addr)
        if c < len(self._starts) and self._starts[c][i] <= addr:
            return self._starts[c][i], self._ends[c][i], self._values[c][i]
        return None

    def overlapping(self, start: int, end: int) -> List[Tuple[int, int, V]]:
        """Ranges meeting [start, end), clipped to it."""
        out: List[Tuple[int, int, V]] = []
        c, i = self._first_ending_after(start)
        while c < len(self._starts):
            starts, ends, values = self._starts[c], self._ends[c], self._values[c]
            for i in range(i, len(starts)):
                s = starts[i]
                if s >= end:
                    return out
                e = ends[i]
                out.append((s if s > start else start, e if e < end else end, values[i]))
            c, i = c + 1, 0
        return out

    def gaps(self, start: int, end: int) -> List[Tuple[int, int]]:
        """Sub-ranges of [start, end) covered by no range."""
        out: List[Tuple[int, int]] = []
        cursor = start
        c, i = self._first_ending_after(start)
        while c < len(self._starts):
            starts, ends = self._starts[c], self._ends[c]
            for i in range(i, len(starts)):
                s = starts[i]
                if s >= end:
                    break
                if s > cursor:
                    out.append((cursor, s))
                cursor = ends[i]
            else:
                c, i = c + 1, 0
                continue
            break
        if cursor < end:
            out.append((cursor, end))
        return out

    # -- changes ----------------------------------------------------------------------------------
    def split_at(self, addr: int) -> bool:
        """Cut the range strictly containing `addr` in two; False if none does."""
        c = bisect_right(self._firsts, addr) - 1
        if c < 0:
            return False
        starts, ends, values = self._starts[c], self._ends[c], self._values[c]
        i = bisect_right(starts, addr) - 1
        if not (starts[i] < addr < ends[i]):
            return False
        starts.insert(i + 1, addr)
        ends.insert(i + 1, ends[i])
        values.insert(i + 1, values[i])
        ends[i] = addr
        self._len += 1
        if len(starts) > 2 * _LOAD:
            self._split_chunk(c)
        return True

    def carve(self, start: int, end: int) -> List[Tuple[int, int, V]]:
        """Remove [start, end) and return what was there, clipped; ranges straddling an edge are split."""
        if start >= end:
            return []
        # _first_ending_after(start), inlined: carve runs twice for every map and unmap
        c = bisect_right(self._firsts, start) - 1
        if c < 0:
            c = i = 0
            if not self._firsts:
                return []
            starts, ends = self._starts[0], self._ends[0]
        else:
            starts, ends = self._starts[c], self._ends[c]
            i = bisect_right(starts, start) - 1
            if ends[i] <= start:
                i += 1
                if i == len(starts):
                    c, i = c + 1, 0
                    if c == len(self._starts):
                        return []
                    starts, ends = self._starts[c], self._ends[c]
        values = self._values[c]
        s = starts[i]
        if s >= end:
            return []  # nothing there: the common case of a new mapping
        e = ends[i]
        if s < start:  # keep the head of a range straddling `start`
            value = values[i]
            ends[i] = start
            if e > end:  # and its tail too: the hole is inside this one range
                starts.insert(i + 1, end)
                ends.insert(i + 1, e)
                values.insert(i + 1, value)
                self._len += 1
                self._total -= end - start
                if len(starts) > 2 * _LOAD:
                    self._split_chunk(c)
                return [(start, end, value)]
            self._total -= e - start
            removed = [(start, e, value)]
            i += 1
        elif e <= end and (starts[i + 1] >= end if i + 1 < len(starts)
                           else c + 1 == len(self._firsts) or self._firsts[c + 1] >= end):
            # exactly one whole range: an unmapped VMA, a VMA replaced after a merge
            removed = [(s, e, values[i])]
            del starts[i], ends[i], values[i]
            self._len -= 1
            self._total -= e - s
            if not i or (len(starts) < _LOAD // 2 and len(self._firsts) > 1):  # else _tidy has nothing to do
                self._tidy(c)
            return removed
        else:
            removed = []
        first = c
        while c < len(self._starts):
            starts, ends, values = self._starts[c], self._ends[c], self._values[c]
            stop = bisect_left(starts, end, i)  # ranges i .. stop-1 start inside the hole
            tail = stop > i and ends[stop - 1] > end  # the last one sticks out: keep its tail
            done = tail or stop < len(starts)  # a range at or after `end` is in this chunk
            whole = stop - 1 if tail else stop
            if whole > i:
                removed.extend(zip(starts[i:whole], ends[i:whole], values[i:whole]))
                self._total -= sum(ends[i:whole]) - sum(starts[i:whole])
                self._len -= whole - i
                del starts[i:whole], ends[i:whole], values[i:whole]
            if tail:
                removed.append((starts[i], end, values[i]))
                self._total -= end - starts[i]
                starts[i] = end
            if starts:
                c += 1
            else:
                del self._starts[c], self._ends[c], self._values[c], self._firsts[c]
            if done:
                break
            i = 0
        # chunks in between were dropped whole; the edge ones, now `first` and the next, may have a
        # new first start and be small
        self._tidy(first + 1)
        self._tidy(first)
        return removed

    def insert(self, start: int, end: int, value: V) -> None:
        """Add [start, end), which must not overlap anything."""
        if start >= end:
            raise ValueError(f"empty range [{start:#x}, {end:#x})")
        if self._compact and not (type(start) is int and type(end) is int and type(value) is int
                                  and 0 <= start and end <= _U64 and 0 <= value <= _U64):  # type: ignore[operator]
            self._widen()
        firsts = self._firsts
        if not firsts:
            self._starts.append(self._chunk([start]))
            self._ends.append(self._chunk([end]))
            self._values.append(self._chunk([value]))
            firsts.append(start)
            self._len, self._total = 1, end - start
            return
        c = max(bisect_right(firsts, start) - 1, 0)
        starts, ends = self._starts[c], self._ends[c]
        i = bisect_left(starts, start)
        following = starts[i] if i < len(starts) else firsts[c + 1] if c + 1 < len(firsts) else end
        if (i and ends[i - 1] > start) or following < end:
            raise ValueError(f"[{start:#x}, {end:#x}) overlaps an existing range")
        starts.insert(i, start)
        ends.insert(i, end)
        self._values[c].insert(i, value)
        if not i:
            firsts[c] = start
        self._len += 1
        self._total += end - start
        if len(starts) > 2 * _LOAD:
            self._split_chunk(c)

    # -- chunk upkeep -------------------------------------------------------------------------------
    def _chunk(self, items: Iterable[Any]) -> Chunk:
        return array("Q", items) if self._compact else list(items)

    def _widen(self) -> None:
        """A bound or value that array('Q') cannot hold: plain lists from now on."""
        self._compact = False
        for chunks in (self._starts, self._ends, self._values):
            chunks[:] = [list(chunk) for chunk in chunks]

    def _split_chunk(self, c: int) -> None:
        half = len(self._starts[c]) // 2
        for chunks in (self._starts, self._ends, self._values):
            chunk = chunks[c]
            chunks.insert(c + 1, chunk[half:])
            del chunk[half:]
        self._firsts.insert(c + 1, self._starts[c + 1][0])

    def _tidy(self, c: int) -> None:
        """After removals from chunk c: drop it if empty, else refresh its first start and join
        it to a neighbour if it holds fewer than _LOAD // 2 ranges (so the chunk index stays
        about n / _LOAD long however ranges come and go)."""
        chunks = len(self._starts)
        if not 0 <= c < chunks:
            return
        if not self._starts[c]:
            del self._starts[c], self._ends[c], self._values[c], self._firsts[c]
            return
        self._firsts[c] = self._starts[c][0]
        if chunks < 2 or len(self._starts[c]) >= _LOAD // 2:
            return
        if c == chunks - 1:
            c -= 1
        for column in (self._starts, self._ends, self._values):
            column[c].extend(column[c + 1])
            del column[c + 1]
        del self._firsts[c + 1]
        if len(self._starts[c]) > 2 * _LOAD:
            self._split_chunk(c)
