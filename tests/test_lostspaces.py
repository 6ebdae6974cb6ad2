"""Losses attributed to address spaces (lostspaces.py): the kernel program's slot of an mm is
Python's, and the tracer tells losses it can attribute from those it cannot."""
from __future__ import annotations

import random
import re
import shutil
import subprocess
from pathlib import Path
from typing import List

import pytest

from mpxtrace.lostspaces import SLOTS, LossMark, changed_slots, slot_of
from mpxtrace.program import bpf_dir
from mpxtrace.tracer import Tracer

from test_bpf_contract import c_source
from test_tracer_losses import tracer

MMS = [0xFFFF888000100000, 0xFFFF888000100400, 0xFFFF9A2B3C4D5E00, 0xFFFFFFFFFFFFFFC0, 0x40, 0]


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_the_kernel_programs_slot_of_an_mm_is_pythons(tmp_path: Path) -> None:
    mms = MMS + [random.Random(9).getrandbits(64) & ~0x3F for _ in range(200)]
    prog = tmp_path / "slot.c"
    prog.write_text("\n".join([
        '#include <stdio.h>', '#include "mpxtrace_event.h"', "int main(void) {",
        "static const unsigned long long mms[] = {" + ", ".join(f"{mm:#x}ULL" for mm in mms) + "};",
        "for (unsigned i = 0; i < sizeof(mms) / sizeof(mms[0]); i++)",
        # the expression count_refused() uses, on the header's constants
        '  printf("%d\\n", (int)((mms[i] * MPXTRACE_LOST_SPACE_HASH) >> MPXTRACE_LOST_SPACE_SHIFT));',
        'printf("%d\\n", MPXTRACE_LOST_SPACE_SLOTS);', "return 0; }"]))
    exe = tmp_path / "slot"
    subprocess.run(["cc", f"-I{bpf_dir()}", str(prog), "-o", str(exe)], check=True)
    out = [int(line) for line in subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split()]
    assert out.pop() == SLOTS
    assert out == [slot_of(mm) for mm in mms]
    assert all(0 <= slot < SLOTS for slot in out)


def test_the_program_counts_a_refusal_in_its_slot_before_the_total() -> None:
    """The tracer reads the slots only after it saw the total grow: the slot must already count it."""
    body = re.search(r"count_refused\(const u64 \*event_mm\)\s*{(.*?)\n}", c_source("mpxtrace.bpf.c"), re.S)
    assert body, "count_refused() not found"
    text = body.group(1)
    assert text.index("lost_spaces.lookup") < text.index("CNT_LOST_SUBMIT")
    assert "__sync_fetch_and_add" in text
    assert c_source("mpxtrace.bpf.c").count("count_refused(&e->mm)") == 2  # ring and perf


def test_slots_spread_the_heap_addresses_of_mm_structs() -> None:
    # mm_structs sit in one slab, ~1 KiB apart: consecutive ones must not share slots
    mms = [0xFFFF888004000000 + i * 0x440 for i in range(256)]
    assert len({slot_of(mm) for mm in mms}) >= 250


def test_a_loss_mark_says_whose_losses_came_since() -> None:
    a, b = MMS[0], MMS[2]
    assert slot_of(a) != slot_of(b)
    counts: List[int] = [0] * SLOTS
    before = LossMark(0, tuple(counts))
    counts[slot_of(a)] += 3
    after = LossMark(0, tuple(counts))
    assert after.slots_since(before) == {slot_of(a)}
    assert after.lost_for(before, a) and not after.lost_for(before, b)
    assert after.lost_for(before, None)  # an unknown address space could be a's
    assert not LossMark(0, tuple(counts)).lost_for(after, None)
    assert LossMark(1, tuple(counts)).lost_for(after, b)  # a loss nobody can attribute is anyone's
    assert changed_slots((), (0, 2, 0, 1)) == {1, 3}


def tracer_keeping_slots(buffer: str, slots: bool = True) -> Tracer:
    """A tracer (with a resyncer) whose stand-in program keeps per-slot counts, or none."""
    from test_resync import resyncer
    t = tracer(buffer)
    t._resync = resyncer()
    if slots:
        t._program.slots = [0] * SLOTS  # type: ignore[union-attr]
    return t


