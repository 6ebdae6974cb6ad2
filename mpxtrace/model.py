"""The live picture: which address ranges carry the tracked flag, per address space.

An address space is keyed by its ``struct mm_struct`` pointer (threads share one; fork makes
a new one; exec replaces it), so pid reuse and exec never mix two processes' memory.
Each keeps its flagged VMAs (boundaries included, so ``live_vmas`` matches smaps) and which
allocation every flagged byte came from (so frees can be matched to births for lifetimes).

Records come from ``events.decode_raw`` (kernel events) or from smaps seeds; their meaning
is documented in ``bpf/mpxtrace_event.h``.  The model is pure: feeding the same records
gives the same state, which is what makes a replayed log identical to the live run.
"""
from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Protocol, Set, Tuple

from .events import Record
from .lostspaces import slot_of
from .rangemap import RangeMap

__all__ = ["Allocations", "ORIGINS", "AddressSpace", "Model", "Observer", "Anomaly", "FoldedSpaces", "SPACE_COUNTS",
           "EXITED_KEPT"]

# Exited address spaces kept whole (for the per-process report); beyond this, the least busy
# are folded into FoldedSpaces so a fork storm cannot grow memory without bound (issue 8).
EXITED_KEPT = 1000
SPACE_COUNTS = ("allocations", "allocated_bytes", "frees", "freed_bytes", "seeded_bytes", "merges", "splits", "moves")


ORIGINS = ("mmap", "flag_set", "fork", "absorbed", "seed", "moved_in", "grown", "dontunmap")
_ORIGIN_CODE = {name: code for code, name in enumerate(ORIGINS)}
_SEED = _ORIGIN_CODE["seed"]


class Allocations:
    """Every live allocation — one birth of flagged memory, live while any of its bytes are —
    as parallel arrays indexed by slot.  A million live VMAs make a million of them: as
    objects in a dict they took ~200 B each, here 33 (issue 9).  A freed slot is reused; the
    ident (birth order) is what observers see.  Memory mapped before tracing began (origin
    ``seed``) has no birth time."""

    __slots__ = ("ident", "size", "born", "remaining", "origin", "_free")

    def __init__(self) -> None:
        self.ident = array("Q")
        self.size = array("Q")
        self.born = array("Q")
        self.remaining = array("Q")
        self.origin = array("B")  # index in ORIGINS
        self._free = array("Q")  # slots to reuse

    def __len__(self) -> int:
        return len(self.ident) - len(self._free)

    def new(self, ident: int, size: int, born: int, origin: int) -> int:
        if self._free:
            slot = self._free.pop()
            self.ident[slot], self.size[slot], self.born[slot] = ident, size, born
            self.remaining[slot], self.origin[slot] = size, origin
            return slot
        self.ident.append(ident)
        self.size.append(size)
        self.born.append(born)
        self.remaining.append(size)
        self.origin.append(origin)
        return len(self.ident) - 1

    def free(self, slot: int) -> None:
        self._free.append(slot)


@dataclass(frozen=True)
class Anomaly:
    ts: int
    mm: int
    pid: int
    start: int
    end: int
    what: str
    after_loss: bool = False  # events that may have been this process's were lost before it

    def to_json(self) -> Dict[str, object]:
        out: Dict[str, object] = {"ts": self.ts, "mm": f"{self.mm:#x}", "pid": self.pid,
                                  "start": f"{self.start:#x}", "end": f"{self.end:#x}", "what": self.what}
        if self.after_loss:
            out["after_loss"] = True
        return out


ANOMALIES_KEPT = 100  # the first ones; the rest are counted.  An overflowing stream makes them
# by the thousand (the lab's overload test: 4,494 in 200 s), and a list kept whole would grow without bound.


