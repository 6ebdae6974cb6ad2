"""Resync after loss: the per-VMA picture rebuilt from /proc/PID/smaps when events were lost.

A lost event leaves the live picture wrong from then on (a VMA never born, one never freed,
a process whose exit was missed).  After a loss the tracer re-reads the flagged VMAs of every
process from smaps and corrects the model, at a moment it can prove the read is exact:

- smaps is read twice, the events in between applied; a process counts only when both
  reads agree, no event for its address space (or from it) arrived during the two reads,
  and none of its events was lost meanwhile.  Whose events the stream refused, the kernel
  program counts by address space (lostspaces.py): a process whose losses stopped is
  repaired while others still overflow the stream, and only the processes that lost are
  provisional.  A loss nobody can attribute (a frame unwound, a skipped program run) could
  have been anyone's: it makes every picture provisional and voids a pass;
- what is written is a ``resync`` record, ordered in the log after every event older than
  the second read (the tracer waits out the reorder margin), so ``report`` replays it at the
  same point and rebuilds the same summary;
- a process that is still busy stays pending and is tried again at the next pass.

Passes are rate-limited: after losses (those nobody can attribute, and those of at least one
address space that lost) have been quiet for ``quiet_s`` or as long as the last pass took,
whichever is longer (a load that overflows the stream more often than that would
void the pass anyway: the soak lost a quarter of its drain time to such passes), at most one per
``min_gap_s`` and within a ``budget`` share of the time, but never more than ``max_gap_s``
apart while something is pending (two smaps reads of every process holding flagged memory
cost tens of milliseconds; under emulation a process with thousands of VMAs takes seconds).
A retry reads only the processes still pending, and a pass after attributed losses only the
processes whose address space is in a slot that lost (found by their /proc/PID/statm, which
names the mm through the seed hook: far cheaper than smaps).

A resync record: ``{"type": "resync", "ts", "pid", "comm", "mm"?, "within": [lo, hi],
"vmas": [[start, end], ...], "gone"?}`` says "in [lo, hi) this process's flagged VMAs are
exactly these" (``gone``: the process no longer exists).  Bytes it adds have no birth (like
seeds, counted in ``seeded_bytes``); bytes it removes are freed (``freed_bytes``) without a
lifetime: histograms and the timeline count only what the stream delivered, and the summary
says they are incomplete when anything was lost.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from .background import Background, Job, run_here
from .events import Record
from .lostspaces import LossMark, slot_of
from .model import AddressSpace, Model
from .smaps import _alive as process_alive
from .smaps import all_pids, scan

__all__ = ["RESYNC_RECORD", "WHOLE", "MAX_VMAS_PER_RECORD", "apply_resync", "resync_records", "Resyncer"]

RESYNC_RECORD = "resync"
WHOLE = (0, (1 << 64) - 1)  # every user address (the top page is never a user mapping)
MAX_VMAS_PER_RECORD = 16384  # about 600 KB of JSON: under the log's 1 MiB line cap

Vmas = Tuple[Tuple[int, int], ...]


# -- applying a record (pure: the live tracer and `report` both call this) ---------------------
class _Quiet:
    """Observer stand-in while a resync corrects the model: a correction is no birth, no
    free with a known time, and no merge, so the histograms and the timeline do not see it."""

    def on_allocation(self, *args: Any) -> None:
        pass

    def on_release(self, *args: Any) -> None:
        pass

    def on_merge(self, *args: Any) -> None:
        pass


def _live_spaces_of(model: Model, pid: int) -> List[AddressSpace]:
    return [s for s in model.spaces if s.pid == pid and not s.exited]


def _space_of(model: Model, pid: int, mm: Optional[int]) -> Optional[AddressSpace]:
    """The space a resync of (pid, mm) corrects: by mm when the kernel told us, else the
    process's seeded space or its newest live one."""
    if mm is not None:
        space = model.space_by_mm(mm)
        return space if space is not None else model.seeded_space(pid)
    seeded = model.seeded_space(pid)
    if seeded is not None:
        return seeded
    live = _live_spaces_of(model, pid)
    return live[-1] if live else None


