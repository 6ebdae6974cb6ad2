"""Every model transition against hand-computed expectations."""
from __future__ import annotations

from typing import List, Tuple

from mpxtrace.lostspaces import slot_of
from mpxtrace.model import AddressSpace, Model
from mpxtrace.stats import Session

from helpers import MASK, MM, MM2, OTHER, PAGE, ev, header

A = 0x7F0000000000


def vmas(model: Model, mm: int = MM) -> List[Tuple[int, int]]:
    return [(s - A, e - A) for s, e, _ in space(model, mm).vmas]


def space(model: Model, mm: int = MM) -> AddressSpace:
    found = model.space_by_mm(mm)
    assert found is not None, f"no address space for mm {mm:#x}"
    return found


def test_create_counts_one_allocation() -> None:
    m = Model(MASK)
    m.apply(ev("map", 10, A, A + 4 * PAGE))
    s = space(m)
    assert vmas(m) == [(0, 4 * PAGE)]
    assert (s.live_bytes, s.live_vmas, s.allocations, s.allocated_bytes) == (4 * PAGE, 1, 1, 4 * PAGE)
    assert (s.pid, s.comm) == (100, "work")


def test_adjacent_mmap_merges_into_one_vma_but_two_allocations() -> None:
    m = Model(MASK)
    m.apply(ev("map", 1, A, A + 2 * PAGE))
    m.apply(ev("map", 2, A + 2 * PAGE, A + 5 * PAGE, ext=(A, A + 5 * PAGE)))
    s = space(m)
    assert vmas(m) == [(0, 5 * PAGE)]
    assert (s.allocations, s.merges, s.live_bytes) == (2, 1, 5 * PAGE)
    assert m.anomalies == []


def test_three_way_merge_counts_two_joins() -> None:
    m = Model(MASK)
    m.apply(ev("map", 1, A, A + PAGE))
    m.apply(ev("map", 2, A + 2 * PAGE, A + 3 * PAGE))
    m.apply(ev("map", 3, A + PAGE, A + 2 * PAGE, ext=(A, A + 3 * PAGE)))
    assert vmas(m) == [(0, 3 * PAGE)]
    assert space(m).merges == 2


def test_partial_unmap_of_middle_splits_and_frees_part() -> None:
    m = Model(MASK)
    m.apply(ev("map", 1, A, A + 6 * PAGE))
    # kernel: split at 2 and 4 pages, then frees the middle VMA
    m.apply(ev("split", 2, A, A + 6 * PAGE, at=A + 2 * PAGE))
    m.apply(ev("split", 3, A + 2 * PAGE, A + 6 * PAGE, at=A + 4 * PAGE))
    m.apply(ev("unmap", 4, A + 2 * PAGE, A + 4 * PAGE))
    s = space(m)
    assert vmas(m) == [(0, 2 * PAGE), (4 * PAGE, 6 * PAGE)]
    assert (s.live_bytes, s.freed_bytes, s.frees, s.splits) == (4 * PAGE, 2 * PAGE, 0, 2)


def test_full_free_records_lifetime() -> None:
    sess = Session(header())
    sess.apply(ev("map", 1_000, A, A + PAGE))
    sess.apply(ev("unmap", 5_000, A, A + PAGE))
    summary = sess.summary()
    assert summary["totals"]["frees"] == 1
    life = summary["histograms"]["lifetime"]
    assert life["count"] == 1 and life["sum"] == 4_000
    assert life["buckets"] == [{"low": 2048, "high": 4096, "count": 1}]


