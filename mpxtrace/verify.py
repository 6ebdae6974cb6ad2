"""``trace --verify``: the live model checked against the kernel's own /proc/PID/smaps.

On kernels nobody tested, a hook the planner chose may miss a path; this is how the tracer
finds out.  At a low rate it compares, per process, every flagged VMA the model holds with
the ones smaps lists, and reports each difference as a ``drift`` record (pid, VMA, what the
model expected, what the kernel shows).  A process changes its mappings while we read, so a
difference counts only when it is still there on a second look, after the events that
arrived in between were applied.
"""
from __future__ import annotations

from typing import Callable, Dict, List, Sequence, Set, Tuple

from .background import Job, run_here
from .events import Record
from .model import Model
from .smaps import scan

__all__ = ["VmaSet", "DriftCheck", "model_vmas", "kernel_vmas", "differences", "drift_check", "smaps_reader",
           "drift_records"]

VmaSet = Set[Tuple[int, int]]


def model_vmas(model: Model) -> Dict[int, VmaSet]:
    """The flagged VMAs of every live process the model knows, by pid."""
    out: Dict[int, VmaSet] = {}
    for space in model.live_spaces():
        if space.pid:
            out.setdefault(space.pid, set()).update((start, end) for start, end, _ in space.vmas)
    return out


def kernel_vmas(mnemonics: Sequence[str], skip: Sequence[int]) -> Dict[int, VmaSet]:
    """The flagged VMAs of every process, by pid, as smaps shows them now."""
    return {proc.pid: {(v.start, v.end) for v in proc.vmas} for proc in scan(mnemonics, skip=skip)}


def differences(model: Dict[int, VmaSet], kernel: Dict[int, VmaSet]) -> Set[Tuple[int, int, int, bool]]:
    """(pid, start, end, in_kernel) for each VMA only one side has."""
    out: Set[Tuple[int, int, int, bool]] = set()
    for pid in set(model) | set(kernel):
        mine, theirs = model.get(pid, set()), kernel.get(pid, set())
        out.update((pid, s, e, False) for s, e in mine - theirs)
        out.update((pid, s, e, True) for s, e in theirs - mine)
    return out


# a check yields when it wants smaps read, is sent the read, returns its drift records
DriftCheck = Job[None, Dict[int, VmaSet], List[Record]]


def drift_check(model: Model, ts: Callable[[], int], catch_up: Callable[[], None]) -> DriftCheck:
    """Compare twice (applying the events in between with `catch_up`); report what persists.
    The model is looked at before each read, in the loop's thread, and copied: the reads may
    run on a worker thread while the loop applies events (background.py)."""
    catch_up()
    mine = model_vmas(model)
    first = differences(mine, (yield None))
    if not first:
        return []
    catch_up()
    mine = model_vmas(model)
    second = differences(mine, (yield None))
    now = ts()
    return [{"type": "drift", "ts": now, "pid": pid, "vma": [start, end],
             "expected": "absent" if in_kernel else "present", "seen": "present" if in_kernel else "absent"}
            for pid, start, end, in_kernel in sorted(first & second)]


def smaps_reader(mnemonics: Sequence[str], skip: Sequence[int]) -> Callable[[None], Dict[int, VmaSet]]:
    """What drift_check asks for: every process's flagged VMAs as smaps shows them now."""
    return lambda _: kernel_vmas(mnemonics, skip)


def drift_records(model: Model, mnemonics: Sequence[str], skip: Sequence[int], ts: Callable[[], int],
                  catch_up: Callable[[], None]) -> List[Record]:
    """drift_check with its reads made here."""
    return run_here(drift_check(model, ts, catch_up), smaps_reader(mnemonics, skip))
