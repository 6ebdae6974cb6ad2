"""A tiny idealised kernel: one address space per mm, VMAs that merge when their full flags are
equal, and the events mpxtrace's kernel program would emit for each operation.

It is the reference the model is checked against in test_model_property.py: after any
sequence of operations, the model's flagged VMAs must be exactly the simulator's.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from helpers import MASK, PAGE

BASE = 0x7F0000000000
Vma = List[int]  # [start, end, flags]


class SimKernel:
    def __init__(self, mask: int = MASK) -> None:
        self.mask = mask
        self.mms: Dict[int, List[Vma]] = {}
        self.pids: Dict[int, int] = {}
        self.tracked: set = set()
        self.events: List[Dict[str, Any]] = []
        self.clock = 0
        self.next_mm = 0xFFFF888000000000
        self.next_pid = 1000

    # -- helpers ------------------------------------------------------------------------------
    def new_mm(self) -> int:
        self.next_mm += 0x1000
        self.next_pid += 1
        self.mms[self.next_mm] = []
        self.pids[self.next_mm] = self.next_pid
        return self.next_mm

    def _emit(self, kind: str, mm: int, start: int = 0, end: int = 0, flags: int = 0, owner: bool = True,
              **extra: Any) -> None:
        self.clock += 1
        rec: Dict[str, Any] = {"type": "event", "kind": kind, "ts": self.clock, "mm": mm,
                               "tgid": self.pids[mm], "tid": self.pids[mm], "owner": owner, "comm": "sim"}
        if kind not in ("task", "mm_exit"):
            rec.update(start=start, end=end, flags=flags)
        for key, value in extra.items():
            if value is not None:
                rec[key] = list(value) if key == "ext" else value
        if kind not in ("task", "mm_exit"):
            self.tracked.add(mm)
        self.events.append(rec)

    def flagged(self, mm: int) -> List[Tuple[int, int]]:
        return [(s, e) for s, e, f in self.mms[mm] if f & self.mask]

    def _index(self, mm: int, addr: int) -> Optional[int]:
        for i, (s, e, _) in enumerate(self.mms[mm]):
            if s <= addr < e:
                return i
        return None

    def _split(self, mm: int, addr: int) -> None:
        i = self._index(mm, addr)
        if i is None:
            return
        s, e, f = self.mms[mm][i]
        if s == addr:
            return
        if f & self.mask:
            self._emit("split", mm, s, e, f, at=addr)
        self.mms[mm][i:i + 1] = [[s, addr, f], [addr, e, f]]

    def _merge_at(self, mm: int, addr: int) -> Tuple[Tuple[int, int], bool]:
        """Merge the VMA holding addr with equal-flag neighbours; its extent and whether it merged."""
        vmas = self.mms[mm]
        i = self._index(mm, addr)
        assert i is not None
        merged = False
        if i + 1 < len(vmas) and vmas[i + 1][0] == vmas[i][1] and vmas[i + 1][2] == vmas[i][2]:
            vmas[i][1] = vmas[i + 1][1]
            del vmas[i + 1]
            merged = True
        if i > 0 and vmas[i - 1][1] == vmas[i][0] and vmas[i - 1][2] == vmas[i][2]:
            vmas[i - 1][1] = vmas[i][1]
            del vmas[i]
            i -= 1
            merged = True
        return (vmas[i][0], vmas[i][1]), merged

    def _unmap(self, mm: int, start: int, end: int) -> None:
        self._split(mm, start)
        self._split(mm, end)
        keep = []
        for v in self.mms[mm]:
            if start <= v[0] and v[1] <= end:
                if v[2] & self.mask:
                    self._emit("unmap", mm, v[0], v[1], v[2], owner=True)
            else:
                keep.append(v)
        self.mms[mm] = keep

    def _insert(self, mm: int, start: int, end: int, flags: int) -> None:
        self.mms[mm].append([start, end, flags])
        self.mms[mm].sort()

    # -- operations --------------------------------------------------------------------------------
    def seed(self, mm: int, start: int, end: int, flags: int) -> Optional[Dict[str, Any]]:
        self._insert(mm, start, end, flags)
        if flags & self.mask:
            self.tracked.add(mm)  # the seed hook marks a seeded address space in the kernel
            return {"type": "seed", "ts": 0, "pid": self.pids[mm], "comm": "sim", "start": start, "end": end,
                    "flags": flags, "mm": mm}
        return None

    def mmap(self, mm: int, start: int, end: int, flags: int) -> None:
        self._unmap(mm, start, end)
        self._insert(mm, start, end, flags)
        ext, _ = self._merge_at(mm, start)
        if flags & self.mask:
            self._emit("map", mm, start, end, flags, ext=ext)  # perf_event_mmap always reports the extent

    def munmap(self, mm: int, start: int, end: int) -> None:
        self._unmap(mm, start, end)

    def setflags(self, mm: int, start: int, end: int, flags: int, splits_first: bool) -> None:
        """mprotect/mlock/madvise over a fully mapped range, VMA by VMA as the kernel does."""
        cursor = start
        while cursor < end:
            i = self._index(mm, cursor)
            if i is None:
                return
            s, e, old = self.mms[mm][i]
            lo, hi = max(s, cursor), min(e, end)
            if old != flags:
                # the kernel program reports a change that sets the flag, or one in an address space
                # holding flagged memory where the VMA changed carries it (a quiet merge otherwise)
                report = bool(flags & self.mask) or (mm in self.tracked and bool(old & self.mask))
                if not splits_first and report:
                    flags_event_index = len(self.events)
                self._split(mm, lo)
                self._split(mm, hi)
                j = self._index(mm, lo)
                assert j is not None
                self.mms[mm][j][2] = flags
                ext, merged = self._merge_at(mm, lo)
                if report:
                    self.clock += 1
                    rec = {"type": "event", "kind": "flags", "ts": self.clock, "mm": mm, "tgid": self.pids[mm],
                           "tid": self.pids[mm], "owner": True, "comm": "sim", "start": lo, "end": hi, "flags": flags}
                    if merged:
                        rec["ext"] = list(ext)
                    if flags & self.mask:
                        self.tracked.add(mm)
                    if splits_first:
                        self.events.append(rec)
                    else:  # <= 6.11: vma_merge returns (and reports) before the splits
                        self.events.insert(flags_event_index, rec)
            cursor = hi

    def mremap(self, mm: int, start: int, end: int, target: int) -> None:
        """Move [start, end) (inside one VMA) to target, as move_vma does."""
        i = self._index(mm, start)
        assert i is not None
        s, e, flags = self.mms[mm][i]
        assert s <= start and end <= e
        length = end - start
        self._unmap(mm, target, target + length)
        i = self._index(mm, start)
        assert i is not None
        old_vma_end = self.mms[mm][i][1]
        self._insert(mm, target, target + length, flags)
        ext, _ = self._merge_at(mm, target)
        if flags & self.mask:
            self._emit("move", mm, target, target + length, flags, old_start=start, old_end=old_vma_end, ext=ext)
        self._unmap(mm, start, end)

    def fork(self, mm: int) -> int:
        child = self.new_mm()
        for s, e, f in self.mms[mm]:
            self.mms[child].append([s, e, f])
            if f & self.mask:
                self._emit("fork", child, s, e, f, owner=False, parent_mm=mm)
        if child in self.tracked:
            self._emit("task", child, owner=False)
        return child

    def exit(self, mm: int) -> None:
        for s, e, f in list(self.mms[mm]):
            if f & self.mask:
                self._emit("unmap", mm, s, e, f, owner=False)
        if mm in self.tracked:
            self._emit("mm_exit", mm, owner=False)
            self.tracked.discard(mm)
        del self.mms[mm]


def page(n: int) -> int:
    return BASE + n * PAGE