def test_mprotect_middle_split_then_remerge() -> None:
    m = Model(MASK)
    m.apply(ev("map", 1, A, A + 3 * PAGE))
    # mprotect(middle) on <=6.11: vma_merge attempt reports the new flags for the range, splits follow
    m.apply(ev("flags", 2, A + PAGE, A + 2 * PAGE, flags=MASK | OTHER))
    m.apply(ev("split", 3, A, A + 3 * PAGE, at=A + PAGE))
    m.apply(ev("split", 4, A + PAGE, A + 3 * PAGE, at=A + 2 * PAGE))
    assert vmas(m) == [(0, PAGE), (PAGE, 2 * PAGE), (2 * PAGE, 3 * PAGE)]
    # mprotect back: the merge reports the whole extent
    m.apply(ev("flags", 5, A + PAGE, A + 2 * PAGE, flags=MASK, ext=(A, A + 3 * PAGE)))
    assert vmas(m) == [(0, 3 * PAGE)]
    s = space(m)
    assert (s.allocations, s.live_bytes, s.merges) == (1, 3 * PAGE, 2)


def test_flag_set_in_place_is_a_birth_and_clear_is_a_free() -> None:
    m = Model(MASK)
    m.apply(ev("flags", 1, A, A + 4 * PAGE, flags=MASK))  # mlock of a plain mapping
    m.apply(ev("flags", 2, A + PAGE, A + 2 * PAGE, flags=0))  # munlock of one page
    s = space(m)
    assert vmas(m) == [(0, PAGE), (2 * PAGE, 4 * PAGE)]
    assert (s.allocations, s.allocated_bytes, s.freed_bytes, s.live_bytes) == (1, 4 * PAGE, PAGE, 3 * PAGE)


def test_clear_of_never_flagged_range_is_ignored() -> None:
    m = Model(MASK)
    m.apply(ev("map", 1, A, A + PAGE))
    m.apply(ev("flags", 2, A + 8 * PAGE, A + 9 * PAGE, flags=0))
    assert space(m).freed_bytes == 0 and vmas(m) == [(0, PAGE)]


def test_mremap_move_keeps_allocation_and_old_unmap_is_noop() -> None:
    sess = Session(header())
    sess.apply(ev("map", 10, A, A + 2 * PAGE))
    sess.apply(ev("move", 20, A + 100 * PAGE, A + 102 * PAGE, old_start=A, old_end=A + 2 * PAGE,
                  ext=(A + 100 * PAGE, A + 102 * PAGE)))
    sess.apply(ev("unmap", 21, A, A + 2 * PAGE))  # the source VMA being destroyed after the move
    m = sess.model
    assert vmas(m) == [(100 * PAGE, 102 * PAGE)]
    s = space(m)
    assert (s.allocations, s.frees, s.freed_bytes, s.moves) == (1, 0, 0, 1)
    sess.apply(ev("unmap", 30, A + 100 * PAGE, A + 102 * PAGE))
    assert sess.summary()["histograms"]["lifetime"]["sum"] == 20  # born at 10, freed at 30


def test_mremap_grow_while_moving_adds_new_bytes() -> None:
    m = Model(MASK)
    m.apply(ev("map", 1, A, A + PAGE))
    m.apply(ev("move", 2, A + 10 * PAGE, A + 13 * PAGE, old_start=A, old_end=A + PAGE))
    s = space(m)
    assert vmas(m) == [(10 * PAGE, 13 * PAGE)]
    assert (s.allocations, s.allocated_bytes, s.live_bytes) == (2, 3 * PAGE, 3 * PAGE)


def test_fork_child_inherits_then_exits() -> None:
    m = Model(MASK)
    m.apply(ev("map", 1, A, A + 2 * PAGE))
    m.apply(ev("fork", 2, A, A + 2 * PAGE, mm=MM2, parent_mm=MM))
    m.apply(ev("task", 3, mm=MM2, tgid=101, owner=False, comm="work"))
    child = space(m, MM2)
    assert (child.pid, child.live_bytes, child.allocations) == (101, 2 * PAGE, 1)
    m.apply(ev("unmap", 4, A, A + 2 * PAGE, mm=MM2, tgid=101, owner=False))
    m.apply(ev("mm_exit", 5, mm=MM2, tgid=101, owner=False))
    assert child.exited and child.live_bytes == 0 and child.frees == 1
    assert space(m).live_bytes == 2 * PAGE  # parent untouched
    assert [s.pid for s in m.live_spaces()] == [100]


