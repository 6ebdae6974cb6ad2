"""The live tracer: kernel program -> event stream -> ordered records -> session (+ log, output).

Per-CPU perf buffers deliver events out of order across CPUs, so records are held back
until they are older than the start of the poll that read them, then applied in timestamp
order; the log stores them in that applied order, so a replay sees exactly what the live
model saw.
"""
from __future__ import annotations

import ctypes
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

from . import smaps
from .background import Background
from .eventlog import LOG_FORMAT, LOG_VERSION, LogWriter
from .events import COUNTERS, RAW_LAYOUT, Record, decode_bytes
from .flags import TrackedFlags
from .lostspaces import LossMark, changed_slots
from .kernel.features import KernelFeatures
from .procwatch import ExitWatcher
from .program import LoadedProgram, ProgramConfig, build_config, load_program
from .resync import Resyncer
from .stats import Session
from .tallies import tallies_record
from .verify import DriftCheck, VmaSet, drift_check, smaps_reader

__all__ = ["TraceOptions", "Tracer", "make_header"]

REORDER_MARGIN_NS = 5_000_000  # an event is written within this of its timestamp
# Events one poll may take.  libbpf's ring-buffer poll returns only once the ring is empty,
# which under a load faster than the front end is never: the loop (counters, snapshots,
# intervals, resync, exits) stalled and undrained events piled up in memory (the soak).
# A negative return from the callback stops the poll after the event it was given.  A batch is
# also what a snapshot may wait for before it is looked at: in the 7.2 lab under stress-ng the
# tracer got a seventh of a CPU, and 4,096 events took 10-14 s to apply.
POLL_BATCH = 1024
SLOW_COUNTERS_NS = 100_000_000  # between the loop's reads of the costly loss counts (_read_counters)


@dataclass
class TraceOptions:
    tracked: TrackedFlags
    pids: Sequence[int] = ()
    attach: str = "auto"
    buffer: str = "auto"
    offsets: str = "auto"
    interval: Optional[float] = None
    count: Optional[int] = None
    duration: Optional[float] = None
    log: Optional[Path] = None
    seed: bool = True
    buffer_pages: Optional[int] = None
    verify: Optional[float] = None  # seconds between checks of the model against smaps
    resync: bool = True  # after lost events, re-read the picture from smaps (resync.py)


def make_header(options: TraceOptions, config: Optional[ProgramConfig], features: Optional[KernelFeatures],
                start_ns: int) -> Record:
    return {
        "type": "header",
        "format": LOG_FORMAT,
        "version": LOG_VERSION,
        "start_ns": start_ns,
        "wall_start": time.time(),
        "interval_ns": int((options.interval or 1.0) * 1e9),
        "mask": options.tracked.mask,
        "names": list(options.tracked.names),
        "mnemonics": list(options.tracked.mnemonics),
        "pids": list(options.pids),
        "tracer_pid": os.getpid(),
        "kernel": features.release if features else None,
        "buffer": config.buffer if config else None,
        "attach": [a.__dict__ for a in config.plan.attaches] if config else [],
    }


