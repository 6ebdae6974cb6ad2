"""Whose events were lost: the stream's losses attributed to address spaces.

A full stream buffer refuses an event in the kernel program, which knows the event's address
space (mm).  It counts the refusal in one of SLOTS counters chosen by hashing the mm pointer
(the `lost_spaces` array, BPF_F_MMAPABLE like the counters: read without map syscalls),
before it counts the total.  So a slot whose count did not change proves that no address
space hashed there lost an event meanwhile, and one process overflowing the stream no longer
makes every other process's picture provisional: resync (resync.py) repairs a process that
went quiet while others still overflow, and snapshots mark only the processes that lost.

Two address spaces sharing a slot (1 in 4096 for a pair) only make the quiet one wait with
the other.  Losses nobody can attribute (frames unwound, skipped program runs, a full map,
perf's lost callback on kernels whose perf_event_output() returns nothing) are anyone's:
they still make every picture provisional.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Set, Tuple

__all__ = ["SLOTS", "slot_of", "changed_slots", "LossMark"]

SLOTS = 4096  # MPXTRACE_LOST_SPACE_SLOTS (bpf/mpxtrace_event.h)
_SHIFT = 52  # MPXTRACE_LOST_SPACE_SHIFT: 64 - log2(SLOTS)
_HASH = 0x9E3779B97F4A7C15  # MPXTRACE_LOST_SPACE_HASH: 2^64 / the golden ratio (Fibonacci hashing)
_U64 = (1 << 64) - 1


def slot_of(mm: int) -> int:
    """The kernel program's slot for address space `mm` (a struct mm_struct pointer)."""
    return ((mm * _HASH) & _U64) >> _SHIFT


def changed_slots(before: Sequence[int], after: Sequence[int]) -> Set[int]:
    """Slots whose count grew between two reads of the array (an empty read: none kept)."""
    if not before:
        return {i for i, count in enumerate(after) if count}
    return {i for i, (old, new) in enumerate(zip(before, after)) if new != old}


@dataclass(frozen=True)
class LossMark:
    """Every loss up to a moment: those of unknown address space, and the kernel's per-slot counts
    (empty where the kernel program keeps none: then every loss is in `anyone`)."""

    anyone: int
    by_slot: Tuple[int, ...] = ()

    def slots_since(self, earlier: "LossMark") -> Set[int]:
        if self.by_slot == earlier.by_slot:
            return set()
        return changed_slots(earlier.by_slot, self.by_slot)

    def lost_for(self, earlier: "LossMark", mm: Optional[int]) -> bool:
        """`mm`'s address space may have lost an event since `earlier` (None: an unknown space,
        which may be any whose slot changed)."""
        if self.anyone != earlier.anyone:
            return True
        slots = self.slots_since(earlier)
        return bool(slots) if mm is None else slot_of(mm) in slots