def test_exec_replaces_mm_and_pid_reuse_starts_fresh() -> None:
    m = Model(MASK)
    m.apply(ev("map", 1, A, A + PAGE, mm=MM))
    # exec: the old mm dies in the same process's context (current->mm is already the new one)
    m.apply(ev("unmap", 2, A, A + PAGE, mm=MM, owner=False))
    m.apply(ev("mm_exit", 3, mm=MM, owner=False))
    m.apply(ev("map", 4, A, A + 3 * PAGE, mm=MM2, comm="newprog"))
    # the old mm pointer is reused by an unrelated process later
    m.apply(ev("map", 5, A, A + PAGE, mm=MM, tgid=555, comm="other"))
    assert len(m.spaces) == 3
    old, new, other = m.spaces
    assert old.exited and old.live_bytes == 0
    assert (new.pid, new.comm, new.live_bytes) == (100, "newprog", 3 * PAGE)
    assert (other.pid, other.comm, other.live_bytes, other.allocations) == (555, "other", PAGE, 1)


def test_map_fixed_over_flagged_memory_frees_old_allocation() -> None:
    m = Model(MASK)
    m.apply(ev("map", 1, A, A + 2 * PAGE))
    m.apply(ev("map", 2, A, A + 2 * PAGE))  # MAP_FIXED replacement (its UNMAP may have been missed)
    s = space(m)
    assert (s.allocations, s.frees, s.live_bytes, s.live_vmas) == (2, 1, 2 * PAGE, 1)


def test_seed_binds_to_first_event_of_that_pid() -> None:
    m = Model(MASK)
    m.apply({"type": "seed", "ts": 0, "pid": 100, "comm": "old", "start": A, "end": A + 4 * PAGE, "flags": MASK})
    m.apply(ev("unmap", 5, A, A + 4 * PAGE, owner=False))  # exit of the seeded process
    s = m.spaces[0]
    assert s.mm == MM and s.seeded_bytes == 4 * PAGE and s.freed_bytes == 4 * PAGE and s.live_bytes == 0
    assert s.allocations == 0 and s.frees == 1


def test_merge_across_the_flag_is_reported() -> None:
    m = Model(MASK)
    m.apply(ev("map", 1, A + PAGE, A + 2 * PAGE, ext=(A, A + 2 * PAGE)))  # kernel merged with unflagged [0, 1)
    assert len(m.anomalies) == 1
    a = m.anomalies[0]
    assert (a.start - A, a.end - A) == (0, PAGE)
    assert space(m).live_bytes == 2 * PAGE


def test_anomalies_are_counted_without_bound_but_kept_only_the_first_and_say_when_they_followed_a_loss() -> None:
    from mpxtrace.model import ANOMALIES_KEPT
    from mpxtrace.render import summary_text
    sess = Session(header())
    step = 4 * PAGE

    def merge_across(i: int, mm: int = MM) -> None:  # the kernel merged unflagged [0, 1) into it
        sess.apply(ev("map", 2 * i + 1, A + i * step + PAGE, A + i * step + 2 * PAGE, mm=mm,
                      ext=(A + i * step, A + i * step + 2 * PAGE)))
    merge_across(0)
    sess.apply({"type": "lost", "ts": 2, "source": "ring_buffer", "count": 3, "slots": [[slot_of(MM2), 3]]})
    merge_across(1)  # MM lost nothing: still a real anomaly
    sess.apply(ev("map", 4, A, A + PAGE, mm=MM2, tgid=200))
    sess.apply({"type": "lost", "ts": 5, "source": "ring_buffer", "count": 3, "slots": [[slot_of(MM2), 3]]})
    merge_across(3, mm=MM2)  # MM2 lost events before it
    # MM3's first events were lost before the model knew it: its slot says so
    mm3 = 0xFFFF888000300000
    assert len({slot_of(MM), slot_of(MM2), slot_of(mm3)}) == 3
    sess.apply({"type": "lost", "ts": 6, "source": "ring_buffer", "count": 2, "slots": [[slot_of(mm3), 2]]})
    merge_across(2, mm=mm3)
    sess.apply({"type": "lost", "ts": 9, "source": "frame_overflow", "count": 1})  # anyone's
    for i in range(4, ANOMALIES_KEPT + 49):
        merge_across(i)
    summary = sess.summary()
    assert summary["anomaly_count"] == ANOMALIES_KEPT + 49 and len(summary["anomalies"]) == ANOMALIES_KEPT
    assert [a.get("after_loss", False) for a in summary["anomalies"][:4]] == [False, False, True, True]
    assert summary["anomalies"][3]["mm"] == f"{mm3:#x}"
    assert summary["anomalies_after_loss"] == ANOMALIES_KEPT + 49 - 2
    text = summary_text(summary).splitlines()
    assert sum(line.startswith("ANOMALY") for line in text) == 10
    assert f"{ANOMALIES_KEPT + 49} anomalies in all ({ANOMALIES_KEPT + 39} not shown" in text[-1]
    assert f"; {ANOMALIES_KEPT + 47} in processes that had lost events" in text[-1]