class Observer(Protocol):
    """Told of every birth and release; allocations are passed as their fields (no object per
    call: this is the hot path).  `remaining` is what stays live after the release (0: the
    allocation is gone); `born_ns` is None for memory mapped before tracing began."""

    def on_allocation(self, space: "AddressSpace", ident: int, size: int, origin: str, ts: int) -> None: ...
    def on_release(self, space: "AddressSpace", ident: int, size: int, origin: str, born_ns: Optional[int],
                   nbytes: int, remaining: int, ts: int) -> None: ...
    def on_merge(self, space: "AddressSpace", joined: int, ts: int) -> None: ...


class _NullObserver:
    def on_allocation(self, space: "AddressSpace", ident: int, size: int, origin: str, ts: int) -> None:
        pass

    def on_release(self, space: "AddressSpace", ident: int, size: int, origin: str, born_ns: Optional[int],
                   nbytes: int, remaining: int, ts: int) -> None:
        pass

    def on_merge(self, space: "AddressSpace", joined: int, ts: int) -> None:
        pass


@dataclass
class AddressSpace:
    mm: Optional[int]  # None while it is only an smaps seed not yet tied to a kernel mm
    pid: int
    comm: str
    vmas: RangeMap[int] = field(default_factory=RangeMap)
    pieces: RangeMap[int] = field(default_factory=RangeMap)
    allocations: int = 0
    allocated_bytes: int = 0
    frees: int = 0
    freed_bytes: int = 0
    seeded_bytes: int = 0
    merges: int = 0
    splits: int = 0
    moves: int = 0
    exited: bool = False
    lost_events: int = 0  # events the stream refused in this address space's slot (lostspaces.py): at most

    @property
    def live_bytes(self) -> int:
        return self.vmas.total()

    @property
    def live_vmas(self) -> int:
        return len(self.vmas)

    def vma_list(self) -> List[List[str]]:
        """Every flagged VMA as [start, end) in hex, ascending: the per-VMA picture that
        /proc/PID/smaps is compared with."""
        return [[f"{start:#x}", f"{end:#x}"] for start, end, _ in self.vmas]

    def to_json(self, vmas: bool = False) -> Dict[str, object]:
        out: Dict[str, object] = {
            "pid": self.pid,
            "comm": self.comm,
            "mm": f"{self.mm:#x}" if self.mm is not None else None,
            "live_bytes": self.live_bytes,
            "live_vmas": self.live_vmas,
            "allocations": self.allocations,
            "frees": self.frees,
            "allocated_bytes": self.allocated_bytes,
            "freed_bytes": self.freed_bytes,
            "seeded_bytes": self.seeded_bytes,
            "merges": self.merges,
            "splits": self.splits,
            "moves": self.moves,
            "exited": self.exited,
        }
        if self.lost_events:
            out["lost_events"] = self.lost_events  # its figures miss what the stream refused
        if vmas:
            out["vmas"] = self.vma_list()
        return out


@dataclass
class FoldedSpaces:
    """What exited address spaces that are no longer kept whole still count for: how many, and
    the sums of their counts (their live bytes and VMAs are 0)."""

    processes: int = 0
    sums: Dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPACE_COUNTS, 0))

    def add(self, space: AddressSpace) -> None:
        self.processes += 1
        for name in SPACE_COUNTS:
            self.sums[name] += getattr(space, name)

    def to_json(self) -> Dict[str, int]:
        return {"processes": self.processes, **self.sums}