def _complement(vmas: Sequence[Tuple[int, int]], lo: int, hi: int) -> List[Tuple[int, int]]:
    out: List[Tuple[int, int]] = []
    cursor = lo
    for start, end in vmas:
        if start > cursor:
            out.append((cursor, start))
        cursor = max(cursor, end)
    if cursor < hi:
        out.append((cursor, hi))
    return out


def apply_resync(model: Model, rec: Record) -> None:
    """Make the model's picture of the record's process, within its range, what smaps showed."""
    pid, ts = int(rec["pid"]), int(rec["ts"])
    mm = int(rec["mm"]) if rec.get("mm") is not None else None
    lo, hi = int(rec["within"][0]), int(rec["within"][1])
    vmas = [(int(s), int(e)) for s, e in rec["vmas"]]
    observer, model.observer = model.observer, _Quiet()
    try:
        if rec.get("gone"):
            for gone in _live_spaces_of(model, pid):
                model.retire(gone, ts)  # gone, its teardown lost
            return
        space = _space_of(model, pid, mm)
        if mm is not None:
            # one process, one mm: a live space of this pid under another mm lost its teardown (exec)
            for other in _live_spaces_of(model, pid):
                if other is not space and other.mm is not None and other.mm != mm:
                    model.retire(other, ts)
        if space is None:
            if not vmas:
                return
            space = model.add_space(mm, pid, str(rec.get("comm", "")))
        elif mm is not None and space.mm is None:  # a seeded space: now we know its mm
            model.bind_mm(space, mm)
        for start, end in _complement(vmas, lo, hi):
            model.release(space, start, end, ts)
        for start, end in vmas:
            # bytes no allocation holds are found memory, like a seed (no birth); then the
            # VMA's bounds are set exactly as smaps has them
            for glo, ghi in space.pieces.gaps(start, end):
                seed: Record = {"type": "seed", "ts": ts, "pid": pid, "comm": space.comm, "start": glo, "end": ghi,
                                "flags": model.mask}
                if space.mm is not None:
                    seed["mm"] = space.mm
                model.apply(seed)
            if space.vmas.containing(start) != (start, end, model.mask):
                space.vmas.carve(start, end)
                space.vmas.insert(start, end, model.mask)
    finally:
        model.observer = observer


def resync_records(ts: int, pid: int, comm: str, mm: Optional[int], vmas: Vmas, gone: bool = False) -> List[Record]:
    """The records that set a process's whole picture to `vmas` (sorted, disjoint), in pieces
    of at most MAX_VMAS_PER_RECORD VMAs each covering its own address range."""
    out: List[Record] = []
    chunks = [vmas[i:i + MAX_VMAS_PER_RECORD] for i in range(0, len(vmas), MAX_VMAS_PER_RECORD)] or [()]
    lo = WHOLE[0]
    for i, chunk in enumerate(chunks):
        hi = chunks[i + 1][0][0] if i + 1 < len(chunks) else WHOLE[1]
        rec: Record = {"type": RESYNC_RECORD, "ts": ts, "pid": pid, "comm": comm, "within": [lo, hi],
                       "vmas": [[s, e] for s, e in chunk]}
        if mm is not None:
            rec["mm"] = mm
        if gone:
            rec["gone"] = True
        out.append(rec)
        lo = hi
    return out


# -- deciding when and what to resync (the live tracer) -------------------------------------------
@dataclass(frozen=True)
class _Seen:
    comm: str
    vmas: Vmas


def _read_kernel(mnemonics: Sequence[str], pids: Optional[Sequence[int]], skip: Sequence[int]) -> Dict[int, _Seen]:
    return {p.pid: _Seen(p.comm, tuple(sorted((v.start, v.end) for v in p.vmas)))
            for p in scan(mnemonics, pids, skip=skip)}