def test_split_outside_tracked_vma_is_ignored() -> None:
    m = Model(MASK)
    m.apply(ev("map", 1, A, A + PAGE))
    m.apply(ev("split", 2, A + 5 * PAGE, A + 9 * PAGE, at=A + 6 * PAGE))
    assert vmas(m) == [(0, PAGE)] and space(m).splits == 0


def test_summary_schema_and_invariant() -> None:
    sess = Session(header())
    sess.apply(ev("map", 1, A, A + 4 * PAGE))
    sess.apply(ev("unmap", 2, A, A + PAGE))
    sess.apply({"type": "lost", "ts": 3, "source": "ring_buffer", "count": 7})
    sess.apply({"type": "end", "ts": 2_000_000_000})
    summary = sess.summary()
    assert summary["lost_events"] == 7 and summary["duration_ns"] == 2_000_000_000 and summary["complete"]
    (proc,) = summary["processes"]
    for key in ("pid", "comm", "live_bytes", "live_vmas", "allocations", "frees", "allocated_bytes", "freed_bytes"):
        assert key in proc
    assert proc["allocated_bytes"] + proc["seeded_bytes"] - proc["freed_bytes"] == proc["live_bytes"] == 3 * PAGE
    assert summary["histograms"]["allocation_size"]["buckets"] == [{"low": 16384, "high": 32768, "count": 1}]


def test_seeded_process_exit_without_kernel_events_is_retired() -> None:
    m = Model(MASK)
    m.apply({"type": "seed", "ts": 0, "pid": 77, "comm": "old", "start": A, "end": A + 2 * PAGE, "flags": MASK})
    m.apply({"type": "proc_exit", "ts": 9, "pid": 77})
    s = m.spaces[0]
    assert s.exited and s.live_bytes == 0 and s.freed_bytes == 2 * PAGE
    m.apply({"type": "proc_exit", "ts": 10, "pid": 78})  # unknown pid: nothing happens
    assert len(m.spaces) == 1


def test_seed_with_known_mm_is_bound_at_once() -> None:
    m = Model(MASK)
    m.apply({"type": "seed", "ts": 0, "pid": 100, "comm": "old", "start": A, "end": A + 4 * PAGE, "flags": MASK,
             "mm": MM})
    m.apply(ev("unmap", 5, A, A + PAGE, mm=MM, tgid=999, owner=False))  # freed from another task's context
    (s,) = m.spaces
    assert s.mm == MM and s.pid == 100 and s.live_bytes == 3 * PAGE and s.freed_bytes == PAGE