class Model:
    """Applies records to per-address-space state; ``mask`` decides what "flagged" means."""

    def __init__(self, mask: int, observer: Optional[Observer] = None, self_pid: int = 0,
                 exited_kept: int = EXITED_KEPT) -> None:
        self.mask = mask
        self.observer: Observer = observer or _NullObserver()
        self.self_pid = self_pid
        # every live address space and up to 2 * exited_kept exited ones, in the order first seen;
        # the rest are folded (fold_exited)
        self.spaces: List[AddressSpace] = []
        self.folded = FoldedSpaces()
        self.on_fold: List[Callable[[List[AddressSpace]], None]] = []  # told which spaces are dropped
        self.exited_kept = exited_kept
        self._fold_at = 2 * exited_kept + 1  # len(spaces) at which fold_exited runs next
        self._by_mm: Dict[int, AddressSpace] = {}
        self._seeds: Dict[int, AddressSpace] = {}  # pid -> seeded space not yet tied to an mm
        self._allocs = Allocations()
        self._next_alloc = 1
        self.anomalies: List[Anomaly] = []  # the first ANOMALIES_KEPT
        self.anomaly_count = 0  # all of them
        self.anomalies_after_loss = 0  # of which in a process whose picture a loss had made provisional
        self.lost_unattributed = False  # events were lost that could have been anyone's
        self.slots_lost: Set[int] = set()  # address-space slots (lostspaces.py) that lost events
        self.events = 0

    # -- record entry point -------------------------------------------------------------
    def apply(self, rec: Record) -> None:
        kind = rec["type"]
        if kind == "seed":
            self._seed(rec)
        elif kind == "event":
            self.apply_event(rec)
        elif kind == "proc_exit":
            self._proc_exit(rec)

    def apply_all(self, records: Iterable[Record]) -> None:
        for rec in records:
            self.apply(rec)

    def apply_event(self, rec: Record) -> None:
        """One kernel event record (apply() without the dispatch: the hot path, a million a
        minute under load, so the usual cases come first and fields are read once)."""
        self.events += 1
        mm = rec["mm"]
        space = self._by_mm.get(mm)
        if space is None or rec.get("tgid", 0) != space.pid or rec.get("comm") != space.comm:
            space = self._space_for(rec)  # its owner again, nothing to learn: the usual event
        kind = rec["kind"]
        if kind == "task" or kind == "mm_exit":
            self._task_or_exit(space, rec)
            return
        ts, start, end, flags = rec["ts"], rec["start"], rec["end"], rec["flags"]
        ext: Optional[List[int]] = rec.get("ext")
        if ext is not None and ext[0] == start and ext[1] == end:
            ext = None  # an `ext` equal to the range changed says nothing new: no merge happened
        if kind == "map":
            # whatever was there is gone (MAP_FIXED); then the range is one VMA, all of it born now
            self._release(space, start, end, ts)
            space.vmas.insert(start, end, flags)
            space.pieces.insert(start, end, self._new_alloc(space, end - start, ts, "mmap"))
            if ext:
                self._assert_vma(space, ext[0], ext[1], flags, ts, (start, end))
        elif kind == "unmap":
            self._release(space, start, end, ts)
        elif kind == "split":
            if space.vmas.split_at(rec["at"]):
                space.splits += 1
        elif kind == "flags":
            if flags & self.mask:
                self._add(space, start, end, flags, "flag_set", ts)
                if ext:
                    self._assert_vma(space, ext[0], ext[1], flags, ts, (start, end))
            else:
                self._release(space, start, end, ts)
        elif kind == "move":
            old = (rec["old_start"], rec["old_end"])
            self._move(space, old[0], old[1], start, end, flags, ts, bool(rec.get("dontunmap")))
            if ext:
                # the source is still mapped until move_vma unmaps it: a target next to it may merge with it
                self._assert_vma(space, ext[0], ext[1], flags, ts, (start, end), old)
        elif kind == "fork":
            self._add(space, start, end, flags, "fork", ts)
        elif kind == "grow":
            self._grow(space, start, end, ts)
        elif kind == "sync":
            self._sync(space, start, end, flags, ts)

    def live_spaces(self) -> List[AddressSpace]:
        return [s for s in self.spaces if not s.exited]

    # -- corrections from outside the stream (resync) --------------------------------------
    def space_by_mm(self, mm: int) -> Optional[AddressSpace]:
        """The space the kernel's `mm` belongs to, if the model knows it."""
        return self._by_mm.get(mm)

    def seeded_space(self, pid: int) -> Optional[AddressSpace]:
        """The space seeded for `pid` from smaps that no kernel event has tied to an mm yet."""
        return self._seeds.get(pid)

    def add_space(self, mm: Optional[int], pid: int, comm: str) -> AddressSpace:
        """A new space for a process the stream never showed: under its mm, or as seeded."""
        space = AddressSpace(mm, pid, comm)
        if mm is not None:
            self._by_mm[mm] = space
        else:
            self._seeds[pid] = space
        self._add_space(space)
        return space

    def bind_mm(self, space: AddressSpace, mm: int) -> None:
        """A seeded space learns its mm."""
        if self._seeds.get(space.pid) is space:
            del self._seeds[space.pid]
        space.mm = mm
        self._by_mm[mm] = space

    def release(self, space: AddressSpace, start: int, end: int, ts: int) -> None:
        """Flagged memory in [start, end) of `space` is gone (freed now)."""
        self._release(space, start, end, ts)

    def retire(self, space: AddressSpace, ts: int) -> None:
        """The process behind `space` is gone and its teardown was never seen: free what it
        held and forget its mm and seed, so a later process reusing them starts afresh."""
        self._release(space, 0, 1 << 64, ts)
        space.exited = True
        if space.mm is not None and self._by_mm.get(space.mm) is space:
            del self._by_mm[space.mm]
        if self._seeds.get(space.pid) is space:
            del self._seeds[space.pid]

    def charge_lost(self, slots: Dict[int, int]) -> None:
        """Events refused by the stream, counted by address-space slot: each live space in a slot
        is charged its count (two spaces sharing a slot both are: a bound, not a share)."""
        self.slots_lost.update(slot for slot, count in slots.items() if count)
        for space in self.live_spaces():
            if space.mm is not None:
                count = slots.get(slot_of(space.mm))
                if count:
                    space.lost_events += count

    def totals(self) -> Dict[str, int]:
        """Each of SPACE_COUNTS summed over every address space ever seen (folded ones too)."""
        return {name: sum(getattr(s, name) for s in self.spaces) + self.folded.sums[name]
                for name in SPACE_COUNTS}

    def _add_space(self, space: AddressSpace) -> None:
        self.spaces.append(space)
        if len(self.spaces) >= self._fold_at:
            self.fold_exited()

    def fold_exited(self) -> None:
        """Keep the `exited_kept` busiest exited spaces (allocated + seeded bytes; the earlier on
        a tie), fold the others into `folded` and drop them.  Runs when the list has grown by
        `exited_kept` since the last time: amortised O(1) a space, whoever marked them exited."""
        exited = [i for i, s in enumerate(self.spaces) if s.exited]
        if len(exited) > self.exited_kept:
            spaces = self.spaces
            busiest = sorted(exited, key=lambda i: (-(spaces[i].allocated_bytes + spaces[i].seeded_bytes), i))
            dropped = set(busiest[self.exited_kept:])
            gone = [spaces[i] for i in sorted(dropped)]
            for space in gone:
                self.folded.add(space)
            spaces[:] = [s for i, s in enumerate(spaces) if i not in dropped]
            for hook in self.on_fold:
                hook(gone)
        self._fold_at = len(self.spaces) + max(self.exited_kept, 1)

    # -- seeds ------------------------------------------------------------------------------
    def _seed(self, rec: Record) -> None:
        pid = int(rec["pid"])
        mm = rec.get("mm")
        space = self._by_mm.get(int(mm)) if mm is not None else self._seeds.get(pid)
        if space is None:
            space = AddressSpace(int(mm) if mm is not None else None, pid, str(rec.get("comm", "")))
            if mm is not None:  # the kernel told us its mm (seed hook): no guessing later
                self._by_mm[int(mm)] = space
            else:
                self._seeds[pid] = space
            self._add_space(space)
        start, end, flags = int(rec["start"]), int(rec["end"]), int(rec["flags"])
        space.vmas.carve(start, end)
        space.vmas.insert(start, end, flags)
        space.pieces.insert(start, end, self._new_alloc(space, end - start, None, "seed"))
        space.seeded_bytes += end - start

    def _proc_exit(self, rec: Record) -> None:
        """A seeded process exited before any kernel event tied it to its address space."""
        space = self._seeds.pop(int(rec["pid"]), None)
        if space is not None:
            self._release(space, 0, 1 << 64, int(rec["ts"]))
            space.exited = True

    # -- events -----------------------------------------------------------------------------
    def _space_for(self, rec: Record) -> AddressSpace:
        """The event's address space when it is new, or the event may teach it its owner."""
        mm = rec["mm"]
        space = self._by_mm.get(mm)
        tgid = rec.get("tgid", 0)
        kind = rec["kind"]
        if space is None:
            seeded = self._seeds.get(tgid) if kind not in ("fork", "task") and tgid != self.self_pid else None
            if seeded is not None:
                # First kernel event from a process seeded from smaps: that is its mm.
                del self._seeds[tgid]
                seeded.mm = mm
                space = seeded
            else:
                owned = bool(rec.get("owner")) and kind != "fork"
                space = AddressSpace(mm, tgid if owned else 0, str(rec.get("comm", "")) if owned else "")
                self._add_space(space)
            self._by_mm[mm] = space
        if rec.get("owner") and kind != "fork":
            # An address space belongs to the first process seen running in it: a vfork child
            # borrowing its parent's until exec does not take it over.
            if not space.pid:
                space.pid = tgid
            if tgid == space.pid:
                space.comm = str(rec.get("comm", space.comm))
        return space

    def _task_or_exit(self, space: AddressSpace, rec: Record) -> None:
        if rec["kind"] == "task":
            if not space.pid:
                space.pid = rec["tgid"]
                space.comm = str(rec.get("comm", space.comm))
            return
        self._release(space, 0, 1 << 64, rec["ts"])  # mm_exit
        space.exited = True
        self._by_mm.pop(rec["mm"], None)

    # -- transitions ----------------------------------------------------------------------------
    def _new_alloc(self, space: AddressSpace, size: int, ts: Optional[int], origin: str) -> int:
        """A birth (`ts` None: seeded memory, no birth time); returns its slot in Allocations."""
        ident = self._next_alloc
        self._next_alloc += 1
        slot = self._allocs.new(ident, size, 0 if ts is None else ts, _ORIGIN_CODE[origin])
        if ts is not None:
            space.allocations += 1
            space.allocated_bytes += size
            self.observer.on_allocation(space, ident, size, origin, ts)
        return slot

    def _add(self, space: AddressSpace, start: int, end: int, flags: int, origin: str, ts: int) -> None:
        """[start, end) is one VMA carrying `flags`; bytes not flagged before are born now."""
        space.vmas.carve(start, end)
        space.vmas.insert(start, end, flags)
        for lo, hi in space.pieces.gaps(start, end):
            space.pieces.insert(lo, hi, self._new_alloc(space, hi - lo, ts, origin))

    def _assert_vma(self, space: AddressSpace, start: int, end: int, flags: int, ts: int,
                    *ops: Tuple[int, int]) -> None:
        """The kernel says one VMA spans exactly [start, end) now (after a merge)."""
        for lo, hi in self._one_vma(space, start, end, flags, ts):
            if not any(op[0] <= lo and hi <= op[1] for op in ops):
                self._anomaly(space, ts, lo, hi,
                              "a VMA carrying the flag absorbed memory that did not carry it (merge across the flag)")
            space.pieces.insert(lo, hi, self._new_alloc(space, hi - lo, ts, "absorbed"))

    def _anomaly(self, space: AddressSpace, ts: int, lo: int, hi: int, what: str) -> None:
        """A transition the kernel never makes, as the model sees it.  After a loss the model's
        picture may be what is wrong, so each says whether one could have been this process's."""
        # its slot too: a space whose first events were lost was not there to be charged
        after_loss = bool(space.lost_events) or self.lost_unattributed or (
            space.mm is not None and slot_of(space.mm) in self.slots_lost)
        self.anomaly_count += 1
        self.anomalies_after_loss += after_loss
        if len(self.anomalies) < ANOMALIES_KEPT:
            self.anomalies.append(Anomaly(ts, space.mm or 0, space.pid, lo, hi, what, after_loss))

    def _release(self, space: AddressSpace, start: int, end: int, ts: int) -> None:
        space.vmas.carve(start, end)
        allocs = self._allocs
        for lo, hi, slot in space.pieces.carve(start, end):
            nbytes = hi - lo
            remaining = allocs.remaining[slot] - nbytes
            allocs.remaining[slot] = remaining
            space.freed_bytes += nbytes
            if remaining == 0:
                space.frees += 1
                allocs.free(slot)
            origin = allocs.origin[slot]
            self.observer.on_release(space, allocs.ident[slot], allocs.size[slot], ORIGINS[origin],
                                     None if origin == _SEED else allocs.born[slot], nbytes, remaining, ts)

    def _move(self, space: AddressSpace, old_start: int, old_end: int, start: int, end: int, flags: int,
              ts: int, dontunmap: bool = False) -> None:
        """mremap: the bytes of [old_start, old_end) now live at `start`; a longer target grew.
        With MREMAP_DONTUNMAP the source stays mapped: its VMA is kept, emptied of the bytes
        that moved (a flags event that follows says what it still carries)."""
        delta = start - old_start
        old_end = min(old_end, old_start + (end - start))
        if not dontunmap:
            space.vmas.carve(old_start, old_end)
        moved = space.pieces.carve(old_start, old_end)
        self._release(space, start, end, ts)  # whatever was at the target is gone
        space.vmas.insert(start, end, flags)
        for lo, hi, slot in moved:
            space.pieces.insert(lo + delta, hi + delta, slot)
        for lo, hi in space.pieces.gaps(start, end):
            space.pieces.insert(lo, hi, self._new_alloc(space, hi - lo, ts, "moved_in"))
        if dontunmap:
            # the source range stays flagged memory of its own (until the flags event)
            self._fill(space, old_start, old_end, ts, "dontunmap")
        space.moves += 1

    def _fill(self, space: AddressSpace, start: int, end: int, ts: int, origin: str) -> None:
        """Bytes of flagged VMAs in [start, end) that belong to no allocation are born now."""
        for vlo, vhi, _ in space.vmas.overlapping(start, end):
            for lo, hi in space.pieces.gaps(vlo, vhi):
                space.pieces.insert(lo, hi, self._new_alloc(space, hi - lo, ts, origin))

    def _grow(self, space: AddressSpace, start: int, end: int, ts: int) -> None:
        """mremap grew the VMA that ends at `start` in place to end at `end`: when that VMA
        carries the flag, so does the growth.  Where the merge hook saw the growth already
        (vma_merge_extend() merges it: 6.12 in the lab) there is nothing left to do."""
        below = space.vmas.containing(start - 1)
        if below is None or space.vmas.gaps(start, end) == []:
            return
        self._sync(space, below[0], end, below[2], ts)

    def _sync(self, space: AddressSpace, start: int, end: int, flags: int, ts: int) -> None:
        """The kernel states one VMA spans exactly [start, end) with `flags` now (it grew in
        place: brk, stack, mremap).  Bytes new to the flag are born now."""
        if not flags & self.mask:
            self._release(space, start, end, ts)
            return
        for lo, hi in self._one_vma(space, start, end, flags, ts):
            space.pieces.insert(lo, hi, self._new_alloc(space, hi - lo, ts, "grown"))

    def _one_vma(self, space: AddressSpace, start: int, end: int, flags: int, ts: int) -> List[Tuple[int, int]]:
        """Make [start, end) one VMA (counting the VMAs it joined as merges); return the parts
        of it that belong to no allocation yet."""
        before = space.vmas.carve(start, end)
        space.vmas.insert(start, end, flags)
        if len(before) > 1:
            space.merges += len(before) - 1
            self.observer.on_merge(space, len(before) - 1, ts)
        return space.pieces.gaps(start, end)