# a pass yields the pids to read (None: all), is sent the read, returns its records
_Steps = Job[Optional[List[int]], Dict[int, _Seen], List[Record]]
_Pass = Background[Optional[List[int]], Dict[int, _Seen], List[Record]]


def _model_vmas(space: Optional[AddressSpace]) -> Vmas:
    if space is None or space.exited:
        return ()
    return tuple((s, e) for s, e, _ in space.vmas)


@dataclass
class Resyncer:
    """Marks the picture dirty on a loss; when due, runs a pass and returns resync records."""

    mnemonics: Sequence[str]
    skip: Sequence[int] = ()
    pids: Sequence[int] = ()  # -p: only these (and the processes the model already follows)
    quiet_s: float = 0.5  # no new loss for this long before a pass: one during a loss burst would be void
    min_gap_s: float = 1.0
    budget: float = 0.1  # share of the time passes may take...
    max_gap_s: float = 10.0  # ...unless that would leave the picture wrong for longer than this
    clock: Callable[[], float] = time.monotonic
    clock_ns: Callable[[], int] = time.monotonic_ns
    sleep: Callable[[float], None] = time.sleep
    settle_s: float = 0.005  # the tracer's reorder margin: events older than the read are in by then
    knows_mms: bool = True  # mm_of() names a process's address space (the seed hook is attached)
    dirty_all: bool = False  # a loss nobody can attribute: every process is provisional
    dirty: Set[int] = field(default_factory=set)  # pids still to resync after a pass
    dirty_slots: Dict[int, float] = field(default_factory=dict)  # lostspaces slot -> when it last lost
    last_loss: float = -math.inf  # the last loss nobody can attribute
    last_slot_loss: float = -math.inf  # the last one attributed to an address space
    next_at: float = 0.0
    void_passes: int = 0  # passes during which events were lost again
    last_cost_s: float = 0.0  # how long the last pass took
    passes: int = 0
    pass_seconds: float = 0.0  # all passes together
    longest_pass_s: float = 0.0
    pids_read: int = 0  # processes whose smaps the passes read (twice each)
    _window_mms: Optional[Set[int]] = None
    _window_pids: Set[int] = field(default_factory=set)
    _started: float = 0.0  # when the pass under way began
    _background: Optional[_Pass] = None  # the pass under way, its reads on a worker thread

    def stats(self) -> Dict[str, float]:
        """What the passes cost so far (the SIGUSR1 snapshot shows it)."""
        return {"passes": self.passes, "void_passes": self.void_passes, "seconds": round(self.pass_seconds, 3),
                "longest_s": round(self.longest_pass_s, 3), "pids_read": self.pids_read}

    def on_loss(self, slots: Optional[Iterable[int]] = None) -> None:
        """Events were lost: by the address spaces in `slots` (lostspaces.py), or by anyone."""
        now = self.clock()
        if slots is None:
            self.dirty_all = True
            self.last_loss = now
            return
        for slot in slots:
            self.dirty_slots[slot] = now
            self.last_slot_loss = now

    def note(self, rec: Record) -> None:
        """Every record the tracer applies: events inside a pass make their process unsettled."""
        if self._window_mms is not None and rec.get("type") == "event":
            self._window_mms.add(int(rec["mm"]))
            self._window_pids.add(int(rec.get("tgid", 0)))

    @property
    def pending(self) -> bool:
        return self.dirty_all or bool(self.dirty) or bool(self.dirty_slots)

    def pending_for(self, pid: int, mms: Sequence[int] = ()) -> bool:
        """Events were lost that may be `pid`'s (whose address spaces are `mms`, when known) and its
        picture has not been re-read since: provisional."""
        if self.dirty_all or pid in self.dirty:
            return True
        if not mms:
            return bool(self.dirty_slots)  # an unknown address space could be any slot's
        return any(slot_of(mm) in self.dirty_slots for mm in mms)

    def _quiet_slots(self, now: float, quiet: float) -> Set[int]:
        return {slot for slot, at in self.dirty_slots.items() if now - at >= quiet}

    def due(self, now: float) -> bool:
        """A pass is worth running: something is pending, and the losses it would repair have
        stopped (a pass during them would be void).  After a loss nobody can attribute, every
        process must be read: only once no event at all has been lost for a while (under load
        that read is long, and another such loss voids it).  After losses attributed to address
        spaces, once one of them has stopped losing, while others may go on overflowing."""
        quiet = max(self.quiet_s, self.last_cost_s)
        if self._background is not None or not self.pending or now < self.next_at or now - self.last_loss < quiet:
            return False
        if self.dirty_all:
            return now - self.last_slot_loss >= quiet
        return bool(self.dirty) or bool(self._quiet_slots(now, quiet))

    def run(self, model: Model, catch_up: Callable[[], None], loss_mark: Callable[[], LossMark],
            mm_of: Callable[[int], Optional[int]], everything: bool = False) -> List[Record]:
        """One pass, its smaps reads made here.  It looks at the address spaces whose losses have
        stopped (others would void their reads), or at all that lost (`everything`: the trace
        ends, the load may have too)."""
        self._begin()
        try:
            return run_here(self._pass(model, catch_up, loss_mark, mm_of, everything), self._read)
        finally:
            self._end()

    def _read(self, pids: Optional[List[int]]) -> Dict[int, _Seen]:
        return _read_kernel(self.mnemonics, pids, self.skip)

    # A pass in the background (background.py): what the loop applies during its reads lands in
    # the pass's window, exactly as the pass's own catch-ups would have applied it.
    @property
    def in_flight(self) -> bool:
        """A background pass is under way (start() was called, poll() has not returned it)."""
        return self._background is not None

    def start(self, model: Model, catch_up: Callable[[], None], loss_mark: Callable[[], LossMark],
              mm_of: Callable[[int], Optional[int]]) -> List[Record]:
        """Begin a pass whose reads run on a worker thread; poll() finishes it.  Returns the
        records of a pass that needed no read (none, mostly)."""
        assert self._background is None, "one pass at a time"
        self._begin()
        self._background = Background(self._pass(model, catch_up, loss_mark, mm_of, False), self._read,
                                      "mpxtrace-resync-read")
        return self._advanced(self._background.start)

    def poll(self) -> List[Record]:
        """The pass in flight goes on once its read is done: its records when it ends, else []."""
        if self._background is None:
            return []
        return self._advanced(self._background.poll)

    def abandon(self) -> None:
        """The trace ends: a read in flight is left to finish alone, its result unused."""
        if self._background is not None:
            self._background.abandon()
            self._background = None
            self._end()

    def _advanced(self, step: Callable[[], bool]) -> List[Record]:
        assert self._background is not None
        try:
            ended = step()
        except BaseException:
            self._background = None
            self._end()
            raise
        if not ended:
            return []
        records = self._background.outcome or []
        self._background = None
        self._end()
        return records

    def _begin(self) -> None:
        self._started = self.clock()

    def _end(self) -> None:
        self._window_mms = None
        cost = self.last_cost_s = self.clock() - self._started
        self.passes += 1
        self.pass_seconds += cost
        self.longest_pass_s = max(self.longest_pass_s, cost)
        self.next_at = self.clock() + min(self.max_gap_s, max(self.min_gap_s, cost / self.budget))

    def _scope(self, model: Model, slots: Set[int], busy: Set[int], mms: Dict[int, Optional[int]],
               mm_of: Callable[[int], Optional[int]]) -> Optional[List[int]]:
        """The pids to read (None: every process).  After a loss nobody can attribute, every
        process; after attributed ones, those whose address space is in a slot that lost; and
        the ones still pending.  Not a process whose address space is still losing (in `busy`):
        its reads would be void, and it stays provisional.  Each process's mm comes from its
        /proc/PID/statm (the seed hook): far cheaper than its smaps."""
        if not self.knows_mms or (self.dirty_all and not busy):
            if self.dirty_all or slots:
                return sorted(set(self.pids) | {s.pid for s in model.live_spaces() if s.pid}) if self.pids else None
            return sorted(self.dirty)
        if not self.dirty_all and not slots and not busy:
            return sorted(self.dirty)
        if self.dirty_all or slots:
            known = {s.pid for s in model.live_spaces() if s.pid}
            everyone = (set(self.pids) | known) if self.pids else set(all_pids()) | known
        else:
            everyone = set(self.dirty)  # a retry: only its processes, less those still losing
        wanted = set(self.dirty)
        for pid in everyone - set(self.skip):
            mm = mms[pid] = mm_of(pid)  # None: no address space (a kernel thread), or gone
            mine = {slot_of(s.mm) for s in _live_spaces_of(model, pid) if s.mm is not None}
            if mm is not None:
                mine.add(slot_of(mm))
            if mine & busy:
                wanted.discard(pid)
            elif self.dirty_all or mine & slots:
                wanted.add(pid)
        return sorted(wanted)

    def _pass(self, model: Model, catch_up: Callable[[], None], loss_mark: Callable[[], LossMark],
              mm_of: Callable[[int], Optional[int]], everything: bool) -> _Steps:
        """The pass, step by step: it yields the pids to read (None: all) and is sent the read."""
        catch_up()
        before = loss_mark()
        quiet = max(self.quiet_s, self.last_cost_s)
        slots = set(self.dirty_slots) if everything else self._quiet_slots(self.clock(), quiet)
        busy = set(self.dirty_slots) - slots  # address spaces still losing: left for a later pass
        self._window_mms, self._window_pids = set(), set()
        mms: Dict[int, Optional[int]] = {}
        scope = self._scope(model, slots, busy, mms, mm_of)
        first = yield scope
        self.pids_read += len(scope) if scope is not None else len(first)
        catch_up()
        if loss_mark().anyone != before.anyone:
            self.void_passes += 1
            return []  # lost again already, by anyone: the second read would be wasted
        second = yield scope
        ts = self.clock_ns()
        self.sleep(self.settle_s)
        catch_up()
        after = loss_mark()
        if after.anyone != before.anyone:
            self.void_passes += 1
            return []  # a lost event could have been anyone's: all stay dirty
        if scope is None:
            candidates = set(first) | set(second) | {s.pid for s in model.live_spaces() if s.pid}
        else:
            candidates = set(scope)
        candidates -= set(self.skip)
        was_all, self.dirty_all = self.dirty_all, False
        retry = self.dirty
        self.dirty = set()
        lost_meanwhile = after.slots_since(before)
        # slots looked at and quiet throughout are settled; ones that lost again stay pending
        for slot in slots - lost_meanwhile:
            self.dirty_slots.pop(slot, None)
        out: List[Record] = []
        for pid in sorted(candidates):
            a, b = first.get(pid), second.get(pid)
            if a != b or pid in self._window_pids:
                self.dirty.add(pid)  # busy: try again at the next pass
                continue
            gone = b is None and not process_alive(pid)
            mm = None if gone else (mms[pid] if pid in mms else mm_of(pid))
            if mm is not None and mm in self._window_mms:
                self.dirty.add(pid)
                continue
            live = _live_spaces_of(model, pid)
            held = [s.mm for s in live if s.mm is not None]
            if any(after.lost_for(before, m) for m in ([mm] if mm is not None else []) + held) or (
                    mm is None and not held and lost_meanwhile):
                if pid in retry or was_all:
                    self.dirty.add(pid)  # its address space lost events during the reads
                continue
            space = _space_of(model, pid, mm)
            others = [s for s in live if s is not space and s.live_vmas]
            seen = b.vmas if b is not None else ()
            if gone:
                if any(s.live_vmas for s in live):
                    out += resync_records(ts, pid, "", None, (), gone=True)
                continue
            if _model_vmas(space) == seen and not others:
                continue
            comm = b.comm if b is not None else (space.comm if space is not None else "")
            out += resync_records(ts, pid, comm, mm, seen)
        return out