def test_vfork_child_does_not_take_over_its_parents_address_space() -> None:
    m = Model(MASK)
    m.apply(ev("map", 1, A, A + PAGE, tgid=100, comm="parent"))
    # the vfork child runs in the parent's mm until it execs
    m.apply(ev("task", 2, mm=MM, tgid=120, owner=False, comm="parent"))
    m.apply(ev("map", 3, A + 4 * PAGE, A + 5 * PAGE, tgid=120, comm="child"))
    (s,) = m.spaces
    assert (s.pid, s.comm, s.live_bytes) == (100, "parent", 2 * PAGE)


def test_mremap_growth_in_place_extends_the_whole_vma() -> None:
    m = Model(MASK)
    m.apply(ev("map", 1, 0x10000, 0x14000))
    m.apply(ev("grow", 2, 0x14000, 0x18000, flags=0, old_start=0x10000))
    space = m.spaces[0]
    assert [(s, e) for s, e, _ in space.vmas] == [(0x10000, 0x18000)]
    assert space.allocations == 2 and space.live_bytes == 0x8000


def test_growth_of_an_unflagged_vma_is_not_flagged_memory() -> None:
    m = Model(MASK)
    m.apply(ev("map", 1, 0x10000, 0x14000))
    m.apply(ev("grow", 2, 0x24000, 0x28000, flags=0, old_start=0x20000))
    assert [(s, e) for s, e, _ in m.spaces[0].vmas] == [(0x10000, 0x14000)]


def test_sync_states_a_vma_that_grew_in_place_downwards() -> None:
    m = Model(MASK)
    m.apply(ev("map", 1, 0x10000, 0x14000))
    m.apply(ev("sync", 2, 0x0e000, 0x14000, ext=(0x0e000, 0x14000)))
    space = m.spaces[0]
    assert [(s, e) for s, e, _ in space.vmas] == [(0x0e000, 0x14000)]
    assert space.allocated_bytes == 0x6000 and space.allocations == 2


def test_dontunmap_move_keeps_the_source_vma_and_the_flags_event_clears_it() -> None:
    m = Model(MASK)
    m.apply(ev("map", 1, 0x10000, 0x14000))
    rec = ev("move", 2, 0x40000, 0x44000, ext=(0x40000, 0x44000), old_start=0x10000, old_end=0x14000)
    rec["dontunmap"] = True
    m.apply(rec)
    space = m.spaces[0]
    assert [(s, e) for s, e, _ in space.vmas] == [(0x10000, 0x14000), (0x40000, 0x44000)]
    m.apply(ev("flags", 3, 0x10000, 0x14000, flags=0, ext=(0x10000, 0x14000)))  # VM_LOCKED cleared on the source
    assert [(s, e) for s, e, _ in space.vmas] == [(0x40000, 0x44000)]
    assert space.live_bytes == 0x4000


def test_the_timeline_stays_bounded_by_doubling_its_interval_and_summing_rows() -> None:
    from mpxtrace.stats import TIMELINE_ROWS
    second = 1_000_000_000
    busy = TIMELINE_ROWS + 904  # one busy second more than the rows kept, and then some

    def session_at(interval_ns: int) -> Session:
        sess = Session(dict(header(), interval_ns=interval_ns))
        for i in range(busy):
            sess.apply(ev("map", i * second + 1, A + i * PAGE, A + (i + 1) * PAGE))
            if i % 3 == 0:
                sess.apply(ev("unmap", i * second + 2, A + i * PAGE, A + (i + 1) * PAGE))
        return sess
    summary = session_at(second).summary()
    assert summary["interval_ns"] == 2 * second and len(summary["timeline"]) == -(-busy // 2)
    assert summary["timeline"] == session_at(2 * second).summary()["timeline"]  # as if traced at 2 s
    assert sum(r["allocations"] for r in summary["timeline"]) == busy
    assert sum(r["frees"] for r in summary["timeline"]) == -(-busy // 3)


def test_drift_records_are_counted_not_kept() -> None:
    sess = Session(header())
    for i in range(3):
        sess.apply({"type": "drift", "ts": i, "pid": 100, "vma": [A, A + PAGE], "expected": "present", "seen": "absent"})
    assert sess.summary()["drift"] == 3 and sess.drifts == 3