def test_the_tracer_attributes_refused_events_and_not_the_others() -> None:
    t = tracer_keeping_slots("ring")
    program = t._program
    program.slots[slot_of(MMS[0])] = 4  # type: ignore[union-attr]
    program.values["lost_submit"] = 4  # type: ignore[union-attr]
    t._read_counters(1)
    assert not t._resync.dirty_all and set(t._resync.dirty_slots) == {slot_of(MMS[0])}
    assert t.loss_mark().anyone == 0 and t.losses_seen() == 4
    assert t._resync.pending_for(100, [MMS[0]]) and not t._resync.pending_for(100, [MMS[2]])
    program.values["frame_stale"] = 1  # type: ignore[union-attr]
    t._read_counters(2)
    assert t._resync.dirty_all and t.loss_mark().anyone == 1  # a frame unwound: whose, nobody knows


def test_without_per_slot_counts_every_refusal_is_anyones() -> None:
    t = tracer_keeping_slots("ring", slots=False)
    t._program.values["lost_submit"] = 2  # type: ignore[union-attr]
    t._read_counters(1)
    assert t._resync.dirty_all and t.loss_mark().anyone == 2


def test_perf_losses_only_its_callback_saw_are_anyones() -> None:
    t = tracer_keeping_slots("perf")
    program = t._program
    program.slots[slot_of(MMS[0])] = 2  # type: ignore[union-attr]
    program.values["lost_submit"] = 2  # type: ignore[union-attr]
    t._read_counters(1)
    assert not t._resync.dirty_all
    t._on_perf_lost(5)  # three more than the kernel counted: a kernel whose output returns nothing
    t._read_counters(2)
    assert t._resync.dirty_all and t.loss_mark().anyone == 3


def test_lost_records_name_whose_events_and_replay_charges_the_same_processes(tmp_path: Path) -> None:
    """A `lost` record carries the slots that lost; the model charges each live address space its
    slot's count, the summary and the text say so, and `report` of the log says the same."""
    from mpxtrace.render import processes_text
    from helpers import MM, MM2, PAGE, ev, live_and_replayed
    A = 0x7F0000000000
    t = tracer_keeping_slots("ring")
    program = t._program
    program.slots[slot_of(MM2)] = 6  # type: ignore[union-attr]  # counted in its slot before the total...
    program.values["lost_submit"] = 5  # type: ignore[union-attr]
    t._read_counters(20)
    program.values["lost_submit"] = 6  # type: ignore[union-attr]  # ...which catches up at the next read
    t._read_counters(21)
    lost_recs = [r for r in t._pending if r["type"] == "lost"]
    assert lost_recs == [{"type": "lost", "ts": 20, "source": "ring_buffer", "count": 5, "slots": [[slot_of(MM2), 6]]},
                         {"type": "lost", "ts": 21, "source": "ring_buffer", "count": 1}]
    records = [ev("map", 10, A, A + PAGE), ev("map", 11, A, A + PAGE, mm=MM2, tgid=200), *lost_recs, {"type": "end", "ts": 30}]
    live, replay = live_and_replayed(records, tmp_path / "log")
    by_pid = {p["pid"]: p for p in live.summary()["processes"]}
    assert by_pid[200]["lost_events"] == 6 and "lost_events" not in by_pid[100]
    assert "6 events lost" in processes_text([by_pid[200]])[1] and "lost" not in processes_text([by_pid[100]])[1]
    assert replay.summary() == live.summary()


@pytest.mark.parametrize("slots, problem", [([[5, 1], [3, 1]], "ascend"), ([[SLOTS, 1]], "out of range"),
                                            ([[1, 0]], "out of range"), ([[1]], "pairs"), ("x", "list")])
def test_a_damaged_slots_field_is_refused(slots: object, problem: str) -> None:
    from mpxtrace.records import RecordError, check_record
    with pytest.raises(RecordError, match=problem):
        check_record({"type": "lost", "ts": 1, "source": "ring_buffer", "count": 2, "slots": slots})