@dataclass
class Tracer:
    options: TraceOptions
    features: KernelFeatures  # what the kernel offers, capabilities included
    on_record: Callable[[Record, Session], None] = lambda rec, session: None
    on_interval: Callable[[Session, float], None] = lambda session, now: None
    on_snapshot: Callable[[Session], None] = lambda session: None
    on_targets_gone: Callable[[], None] = lambda: None
    on_log_stopped: Callable[[str], None] = lambda message: None  # the log hit a write error; tracing goes on
    session: Optional[Session] = None
    _pending: List[Record] = field(default_factory=list)
    _program: Optional[LoadedProgram] = None
    _log: Optional[LogWriter] = None
    _lost_callback: int = 0  # perf lost-callback total
    _lost_reported: int = 0
    _counted: Dict[str, int] = field(default_factory=dict)  # in-kernel loss counters reported so far
    _kernel_lost: int = 0  # lost_submit when the per-slot counts were last read
    _lost_slots: Tuple[int, ...] = ()  # the kernel's refusals by address-space slot (lostspaces.py)
    _anyone_before: int = 0  # losses of unknown address space at the last read
    _unlogged_slots: Dict[int, int] = field(default_factory=dict)  # per-slot losses for the next `lost` record
    _seeded_pids: Set[int] = field(default_factory=set)
    load_seconds: float = 0.0  # BCC compile + load + attach
    _old_handlers: Dict[int, Any] = field(default_factory=dict)
    _stop: bool = False
    _snapshot_requested: bool = False
    _resync: Optional[Resyncer] = None
    _verifying: Optional["Background[None, Dict[int, VmaSet], List[Record]]"] = None  # --verify: a check under way
    _next_verify: Optional[float] = None  # when the next --verify check starts
    _poll_until: Optional[int] = None  # catching up: a poll ends at the first event this new
    _slow_counts: Tuple[int, int] = (0, 0)  # probe misses, programs skipped: at the last read
    _slow_read_at: int = -(1 << 62)

    @property
    def config(self) -> ProgramConfig:
        """What was loaded: buffer kind and the per-function attach plan (after start())."""
        if self._program is None:
            raise RuntimeError("the tracer is not started")
        return self._program.config

    # -- setup ----------------------------------------------------------------------------------
    def program_config(self) -> ProgramConfig:
        """The kernel program these options need on this kernel (what start() loads, `--ebpf` prints)."""
        return build_config(self.options.tracked, self.features, self.options.attach, self.options.buffer,
                            self.options.pids, self.options.offsets, self.options.buffer_pages)

    def start(self) -> Session:
        config = self.program_config()
        if self.options.log is not None:
            # fail before the slow compile; a write error later stops only the log
            self._log = LogWriter(self.options.log, on_failure=lambda message: self.on_log_stopped(message))
        started = time.monotonic()
        self._program = load_program(config)
        self.load_seconds = time.monotonic() - started
        # From here on Ctrl-C, SIGTERM and SIGUSR1 belong to the trace: a signal that arrives
        # before run() (a caller reacting to "attached") must not kill the tracer.
        self._old_handlers = {sig: signal.signal(sig, handler) for sig, handler in (
            (signal.SIGINT, self.request_stop), (signal.SIGTERM, self.request_stop),
            (signal.SIGUSR1, self.request_snapshot))}
        self._program.open_buffer(self._on_raw, self._on_perf_lost)
        header = make_header(self.options, config, self.features, time.monotonic_ns())
        self.session = Session(header)
        if self.options.resync:
            self._resync = Resyncer(self.options.tracked.mnemonics, skip=(os.getpid(),), pids=self.options.pids,
                                    settle_s=REORDER_MARGIN_NS / 1e9, knows_mms=config.plan.uses("seed"))
        self._emit(header, apply=False)
        if self.options.seed:
            self._seed()
        return self.session

    def _seed(self) -> None:
        """Flagged VMAs that existed before tracing: tables allocated earlier still cost memory."""
        now = time.monotonic_ns()
        for proc in smaps.scan(self.options.tracked.mnemonics, self.options.pids or None, skip=(os.getpid(),)):
            self._seeded_pids.add(proc.pid)
            mm = self._program.mm_of(proc.pid) if self._program is not None else None
            for vma in proc.vmas:
                rec = {"type": "seed", "ts": now, "pid": proc.pid, "comm": proc.comm, "start": vma.start,
                       "end": vma.end, "flags": self.options.tracked.mask}
                if mm is not None:
                    rec["mm"] = mm
                self._emit(rec)

    # -- the stream ---------------------------------------------------------------------------------
    def _on_raw(self, data: Any) -> int:
        rec = decode_bytes(ctypes.string_at(data, RAW_LAYOUT.size))  # a copy: the buffer's slot is reused
        self._pending.append(rec)
        if len(self._pending) >= POLL_BATCH or (self._poll_until is not None and rec["ts"] >= self._poll_until):
            return -1  # end this poll (ring buffer)
        return 0

    def _on_perf_lost(self, count: int) -> None:
        self._lost_callback += int(count)

    def _emit(self, rec: Record, apply: bool = True) -> None:
        if self._log is not None:
            self._log.write(rec)
        if apply and self.session is not None:
            if self._resync is not None:
                self._resync.note(rec)
            self.session.apply(rec)
            self.on_record(rec, self.session)

    def _read_counters(self, now: int, thorough: bool = True) -> None:
        """Losses since the last read, as `lost` records.  Not `thorough` (the loop's every turn):
        the two counts that cost system calls (tracefs, one bpf call per program: about 3 ms a turn
        under TCG) are read at most every SLOW_COUNTERS_NS; every catch-up reads all of them."""
        assert self._program is not None
        values = dict(zip(COUNTERS, self._program.counters()))
        # The kernel counts failed submissions; perf also reports losses to its callback, later
        # and only once more data is written.  Both count the same events: take the larger.
        lost = kernel_lost = values["lost_submit"]
        source = "ring_buffer"
        if self._program.config.buffer == "perf":
            lost, source = max(lost, self._lost_callback), "perf_buffer"
        seen_before = self.losses_seen()
        slots_lost: Set[int] = set()
        if kernel_lost != self._kernel_lost:
            # read after the total: the program counts a refusal in its slot first (lostspaces.py)
            slots = self._program.lost_slots()
            slots_lost = changed_slots(self._lost_slots, slots)
            for slot in slots_lost:
                before = self._lost_slots[slot] if self._lost_slots else 0
                self._unlogged_slots[slot] = self._unlogged_slots.get(slot, 0) + slots[slot] - before
            self._lost_slots, self._kernel_lost = slots, kernel_lost
        if lost > self._lost_reported:
            rec: Record = {"type": "lost", "ts": now, "source": source, "count": lost - self._lost_reported}
            if self._unlogged_slots:  # whose: the model charges each address space its slot's count
                rec["slots"] = [[slot, n] for slot, n in sorted(self._unlogged_slots.items())]
                self._unlogged_slots = {}
            self._pending.append(rec)
            self._lost_reported = lost
        # Other ways an event goes missing, each counted where it happens: nesting deeper than
        # the per-thread frame stack, frames whose return never came (unwound), a full kernel
        # map, kprobes/kretprobes the kernel skipped (maxactive, recursion), and runs of our
        # programs the kernel skipped because one was already running on the CPU (preempted).
        if thorough or now - self._slow_read_at >= SLOW_COUNTERS_NS:
            self._slow_counts = (self._program.probe_misses(), self._program.programs_skipped())
            self._slow_read_at = now
        values["probe_missed"], values["program_skipped"] = self._slow_counts
        for counter in ("frame_overflow", "frame_stale", "map_full", "probe_missed", "program_skipped"):
            new = values[counter] - self._counted.get(counter, 0)
            if new > 0:
                self._pending.append({"type": "lost", "ts": now, "source": counter, "count": new})
                self._counted[counter] = values[counter]
        anyone = self.loss_mark().anyone
        if self._resync is not None and self.losses_seen() != seen_before:
            if anyone > self._anyone_before:
                self._resync.on_loss()  # whose, nobody knows: every picture is provisional
            if slots_lost:
                self._resync.on_loss(slots_lost)
        self._anyone_before = max(self._anyone_before, anyone)

    def losses_seen(self) -> int:
        """Events lost so far, every source (as reported in `lost` records)."""
        return self._lost_reported + sum(self._counted.values())

    def loss_mark(self) -> LossMark:
        """Losses so far, by whose they were where the kernel knows (lostspaces.py)."""
        attributed = self._kernel_lost if self._lost_slots else 0
        return LossMark(self.losses_seen() - attributed, self._lost_slots)

    def _drain(self, cutoff: Optional[int]) -> None:
        """Apply pending records older than `cutoff` (all when None), in timestamp order."""
        self._pending.sort(key=lambda r: int(r["ts"]))
        if cutoff is None:
            ready, self._pending = self._pending, []
        else:
            split = len(self._pending)
            for i, rec in enumerate(self._pending):
                if int(rec["ts"]) > cutoff:
                    split = i
                    break
            ready, self._pending = self._pending[:split], self._pending[split:]
        for rec in ready:
            self._emit(rec)

    def add_record(self, rec: Record) -> None:
        """A record the front end made (a resident sample): logged and applied now, like the kernel's."""
        self._emit(rec)

    def request_stop(self, *_: object) -> None:
        self._stop = True

    def request_snapshot(self, *_: object) -> None:
        self._snapshot_requested = True

    # -- main loop ------------------------------------------------------------------------------------
    def run(self) -> Session:
        assert self._program is not None and self.session is not None
        # -p targets end the trace when they exit; seeded processes are retired when they exit
        # (their teardown may carry no flagged VMA, e.g. 5.10 clears VM_LOCKED before freeing).
        # Made before the clock starts: setting it up must not eat into the first interval.
        watched = set(self.options.pids) | self._seeded_pids
        watcher = ExitWatcher(watched) if watched else None
        started = time.monotonic()
        interval = self.options.interval
        next_tick = started + interval if interval else None
        ticks = 0
        self._next_verify = started + self.options.verify if self.options.verify else None
        try:
            while not self._stop:
                poll_start = time.monotonic_ns()
                self._program.poll(100)
                self._read_counters(poll_start, thorough=False)
                self._drain(poll_start - REORDER_MARGIN_NS)
                now = time.monotonic()
                if self._snapshot_requested:
                    self._snapshot_requested = False
                    self._flush_all()
                    self._record_tallies()
                    self.on_snapshot(self.session)
                if self._next_verify is not None:
                    self._verify_step(now)
                if self._resync is not None:
                    self._resync_step(now)
                if self.options.duration is not None and now - started >= self.options.duration:
                    break
                if watcher is not None:
                    for pid in watcher.poll():
                        if pid in self._seeded_pids:
                            self._pending.append({"type": "proc_exit", "ts": time.monotonic_ns(), "pid": pid})
                    if self.options.pids and watcher.gone >= set(self.options.pids):
                        self.on_targets_gone()  # like strace -p: the trace ends with its targets
                        break
                if next_tick is not None and now >= next_tick:
                    ticks += 1
                    self._record_tallies()
                    self.on_interval(self.session, now)
                    if self._log is not None:
                        self._log.flush()
                    next_tick += interval  # type: ignore[operator]
                    if self.options.count is not None and ticks >= self.options.count:
                        break
        finally:
            if watcher is not None:
                watcher.close()
            self._restore_signals()
            self.finish()
        return self.session

    def resync_stats(self) -> Optional[Dict[str, float]]:
        """Resync passes so far and what they cost, or None with --no-resync."""
        return self._resync.stats() if self._resync is not None else None

    def resync_pending(self, pid: int, mm: Optional[int] = None) -> bool:
        """`pid`'s picture (of address space `mm`, or all of its) is provisional: events that may
        be its were lost and resync has not re-read it yet."""
        if self._resync is None or not self._resync.pending:
            return False
        if mm is not None:
            return self._resync.pending_for(pid, [mm])
        spaces = self.session.model.live_spaces() if self.session is not None else []
        return self._resync.pending_for(pid, [s.mm for s in spaces if s.pid == pid and s.mm is not None])

    def _verify_step(self, now: float) -> None:
        """--verify: starts a check against smaps when one is due, or moves the one under way on
        once its read is done (verify.py).  Like resync passes, its reads run beside the loop:
        two reads of every process, seconds under load, would freeze it."""
        assert self.session is not None and self.options.verify
        if self._verifying is None:
            if self._next_verify is None or now < self._next_verify:
                return
            if self._resync is not None and self._resync.dirty_all:
                self._next_verify = now + self.options.verify  # every picture provisional: nothing to check
                return
            check: DriftCheck = drift_check(self.session.model, time.monotonic_ns, self._flush_all)
            self._verifying = Background(check, smaps_reader(self.options.tracked.mnemonics, (os.getpid(),)),
                                         "mpxtrace-verify-read")
            step = self._verifying.start
        else:
            step = self._verifying.poll
        if not step():  # a failed read raises here and ends the check (finish() drops it)
            return
        drift = self._verifying.outcome or []
        self._verifying = None
        self._next_verify = time.monotonic() + self.options.verify
        for rec in drift:
            # not a process whose picture is provisional: the loss was reported, resync repairs it
            if not self.resync_pending(int(rec["pid"])):
                self._emit(rec)

    def _resync_step(self, now: float) -> None:
        """Starts a resync pass when one is due, or moves the one under way on once its smaps read
        is done.  The reads run beside the loop, which goes on draining and answering meanwhile."""
        assert self.session is not None and self._resync is not None and self._program is not None
        if self._resync.in_flight:
            records = self._resync.poll()
        elif self._resync.due(now):
            records = self._resync.start(self.session.model, self._flush_all, self.loss_mark, self._program.mm_of)
        else:
            return
        for rec in records:
            self._emit(rec)

    def _resync_pass(self, everything: bool = False) -> None:
        """After lost events: the picture re-read from smaps where that is provably exact (resync.py)."""
        assert self.session is not None and self._resync is not None and self._program is not None
        for rec in self._resync.run(self.session.model, self._flush_all, self.loss_mark, self._program.mm_of,
                                    everything):
            self._emit(rec)

    def _record_tallies(self) -> None:
        """The kernel's own aggregates as of now (tallies.py), logged and applied like any record."""
        assert self._program is not None
        self._emit(tallies_record(self._program.tallies(), time.monotonic_ns()))

    def _restore_signals(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers = {}

    def _flush_all(self) -> None:
        """Read everything the kernel had produced when called and apply it.  Not what a load
        faster than us adds meanwhile: that would keep a snapshot or a resync pass waiting for
        minutes (the soak), so reading stops at the first event newer than the call."""
        assert self._program is not None
        since = self._poll_until = time.monotonic_ns()
        try:
            for _ in range(64):
                before = len(self._pending)
                self._program.poll(0)
                if len(self._pending) == before or int(self._pending[-1]["ts"]) >= since:
                    break
        finally:
            self._poll_until = None
        self._read_counters(time.monotonic_ns())
        self._drain(None)

    def finish(self) -> None:
        if self._program is None or self.session is None:
            return
        self._flush_all()
        if self._verifying is not None:
            self._verifying.abandon()  # a check cut short finds nothing
            self._verifying = None
        if self._resync is not None:
            self._resync.abandon()  # its read is stale by now: the pass below reads again
        if self._resync is not None and self._resync.pending:
            self._resync_pass(everything=True)  # the summary's live figures: exact if the load has stopped
        self._record_tallies()
        self._emit({"type": "end", "ts": time.monotonic_ns()})
        self._program.close()
        self._program = None
        if self._log is not None:
            self._log.close()
