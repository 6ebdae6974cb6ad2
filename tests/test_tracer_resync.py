"""The tracer's loop keeps turning while a resync pass or a --verify check reads smaps (issue 9):
in the lab, under stress-ng, one pass took 60 s on 5.10, and the loop made no snapshot, interval
or drain meanwhile (a snapshot asked for with SIGUSR1 went unanswered for 58.6 s, and past 60 s
on 7.2).  --verify reads every process twice, as a pass does."""
from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import pytest

import mpxtrace.tracer as tracer_mod
from mpxtrace import resync, verify
from mpxtrace.flags import resolve_flags
from mpxtrace.resync import _Seen
from mpxtrace.tallies import SIZE
from mpxtrace.tracer import TraceOptions, Tracer

from test_tracer_losses import FakeProgram


class QuietProgram(FakeProgram):
    """A loaded program with nothing to say: each poll just waits a little."""

    def open_buffer(self, on_event: Any, on_lost: Any) -> None:
        pass

    def poll(self, timeout_ms: int) -> None:
        threading.Event().wait(0.002)

    def tallies(self) -> List[int]:
        return [0] * SIZE

    def mm_of(self, pid: int) -> Optional[int]:
        return None

    def close(self) -> None:
        pass


@pytest.fixture
def quiet_program(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tracers started in the test load a QuietProgram."""
    monkeypatch.setattr(tracer_mod, "build_config", lambda *a, **k: SimpleNamespace(
        buffer="ring", plan=SimpleNamespace(attaches=[], uses=lambda hook: True)))
    monkeypatch.setattr(tracer_mod, "load_program", lambda config: QuietProgram("ring"))


def run_asking_a_snapshot_once_reading(t: Tracer, reading: threading.Event, gate: threading.Event) -> None:
    """Run the started tracer; a snapshot is asked for as soon as a read has begun."""
    requester = threading.Thread(target=lambda: reading.wait(10) and t.request_snapshot())
    requester.start()
    try:
        t.run()
        requester.join()
    finally:
        gate.set()
        t._restore_signals()


@pytest.mark.usefixtures("quiet_program")
def test_a_snapshot_is_answered_while_a_resync_pass_reads_smaps(monkeypatch: pytest.MonkeyPatch) -> None:
    gate, reading = threading.Event(), threading.Event()
    reads: List[Optional[Sequence[int]]] = []
    done: List[bool] = []  # reads finished

    def slow_read(mnemonics: Sequence[str], pids: Optional[Sequence[int]], skip: Sequence[int]) -> Dict[int, _Seen]:
        reads.append(pids)
        reading.set()
        gate.wait(3)  # the old loop read here itself: the snapshot waited for both reads
        done.append(True)
        return {}
    monkeypatch.setattr(resync, "_read_kernel", slow_read)
    answered: List[bool] = []  # each snapshot: was the read still blocked?

    def on_snapshot(session: Any) -> None:
        answered.append(not done)
        gate.set()
        t.request_stop()
    t = Tracer(TraceOptions(resolve_flags(["lo"], None), seed=False, duration=20), features=None,  # type: ignore[arg-type]
               on_snapshot=on_snapshot)
    t.start()
    assert t._resync is not None
    t._resync.on_loss()  # events were lost, nobody knows whose: a pass of every process is due
    t._resync.last_loss = t._resync.last_slot_loss = -1e9
    run_asking_a_snapshot_once_reading(t, reading, gate)
    assert answered == [True]  # answered during the read, not after it
    assert reads[0] is None  # the pass that was under way read every process


@pytest.mark.usefixtures("quiet_program")
def test_a_snapshot_is_answered_while_verify_reads_smaps_and_the_drift_comes_after(
        monkeypatch: pytest.MonkeyPatch) -> None:
    gate, reading = threading.Event(), threading.Event()
    done: List[bool] = []  # reads finished
    reader_threads: List[str] = []

    def slow_read(mnemonics: Sequence[str], skip: Sequence[int]) -> Dict[int, Set[Tuple[int, int]]]:
        reader_threads.append(threading.current_thread().name)
        reading.set()
        gate.wait(3)  # the old loop read here itself: the snapshot waited for both reads
        done.append(True)
        return {4242: {(0x1000, 0x2000)}}  # a VMA the model never saw: drift, on both looks
    monkeypatch.setattr(verify, "kernel_vmas", slow_read)
    answered: List[bool] = []  # each snapshot: was the read still blocked?
    drift: List[Dict[str, Any]] = []

    def on_snapshot(session: Any) -> None:
        answered.append(not done)
        gate.set()

    def on_record(rec: Dict[str, Any], session: Any) -> None:
        if rec["type"] == "drift":
            drift.append(rec)
            t.request_stop()
    t = Tracer(TraceOptions(resolve_flags(["lo"], None), seed=False, duration=20, verify=0.001,  # type: ignore[arg-type]
                            resync=False), features=None, on_snapshot=on_snapshot, on_record=on_record)
    t.start()
    run_asking_a_snapshot_once_reading(t, reading, gate)
    assert answered == [True]  # answered during the first read, not after both
    assert len(done) == 2 and reader_threads == ["mpxtrace-verify-read"] * 2
    assert [(r["pid"], r["vma"], r["expected"], r["seen"]) for r in drift] == [
        (4242, [0x1000, 0x2000], "absent", "present")]
