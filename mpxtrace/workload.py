"""A workload that walks flagged memory through its whole VMA lifecycle.

It creates VMAs carrying a stand-in flag set at mmap time (MAP_NORESERVE or MAP_LOCKED),
grows them by adjacent mmaps (merges), splits them (partial munmap, mprotect of the middle),
moves them (mremap), forks a child that inherits them, execs, changes the flag in place
(mlock/munlock) and exits.  At each quiescent point it prints ``CHECK <name> <pids>`` and,
with ``--pause``, waits for a line on stdin so a test can compare the tracer with smaps.

Used by ``mpxtrace lab`` as the demo and by the kernel-lab end-to-end tests.
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import sys
import time
from typing import Callable, List, Optional

PAGE = os.sysconf("SC_PAGE_SIZE")
PROT_NONE, PROT_READ, PROT_WRITE = 0, 1, 2
MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS = 0x02, 0x10, 0x20
MAP_LOCKED, MAP_NORESERVE = 0x2000, 0x4000
MREMAP_MAYMOVE, MREMAP_FIXED = 1, 2
MAP_FAILED = ctypes.c_void_p(-1).value
CREATE_FLAGS = {"noreserve": MAP_NORESERVE, "locked": MAP_LOCKED}

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.mremap.restype = ctypes.c_void_p
_libc.mremap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p]
for _name in ("munmap", "mprotect", "mlock", "munlock"):
    getattr(_libc, _name).argtypes = [ctypes.c_void_p, ctypes.c_size_t] + ([ctypes.c_int] if _name == "mprotect" else [])


def _check(result: int, what: str) -> int:
    if result == -1 or result == MAP_FAILED:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def mmap(addr: int, pages: int, prot: int, flags: int) -> int:
    return _check(_libc.mmap(addr or None, pages * PAGE, prot, flags | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), "mmap")


def munmap(addr: int, pages: int) -> None:
    _check(_libc.munmap(addr, pages * PAGE), "munmap")


def mprotect(addr: int, pages: int, prot: int) -> None:
    _check(_libc.mprotect(addr, pages * PAGE, prot), "mprotect")


def mlock(addr: int, pages: int) -> None:
    _check(_libc.mlock(addr, pages * PAGE), "mlock")


def munlock(addr: int, pages: int) -> None:
    _check(_libc.munlock(addr, pages * PAGE), "munlock")


def mremap_to(addr: int, pages: int, new_pages: int, target: int) -> int:
    return _check(_libc.mremap(addr, pages * PAGE, new_pages * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, target), "mremap")


def touch(addr: int, pages: int) -> None:
    for i in range(pages):
        ctypes.c_char.from_address(addr + i * PAGE).value = b"x"


class Steps:
    def __init__(self, pause: bool, delay: float) -> None:
        self.pause = pause
        self.delay = delay

    def check(self, name: str, pids: List[int]) -> None:
        print(f"CHECK {name} {','.join(map(str, pids))}", flush=True)
        if self.pause:
            if not sys.stdin.readline():
                sys.exit(0)  # the driver went away
        elif self.delay:
            time.sleep(self.delay)


def reserve(pages: int) -> int:
    """An unflagged PROT_NONE area, so that MAP_FIXED mappings land next to each other."""
    return mmap(0, pages, PROT_NONE, 0)


def lifecycle(flag: int, steps: Steps) -> None:
    me = os.getpid()
    rw = PROT_READ | PROT_WRITE
    area = reserve(512)
    a = mmap(area, 16, rw, MAP_FIXED | flag)
    touch(a, 16)
    steps.check("create", [me])
    mmap(a + 16 * PAGE, 8, rw, MAP_FIXED | flag)  # adjacent: merges into one VMA
    touch(a + 16 * PAGE, 8)
    steps.check("merge_adjacent", [me])
    munmap(a + 10 * PAGE, 4)  # [a, a+10) and [a+14, a+24)
    steps.check("partial_munmap", [me])
    mprotect(a + 3 * PAGE, 2, PROT_READ)  # three VMAs in [a, a+10)
    steps.check("mprotect_split", [me])
    mprotect(a + 3 * PAGE, 2, rw)  # and back to one
    steps.check("mprotect_merge", [me])
    target = area + 300 * PAGE
    moved = mremap_to(a + 14 * PAGE, 10, 10, target)  # move [a+14, a+24) far away
    steps.check("mremap_move", [me])
    mremap_to(moved, 10, 14, area + 400 * PAGE)  # move and grow
    steps.check("mremap_grow", [me])
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(w)
        os.read(r, 1)  # wait until the parent has checked the inherited state
        munmap(a, 2)  # child frees part of its copy
        os._exit(_child_after_fork(steps))
    os.close(r)
    steps.check("fork_inherit", [me, child])
    os.write(w, b"g")
    os.close(w)
    _, status = os.waitpid(child, 0)
    steps.check("child_exited", [me])
    munmap(area, 512)  # frees every flagged VMA left in the area
    steps.check("freed", [me])


def _child_after_fork(steps: Steps) -> int:
    steps.check("child_partial_munmap", [os.getpid(), os.getppid()])
    return 0


def exec_cycle(flag: int, steps: Steps, flag_name: str) -> None:
    """fork + exec: the exec'd image makes its own flagged mapping; the old one dies with exec."""
    child = os.fork()
    if child == 0:
        mmap(0, 4, PROT_READ | PROT_WRITE, flag)
        os.execv(sys.executable, [sys.executable, "-m", "mpxtrace.workload", "--role", "exec-child",
                                  "--flag", flag_name] + (["--pause"] if steps.pause else []))
    _, status = os.waitpid(child, 0)
    steps.check("exec_child_exited", [os.getpid()])


