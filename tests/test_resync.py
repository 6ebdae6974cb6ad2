"""Resync after loss (issue 9 item 1): a resync record sets a process's picture to what smaps
showed, without inventing births or lifetimes; a pass resyncs only processes it can prove
settled, and nothing while events are being lost."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import pytest

from mpxtrace import resync
from mpxtrace.lostspaces import SLOTS, LossMark, slot_of
from mpxtrace.records import LogChecker, RecordError, check_record
from mpxtrace.resync import Resyncer, _Seen, apply_resync, resync_records
from mpxtrace.stats import Session

from helpers import MASK, MM, MM2, PAGE, ev, header, live_and_replayed

A = 0x7F0000000000


def vmas_of(session: Session, pid: int = 100) -> List[tuple]:
    live = [s for s in session.model.spaces if s.pid == pid and not s.exited]
    return [(s, e) for sp in live for s, e, _ in sp.vmas]


def invariant_holds(session: Session) -> bool:
    return all(s.allocated_bytes + s.seeded_bytes - s.freed_bytes == s.live_bytes for s in session.model.spaces)


def session_with(*records: Dict[str, Any]) -> Session:
    session = Session(header())
    for rec in records:
        session.apply(rec)
    return session


def test_resync_sets_the_picture_exactly_and_invents_no_birth_nor_lifetime() -> None:
    # the model saw two maps; the kernel really has the first one grown and a third one it never saw
    session = session_with(ev("map", 10, A, A + 4 * PAGE), ev("map", 20, A + 16 * PAGE, A + 20 * PAGE))
    sizes_before = session.stats.sizes.to_json()
    for rec in resync_records(30, 100, "work", MM, ((A, A + 2 * PAGE), (A + 2 * PAGE, A + 6 * PAGE),
                                                      (A + 40 * PAGE, A + 41 * PAGE))):
        session.apply(rec)
    assert vmas_of(session) == [(A, A + 2 * PAGE), (A + 2 * PAGE, A + 6 * PAGE), (A + 40 * PAGE, A + 41 * PAGE)]
    space = session.model.spaces[0]
    assert space.live_bytes == 7 * PAGE and space.live_vmas == 3
    assert space.seeded_bytes == 3 * PAGE  # found memory: the 2 grown pages and the unseen map
    assert space.freed_bytes == 4 * PAGE  # the map smaps no longer has
    assert invariant_holds(session)
    assert session.stats.sizes.to_json() == sizes_before  # no allocation invented
    assert session.stats.lifetimes.count == 0  # nor a free whose time is unknown
    summary = session.summary()
    assert summary["resyncs"] == 1 and summary["totals"]["live_bytes"] == 7 * PAGE
    # memory the model kept through the resync still dies with its true lifetime
    session.apply(ev("unmap", 50, A, A + 6 * PAGE))
    assert session.stats.lifetimes.count == 1 and session.stats.lifetimes.total == 50 - 10


def test_resync_of_an_unknown_process_creates_it_and_an_empty_one_frees_all() -> None:
    session = session_with(ev("map", 10, A, A + PAGE))
    apply_resync(session.model, resync_records(20, 200, "other", MM2, ((A, A + 8 * PAGE),))[0])
    assert vmas_of(session, 200) == [(A, A + 8 * PAGE)]
    session.apply(ev("unmap", 30, A, A + 8 * PAGE, mm=MM2, tgid=200))  # later events find it by mm
    assert vmas_of(session, 200) == []
    for rec in resync_records(40, 100, "work", MM, ()):
        session.apply(rec)
    assert vmas_of(session, 100) == [] and invariant_holds(session)


def test_gone_process_is_retired_and_exec_retires_the_old_mm() -> None:
    session = session_with(ev("map", 10, A, A + PAGE), ev("map", 11, A, A + 2 * PAGE, mm=MM2, tgid=200))
    for rec in resync_records(20, 200, "", None, (), gone=True):
        session.apply(rec)
    assert [s.exited for s in session.model.spaces] == [False, True]
    # pid 100 exec'd into a new mm and both its teardown and the new maps were lost
    new_mm = 0xFFFF888000300000
    for rec in resync_records(30, 100, "work2", new_mm, ((A + PAGE, A + 3 * PAGE),)):
        session.apply(rec)
    old, _, new = session.model.spaces
    assert old.exited and old.live_bytes == 0 and new.mm == new_mm and new.live_bytes == 2 * PAGE
    session.apply(ev("unmap", 40, A + PAGE, A + 2 * PAGE, mm=new_mm))
    assert new.live_bytes == PAGE and invariant_holds(session)


def test_a_seeded_space_learns_its_mm_from_a_resync() -> None:
    session = session_with({"type": "seed", "ts": 1, "pid": 100, "comm": "work", "start": A, "end": A + PAGE,
                            "flags": MASK})
    apply_resync(session.model, resync_records(5, 100, "work", MM, ((A, A + PAGE), (A + 4 * PAGE, A + 5 * PAGE)))[0])
    session.apply(ev("unmap", 9, A, A + PAGE))  # tied by mm now, not by a second space
    assert len(session.model.spaces) == 1 and vmas_of(session) == [(A + 4 * PAGE, A + 5 * PAGE)]


def test_large_pictures_are_split_by_address_and_every_piece_is_a_valid_log_record(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resync, "MAX_VMAS_PER_RECORD", 3)
    picture = tuple((A + 2 * i * PAGE, A + (2 * i + 1) * PAGE) for i in range(8))
    records = resync_records(7, 100, "work", MM, picture)
    assert len(records) == 3 and records[0]["within"][0] == 0 and records[-1]["within"][1] == (1 << 64) - 1
    assert [r["within"][1] for r in records[:-1]] == [r["within"][0] for r in records[1:]]
    checker = LogChecker()
    for rec in records:
        checker.check(json.loads(json.dumps(rec)))
    session = session_with(ev("map", 1, A + 100 * PAGE, A + 101 * PAGE), *records)
    assert vmas_of(session) == list(picture)


@pytest.mark.parametrize("vmas", [[[A + PAGE, A + 2 * PAGE], [A, A + PAGE]],  # descending
                                  [[A, A + 2 * PAGE], [A + PAGE, A + 3 * PAGE]],  # overlapping
                                  [[A, A + PAGE]]])  # outside `within` below
def test_a_damaged_resync_record_is_refused(vmas: List[List[int]]) -> None:
    rec = {"type": "resync", "ts": 1, "pid": 100, "within": [A if len(vmas) == 2 else A + PAGE, 1 << 63],
           "vmas": vmas}
    with pytest.raises(RecordError, match="resync VMA"):
        check_record(rec)


def test_report_replays_a_log_with_resyncs_into_the_same_summary(tmp_path: Path) -> None:
    records: List[Dict[str, Any]] = [ev("map", 10, A, A + 4 * PAGE), {"type": "lost", "ts": 11, "source": "ring_buffer",
                                                                      "count": 5}]
    records += resync_records(20, 100, "work", MM, ((A, A + PAGE),))
    records += [ev("map", 30, A + 8 * PAGE, A + 9 * PAGE), {"type": "end", "ts": 40}]
    live, replay = live_and_replayed(records, tmp_path / "log")
    assert replay.summary() == live.summary()
    assert live.summary()["histograms_complete"] is False and live.summary()["totals"]["live_bytes"] == 2 * PAGE


# -- passes -------------------------------------------------------------------------------------
class FakeKernel:
    """What the pass reads: smaps pictures (a list consumed per read), mms, liveness."""

    def __init__(self, reads: List[Dict[int, _Seen]], mms: Dict[int, int], alive: Sequence[int] = ()) -> None:
        self.reads = reads
        self.mms = mms
        self.alive = set(alive) | set(mms)
        self.lost = 0  # losses of unknown address space
        self.slots = [0] * SLOTS  # the kernel's per-slot refusals (lostspaces.py)
        self.events_during: List[Dict[str, Any]] = []  # applied at the first catch-up inside the pass
        self.catch_ups = 0
        self.scopes: List[Optional[List[int]]] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(resync, "_read_kernel", self._read)
        monkeypatch.setattr(resync, "process_alive", lambda pid: pid in self.alive)

    def _read(self, mnemonics: Sequence[str], pids: Optional[Sequence[int]], skip: Sequence[int]) -> Dict[int, _Seen]:
        self.scopes.append(None if pids is None else list(pids))
        return self.reads.pop(0)

    def mm_of(self, pid: int) -> Optional[int]:
        return self.mms.get(pid)


def run_pass(kernel: FakeKernel, session: Session, resyncer: Resyncer) -> List[Dict[str, Any]]:
    def catch_up() -> None:
        kernel.catch_ups += 1
        if kernel.catch_ups == 2:
            for rec in kernel.events_during:
                resyncer.note(rec)
                session.apply(rec)
    return resyncer.run(session.model, catch_up, lambda: LossMark(kernel.lost, tuple(kernel.slots)), kernel.mm_of)


def resyncer(**kw: Any) -> Resyncer:
    return Resyncer(["lo"], clock=lambda: 100.0, clock_ns=lambda: 777, sleep=lambda s: None, **kw)


def test_a_pass_resyncs_settled_processes_and_keeps_busy_ones_pending(monkeypatch: pytest.MonkeyPatch) -> None:
    session = session_with(ev("map", 10, A, A + PAGE), ev("map", 11, A, A + PAGE, mm=MM2, tgid=200))
    seen = {100: _Seen("work", ((A, A + 3 * PAGE),)), 200: _Seen("busy", ((A, A + 2 * PAGE),))}
    kernel = FakeKernel([dict(seen), dict(seen)], {100: MM, 200: MM2})
    kernel.events_during = [ev("map", 12, A + 9 * PAGE, A + 10 * PAGE, mm=MM2, tgid=200)]
    kernel.install(monkeypatch)
    r = resyncer()
    r.on_loss()
    out = run_pass(kernel, session, r)
    assert [(rec["pid"], rec["vmas"], rec["ts"]) for rec in out] == [(100, [[A, A + 3 * PAGE]], 777)]
    assert r.dirty == {200} and r.pending  # an event arrived for it while smaps was read
    assert r.pending_for(200) and not r.pending_for(100)  # only the busy one stays provisional
    # the next pass: 200 is quiet now, and 100 (settled already) is not looked at again
    kernel.reads = [{200: _Seen("busy", ((A, A + 2 * PAGE),))}] * 2
    kernel.events_during = []
    kernel.catch_ups = 0
    out = run_pass(kernel, session, r)
    assert [(rec["pid"], rec["vmas"]) for rec in out] == [(200, [[A, A + 2 * PAGE]])] and not r.pending
    assert kernel.scopes == [None, None, [200], [200]]  # the retry read only the pending process


def test_a_pass_during_which_events_were_lost_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    session = session_with(ev("map", 10, A, A + PAGE))
    seen = {100: _Seen("work", ((A, A + 3 * PAGE),))}
    kernel = FakeKernel([dict(seen), dict(seen)], {100: MM})
    kernel.install(monkeypatch)
    r = resyncer()
    r.on_loss()

    def losing() -> LossMark:
        kernel.lost += 1
        return LossMark(kernel.lost)
    assert r.run(session.model, lambda: None, losing, kernel.mm_of) == []
    assert r.dirty_all and r.void_passes == 1


def test_two_reads_that_differ_resync_nothing_and_agreeing_ones_already_right_write_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    session = session_with(ev("map", 10, A, A + PAGE))
    kernel = FakeKernel([{100: _Seen("work", ((A, A + 2 * PAGE),))}, {100: _Seen("work", ((A, A + PAGE),))}],
                        {100: MM})
    kernel.install(monkeypatch)
    r = resyncer()
    r.on_loss()
    assert run_pass(kernel, session, r) == [] and r.dirty == {100}
    kernel.reads = [{100: _Seen("work", ((A, A + PAGE),))}] * 2
    assert run_pass(kernel, session, r) == [] and not r.pending  # the model is right: no record needed


def test_an_exited_process_whose_teardown_was_lost_is_retired(monkeypatch: pytest.MonkeyPatch) -> None:
    session = session_with(ev("map", 10, A, A + PAGE))
    kernel = FakeKernel([{}, {}], {})
    kernel.install(monkeypatch)
    r = resyncer()
    r.on_loss()
    out = run_pass(kernel, session, r)
    assert [(rec["pid"], rec.get("gone")) for rec in out] == [(100, True)]
    for rec in out:
        session.apply(rec)
    assert session.model.spaces[0].exited and session.summary()["totals"]["live_bytes"] == 0


def test_passes_wait_for_quiet_and_are_rate_limited() -> None:
    now = [0.0]
    r = Resyncer(["lo"], clock=lambda: now[0], quiet_s=0.5, min_gap_s=1.0, budget=0.05)
    assert not r.due(now[0])  # nothing lost
    r.on_loss()
    assert not r.due(0.2)  # losses still coming
    assert r.due(0.6)
    r.next_at = 5.0  # set by a pass that took 0.2 s: 0.2 / 0.05 = 4 s later
    assert not r.due(4.9) and r.due(5.0)


def test_a_costly_pass_delays_the_next_one_at_most_max_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    session = session_with(ev("map", 10, A, A + PAGE))
    kernel = FakeKernel([{}, {}], {}, alive=[100])
    kernel.install(monkeypatch)
    now = [0.0]

    def slow_catch_up() -> None:
        now[0] += 1.0  # three catch-ups: a 3 s pass
    r = Resyncer(["lo"], clock=lambda: now[0], sleep=lambda s: None, budget=0.1, max_gap_s=10.0)
    r.on_loss()
    r.run(session.model, slow_catch_up, lambda: LossMark(0), kernel.mm_of)
    assert r.next_at == now[0] + 10.0  # not 3 / 0.1 = 30 s
    # and the next pass waits for the stream to have been loss-free as long as a pass takes
    r.dirty_all = True
    r.last_loss = now[0] + 8.0
    assert not r.due(now[0] + 10.5) and r.due(now[0] + 11.0)


def test_a_loss_the_tracer_reads_makes_a_resync_pending() -> None:
    from test_tracer_losses import tracer
    t = tracer("ring")
    t._resync = resyncer()
    t._read_counters(1)
    assert not t._resync.pending
    t._program.values["frame_stale"] = 1  # type: ignore[union-attr]
    t._read_counters(2)
    assert t._resync.pending and t.losses_seen() == 1


def test_snapshots_mark_and_verify_skips_the_processes_a_loss_left_provisional(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from test_tracer_losses import tracer
    from mpxtrace import tracer as tracer_module
    t = tracer("ring")
    t.session = session_with(ev("map", 10, A, A + PAGE), ev("map", 11, A, A + PAGE, mm=MM2, tgid=200))
    t._resync = resyncer()
    drift = [{"type": "drift", "ts": 1, "pid": pid, "vma": [A, A + PAGE], "expected": "present", "seen": "absent"}
             for pid in (100, 200)]

    def check_finding_drift(*args: Any) -> Any:  # a check that needs no read: it ends when started
        return list(drift)
        yield  # makes this a generator, as drift_check is
    monkeypatch.setattr(tracer_module, "drift_check", check_finding_drift)
    emitted: List[Dict[str, Any]] = []
    monkeypatch.setattr(t, "_emit", emitted.append)
    t.options.verify = 10.0

    def verify() -> None:
        t._next_verify = 0.0
        t._verify_step(1.0)
        assert t._verifying is None and t._next_verify > 1.0  # ended; the next one is scheduled
    verify()
    assert [r["pid"] for r in emitted] == [100, 200] and not t.resync_pending(100)  # no loss: all checked
    t._resync.on_loss()
    emitted.clear()
    verify()
    assert emitted == [] and t.resync_pending(100) and t.resync_pending(200)  # all provisional after a loss
    t._resync.dirty_all, t._resync.dirty = False, {200}  # a pass repaired 100; 200 was busy
    verify()
    assert [r["pid"] for r in emitted] == [100] and t.resync_pending(200) and not t.resync_pending(100)


def test_the_text_summary_says_why_it_is_incomplete() -> None:
    from mpxtrace.render import summary_text
    summary = session_with(ev("map", 1, A, A + PAGE)).summary()
    assert "the tracer did not finish" in summary_text(summary)
    summary.update(complete=False, skipped_records=3, ended=True)
    text = summary_text(summary)
    assert "3 damaged records skipped" in text and "did not finish" not in text and "killed" not in text
    summary.update(lost_events=5, lost_by_source={"ring_buffer": 5}, resyncs=2)
    assert "re-read from smaps after the losses (2 resyncs)" in summary_text(summary)


# -- losses attributed to address spaces (lostspaces.py) ------------------------------------------
def test_a_process_that_went_quiet_is_repaired_while_another_keeps_losing(monkeypatch: pytest.MonkeyPatch) -> None:
    """One process overflowing the stream no longer keeps every other picture provisional: the
    pass corrects the process whose address space stopped losing, reads only the processes of
    the slots that lost, and leaves the one still losing pending."""
    assert slot_of(MM) != slot_of(MM2)
    session = session_with(ev("map", 10, A, A + PAGE), ev("map", 11, A, A + PAGE, mm=MM2, tgid=200))
    seen = {100: _Seen("work", ((A, A + 3 * PAGE),))}
    kernel = FakeKernel([dict(seen), dict(seen)], {100: MM, 200: MM2, 300: 0xFFFF888000900000})
    kernel.install(monkeypatch)
    monkeypatch.setattr(resync, "all_pids", lambda: [1, 100, 200, 300])
    now = [0.0]
    r = Resyncer(["lo"], clock=lambda: now[0], clock_ns=lambda: 777, sleep=lambda s: None)
    r.on_loss({slot_of(MM)})
    assert r.pending_for(100, [MM]) and not r.pending_for(200, [MM2]) and not r.dirty_all
    now[0] = 0.3
    r.on_loss({slot_of(MM2)})  # 200 overflows the stream...
    assert not r.due(0.4)  # ...and 100's losses are 0.4 s old: not quiet yet
    assert r.due(0.6)  # quiet for 0.5 s, while 200 still loses
    now[0] = 0.6

    def catch_up() -> None:  # ...and goes on losing during the pass
        kernel.slots[slot_of(MM2)] += 1
        r.on_loss({slot_of(MM2)})
    out = r.run(session.model, catch_up, lambda: LossMark(kernel.lost, tuple(kernel.slots)), kernel.mm_of)
    assert [(rec["pid"], rec["vmas"]) for rec in out] == [(100, [[A, A + 3 * PAGE]])]
    assert kernel.scopes == [[100], [100]]  # not 200 (still losing), not 1 or 300 (lost nothing)
    assert not r.pending_for(100, [MM]) and r.pending_for(200, [MM2]) and r.void_passes == 0
    assert set(r.dirty_slots) == {slot_of(MM2)}


def test_a_process_whose_address_space_lost_during_the_pass_is_not_corrected(
        monkeypatch: pytest.MonkeyPatch) -> None:
    session = session_with(ev("map", 10, A, A + PAGE))
    seen = {100: _Seen("work", ((A, A + 3 * PAGE),))}
    kernel = FakeKernel([dict(seen), dict(seen)], {100: MM})
    kernel.install(monkeypatch)
    monkeypatch.setattr(resync, "all_pids", lambda: [100])
    r = resyncer()
    r.on_loss({slot_of(MM)})

    def catch_up() -> None:  # its events are refused while smaps is read: the reads may be stale
        kernel.slots[slot_of(MM)] += 1
    out = r.run(session.model, catch_up, lambda: LossMark(kernel.lost, tuple(kernel.slots)), kernel.mm_of,
                everything=True)
    assert kernel.scopes == [[100], [100]]  # it was read...
    assert out == [] and r.pending_for(100, [MM])  # ...and not corrected


def test_a_loss_nobody_can_attribute_still_voids_the_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    session = session_with(ev("map", 10, A, A + PAGE))
    kernel = FakeKernel([{}, {}], {100: MM})
    kernel.install(monkeypatch)
    monkeypatch.setattr(resync, "all_pids", lambda: [100])
    r = resyncer()
    r.on_loss({slot_of(MM)})

    def catch_up() -> None:
        kernel.lost += 1
    assert r.run(session.model, catch_up, lambda: LossMark(kernel.lost, tuple(kernel.slots)), kernel.mm_of,
                 everything=True) == []
    assert r.void_passes == 1 and r.pending_for(100, [MM])


def test_an_unknown_address_space_is_provisional_while_any_slot_is() -> None:
    r = resyncer()
    assert not r.pending_for(100)
    r.on_loss({slot_of(MM2)})
    assert r.pending_for(100) and not r.pending_for(100, [MM])


def test_without_the_seed_hook_a_slot_that_lost_makes_the_pass_read_everyone(monkeypatch: pytest.MonkeyPatch) -> None:
    session = session_with(ev("map", 10, A, A + PAGE))
    seen = {100: _Seen("work", ((A, A + 2 * PAGE),))}
    kernel = FakeKernel([dict(seen), dict(seen)], {})
    kernel.install(monkeypatch)
    r = resyncer(knows_mms=False)
    r.on_loss({slot_of(MM)})
    out = r.run(session.model, lambda: None, lambda: LossMark(0, tuple(kernel.slots)), kernel.mm_of, everything=True)
    assert kernel.scopes == [None, None] and [rec["pid"] for rec in out] == [100] and not r.pending


def test_a_pass_after_anyones_loss_does_not_read_processes_still_losing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading a process whose address space still loses events would be void (and, with
    thousands of VMAs under emulation, slow): it is left provisional for a later pass."""
    session = session_with(ev("map", 10, A, A + PAGE), ev("map", 11, A, A + PAGE, mm=MM2, tgid=200))
    seen = {100: _Seen("work", ((A, A + 3 * PAGE),))}
    kernel = FakeKernel([dict(seen), dict(seen)], {100: MM, 200: MM2})
    kernel.install(monkeypatch)
    monkeypatch.setattr(resync, "all_pids", lambda: [1, 100, 200])
    now = [0.0]
    r = Resyncer(["lo"], clock=lambda: now[0], clock_ns=lambda: 777, sleep=lambda s: None)
    r.on_loss()  # a skipped program run: anyone's
    now[0] = 1.0
    r.on_loss({slot_of(MM2)})  # and 200 overflows the stream
    assert not r.due(1.4) and r.due(1.5)  # every process is read only once no event at all is lost
    now[0] = 1.2  # run anyway (as when the trace ends): 200's reads would be void
    out = r.run(session.model, lambda: None, lambda: LossMark(0, tuple(kernel.slots)), kernel.mm_of)
    assert kernel.scopes == [[1, 100], [1, 100]]  # everyone but the one still losing
    assert [(rec["pid"], rec["vmas"]) for rec in out] == [(100, [[A, A + 3 * PAGE]])]
    assert not r.dirty_all and r.pending_for(200, [MM2]) and not r.pending_for(100, [MM])


