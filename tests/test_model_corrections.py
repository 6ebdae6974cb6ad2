"""The model's public corrections API (what resync uses instead of its private indexes)."""
from __future__ import annotations

from mpxtrace.model import Model

from helpers import MASK, MM, MM2, PAGE, ev

A = 0x7F0000000000


def seed(pid: int, start: int, end: int) -> dict:  # type: ignore[type-arg]
    return {"type": "seed", "ts": 0, "pid": pid, "comm": "p", "start": start, "end": end, "flags": MASK}


def test_space_by_mm_finds_the_space_an_event_created() -> None:
    m = Model(MASK)
    m.apply(ev("map", 1, A, A + PAGE))
    space = m.space_by_mm(MM)
    assert space is not None and space.pid == 100 and space.live_bytes == PAGE
    assert m.space_by_mm(MM2) is None


def test_seeded_space_until_an_event_ties_it_to_its_mm() -> None:
    m = Model(MASK)
    m.apply(seed(100, A, A + PAGE))
    seeded = m.seeded_space(100)
    assert seeded is not None and seeded.mm is None
    m.apply(ev("map", 2, A + PAGE, A + 2 * PAGE))
    assert m.seeded_space(100) is None
    assert m.space_by_mm(MM) is seeded


def test_add_space_indexes_by_mm_or_as_seeded() -> None:
    m = Model(MASK)
    by_mm = m.add_space(MM, 100, "a")
    seeded = m.add_space(None, 200, "b")
    assert m.space_by_mm(MM) is by_mm
    assert m.seeded_space(200) is seeded
    assert m.spaces == [by_mm, seeded]


def test_bind_mm_moves_a_seeded_space_under_its_mm() -> None:
    m = Model(MASK)
    space = m.add_space(None, 200, "b")
    m.bind_mm(space, MM2)
    assert m.seeded_space(200) is None
    assert m.space_by_mm(MM2) is space and space.mm == MM2


def test_release_frees_only_the_range() -> None:
    m = Model(MASK)
    m.apply(ev("map", 1, A, A + 4 * PAGE))
    space = m.space_by_mm(MM)
    assert space is not None
    m.release(space, A + PAGE, A + 2 * PAGE, 5)
    assert space.live_bytes == 3 * PAGE
    assert space.freed_bytes == PAGE
    assert [(s, e) for s, e, _ in space.vmas] == [(A, A + PAGE), (A + 2 * PAGE, A + 4 * PAGE)]


def test_retire_frees_everything_and_forgets_the_mm() -> None:
    m = Model(MASK)
    m.apply(ev("map", 1, A, A + 2 * PAGE))
    old = m.space_by_mm(MM)
    assert old is not None
    m.retire(old, 5)
    assert old.exited and old.live_bytes == 0 and old.freed_bytes == 2 * PAGE
    assert m.space_by_mm(MM) is None
    # a new process reusing the mm pointer gets a space of its own
    m.apply(ev("map", 6, A, A + PAGE, tgid=300, comm="new"))
    new = m.space_by_mm(MM)
    assert new is not None and new is not old and new.pid == 300


def test_retire_forgets_a_seed() -> None:
    m = Model(MASK)
    m.apply(seed(100, A, A + PAGE))
    seeded = m.seeded_space(100)
    assert seeded is not None
    m.retire(seeded, 5)
    assert m.seeded_space(100) is None and seeded.exited