def exec_child(flag: int, steps: Steps) -> None:
    mmap(0, 6, PROT_READ | PROT_WRITE, flag)
    steps.check("after_exec", [os.getpid()])


def flag_in_place(steps: Steps) -> None:
    """VM_LOCKED appearing and disappearing on existing memory (trace with --flag VM_LOCKED)."""
    rw = PROT_READ | PROT_WRITE
    area = reserve(64)
    b = mmap(area, 16, rw, MAP_FIXED)
    touch(b, 16)
    mlock(b + 4 * PAGE, 4)  # middle becomes locked: three VMAs, one carrying the flag
    steps.check("mlock_middle", [os.getpid()])
    munlock(b + 5 * PAGE, 2)  # part of it unlocked again
    steps.check("munlock_part", [os.getpid()])
    mlock(b, 16)  # everything locked: one VMA again
    steps.check("mlock_all", [os.getpid()])
    munlock(b, 16)
    steps.check("munlock_all", [os.getpid()])
    munmap(area, 64)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flag", choices=sorted(CREATE_FLAGS), default="noreserve",
                        help="mmap flag that sets the traced vm_flags bit at creation")
    parser.add_argument("--role", choices=["lifecycle", "exec-child", "inplace", "all"], default="all")
    parser.add_argument("--pause", action="store_true", help="wait for a line on stdin at each CHECK")
    parser.add_argument("--delay", type=float, default=0.0, help="sleep this long at each CHECK (demo)")
    args = parser.parse_args(argv)
    steps = Steps(args.pause, args.delay)
    flag = CREATE_FLAGS[args.flag]
    runs: List[Callable[[], None]] = []
    if args.role in ("lifecycle", "all"):
        runs.append(lambda: lifecycle(flag, steps))
        runs.append(lambda: exec_cycle(flag, steps, args.flag))
    if args.role == "exec-child":
        runs.append(lambda: exec_child(flag, steps))
    if args.role in ("inplace", "all"):
        runs.append(lambda: flag_in_place(steps))
    for run in runs:
        run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