def test_a_retry_skips_a_pending_process_whose_address_space_still_loses(monkeypatch: pytest.MonkeyPatch) -> None:
    session = session_with(ev("map", 10, A, A + PAGE), ev("map", 11, A, A + PAGE, mm=MM2, tgid=200))
    kernel = FakeKernel([{}, {}], {100: MM, 200: MM2})
    kernel.install(monkeypatch)
    now = [5.0]
    r = Resyncer(["lo"], clock=lambda: now[0], clock_ns=lambda: 777, sleep=lambda s: None)
    r.dirty = {100, 200}  # both busy at the last pass
    r.on_loss({slot_of(MM2)})  # and 200 is losing events now
    r.run(session.model, lambda: None, lambda: LossMark(0, tuple(kernel.slots)), kernel.mm_of)
    assert kernel.scopes == [[100], [100]] and r.pending_for(200, [MM2])


# -- the pass in the background: the tracer's loop goes on while smaps is read ----------------
class GatedKernel(FakeKernel):
    """Each read waits for `gate`: smaps of a big process under load, which took 60 s in the lab."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.gate = threading.Event()
        self.reading = threading.Event()  # a read has begun

    def _read(self, mnemonics: Sequence[str], pids: Optional[Sequence[int]], skip: Sequence[int]) -> Dict[int, _Seen]:
        self.reading.set()
        assert self.gate.wait(10), "the read was never released"
        return super()._read(mnemonics, pids, skip)


def finish_in_background(r: Resyncer, timeout: float = 10.0) -> List[Dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while r.in_flight:
        out = r.poll()
        if out or not r.in_flight:
            return out
        assert time.monotonic() < deadline, "the background pass never ended"
        time.sleep(0.005)
    return []


def test_a_background_pass_reads_beside_the_loop_and_decides_as_a_foreground_one(
        monkeypatch: pytest.MonkeyPatch) -> None:
    session = session_with(ev("map", 10, A, A + PAGE), ev("map", 11, A, A + PAGE, mm=MM2, tgid=200))
    seen = {100: _Seen("work", ((A, A + 3 * PAGE),)), 200: _Seen("busy", ((A, A + 2 * PAGE),))}
    kernel = GatedKernel([dict(seen), dict(seen)], {100: MM, 200: MM2})
    kernel.install(monkeypatch)
    r = resyncer()
    r.on_loss()
    assert r.start(session.model, lambda: None, lambda: LossMark(0), kernel.mm_of) == []
    assert kernel.reading.wait(10)
    # the read is blocked; the loop goes on: nothing to collect, no second pass, and an event
    # it applies meanwhile for 200 lands in the pass's window
    assert r.in_flight and r.poll() == [] and not r.due(1e9)
    late = ev("map", 12, A + 9 * PAGE, A + 10 * PAGE, mm=MM2, tgid=200)
    r.note(late)
    session.apply(late)
    kernel.gate.set()
    out = finish_in_background(r)
    assert [(rec["pid"], rec["vmas"], rec["ts"]) for rec in out] == [(100, [[A, A + 3 * PAGE]], 777)]
    assert r.dirty == {200} and not r.in_flight and r.passes == 1 and kernel.scopes == [None, None]


def test_a_background_pass_abandoned_at_the_end_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    session = session_with(ev("map", 10, A, A + PAGE))
    kernel = GatedKernel([{100: _Seen("work", ((A, A + 3 * PAGE),))}] * 4, {100: MM})
    kernel.install(monkeypatch)
    r = resyncer()
    r.on_loss()
    r.start(session.model, lambda: None, lambda: LossMark(0), kernel.mm_of)
    assert kernel.reading.wait(10)
    r.abandon()
    assert not r.in_flight and r.pending and r.poll() == []
    kernel.gate.set()  # the orphaned read ends; a foreground pass (the trace's last) still works
    assert [rec["pid"] for rec in r.run(session.model, lambda: None, lambda: LossMark(0), kernel.mm_of)] == [100]


def test_a_read_that_fails_in_the_background_fails_in_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    session = session_with(ev("map", 10, A, A + PAGE))

    def broken(*args: Any) -> Dict[int, _Seen]:
        raise OSError("smaps unreadable")
    monkeypatch.setattr(resync, "_read_kernel", broken)
    r = resyncer()
    r.on_loss()
    r.start(session.model, lambda: None, lambda: LossMark(0), lambda pid: None)
    with pytest.raises(OSError, match="smaps unreadable"):
        finish_in_background(r)
    assert not r.in_flight and r.pending
