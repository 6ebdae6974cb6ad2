"""An actor of the random workload: one process that runs memory operations sent to it.

The orchestrator (mpxtrace.randomwork) sends one operation at a time over a Unix socket; the
actor runs it on the thread it names and answers ``ok``, ``skip:<why>`` or ``err:<ERRNO>``.
Operations name memory by (space, page offset) (see mpxtrace.randomops); the actor resolves
them to addresses and touches only memory it owns: pages it mapped itself.  A hole is
claimed with MAP_FIXED_NOREPLACE before anything is put there with MAP_FIXED, so a mapping
the interpreter or libc placed in a hole of the arena is never replaced, and every access
that could fault (touching, growing a stack) is done by the kernel (read from /dev/zero),
which returns EFAULT where user code would die of SIGSEGV.

Standard library and ctypes only: runs on the lab guests' Python 3.9 to 3.14.
"""
from __future__ import annotations

import bisect
import ctypes
import errno
import json
import os
import queue
import signal
import socket
import sys
import threading
import warnings
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from . import workload as w
from .randomops import ARENA_PAGES, Op

PAGE = w.PAGE
MAP_GROWSDOWN, MAP_POPULATE, MAP_FIXED_NOREPLACE = 0x100, 0x8000, 0x100000
MREMAP_DONTUNMAP = 4
MLOCK_ONFAULT = 1
MCL = {"c": 1, "f": 2, "o": 4}
MADVICE = {"dontfork": 10, "dofork": 11, "mergeable": 12, "unmergeable": 13, "hugepage": 14, "nohugepage": 15,
           "wipeonfork": 18, "keeponfork": 19}
PROT = {"rw": w.PROT_READ | w.PROT_WRITE, "r": w.PROT_READ, "none": w.PROT_NONE}
MAP_LETTERS = {"n": w.MAP_NORESERVE, "l": w.MAP_LOCKED, "p": MAP_POPULATE, "g": MAP_GROWSDOWN}
SYS_BRK, SYS_MREMAP, SYS_MLOCK2 = 12, 25, 325  # x86_64
THREAD_STACK = 256 * 1024  # small worker stacks: mlockall populates every one of them
MALLOC_TOP_PAD = 4 << 20  # libc grows brk by at least this: never by exactly our extension

_libc = w._libc
_libc.syscall.restype = ctypes.c_long
_libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
_libc.read.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
_libc.read.restype = ctypes.c_ssize_t
_libc.mlockall.argtypes = [ctypes.c_int]
_libc.qsort.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t, ctypes.c_void_p]
_libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
_COMPARE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


class Skip(Exception):
    """The operation does not apply here (its actor's memory is gone, not ours, ...)."""


def _sys(number: int, *args: int) -> int:
    result = _libc.syscall(ctypes.c_long(number), *(ctypes.c_long(a) for a in args))
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(result)


def _ok(result: int) -> int:
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


class Memory:
    """This actor's spaces and the pages it owns (page numbers: address // PAGE)."""

    def __init__(self) -> None:
        self.arena = w.mmap(0, ARENA_PAGES, w.PROT_NONE, 0)
        self.owned: Set[int] = set(range(self.arena // PAGE, self.arena // PAGE + ARENA_PAGES))
        self.far: Dict[int, int] = {}
        self.brk_start: Optional[int] = None  # our brk extension: [brk_start, brk_start + brk_pages)
        self.brk_pages = 0
        self.zero = os.open("/dev/zero", os.O_RDONLY | os.O_CLOEXEC)

    def after_fork(self) -> None:
        """Pages the child did not inherit (MADV_DONTFORK) are no longer ours."""
        starts, ends = _mapped_ranges()
        self.owned = {p for p in self.owned if _inside(starts, ends, p)}

    # -- addresses ------------------------------------------------------------------------------
    def _brk_is_ours(self) -> bool:
        if self.brk_start is None:
            return False
        if _sys(SYS_BRK, 0) != self.brk_start + self.brk_pages * PAGE:  # libc moved it: its memory now
            self._forget_brk()
            return False
        return True

    def _forget_brk(self) -> None:
        if self.brk_start is not None:
            self.owned -= set(range(self.brk_start // PAGE, self.brk_start // PAGE + self.brk_pages))
        self.brk_start, self.brk_pages = None, 0

    def address(self, space: str, off: int, pages: int) -> int:
        if space == "A":
            base = self.arena
        elif space == "B":
            if not self._brk_is_ours() or off + pages > self.brk_pages:
                raise Skip("brk")
            base = self.brk_start  # type: ignore[assignment]
        elif space.startswith("F") and int(space[1:]) in self.far:
            base = self.far[int(space[1:])]
        else:
            raise Skip("space")
        return base + off * PAGE

    def pages_of(self, addr: int, pages: int) -> range:
        return range(addr // PAGE, addr // PAGE + pages)

    def require_owned(self, addr: int, pages: int) -> None:
        if not all(p in self.owned for p in self.pages_of(addr, pages)):
            raise Skip("not-owned")

    def claim(self, addr: int, pages: int) -> None:
        """Make [addr, +pages) ours: holes are taken with MAP_FIXED_NOREPLACE, never replaced."""
        first = addr // PAGE
        i = 0
        while i < pages:
            if first + i in self.owned:
                i += 1
                continue
            j = i
            while j < pages and first + j not in self.owned:
                j += 1
            at = (first + i) * PAGE
            try:
                got = w.mmap(at, j - i, w.PROT_NONE, MAP_FIXED_NOREPLACE)
            except OSError as exc:
                raise Skip("foreign") if exc.errno == errno.EEXIST else exc
            if got != at:  # a kernel that took it as a hint
                w.munmap(got, j - i)
                raise Skip("foreign")
            self.owned.update(range(first + i, first + j))
            i = j

    # -- operations ---------------------------------------------------------------------------
    def op_map(self, op: Op) -> str:
        addr = self.address(op["sp"], op["off"], op["n"])
        self.claim(addr, op["n"])
        flags = w.MAP_FIXED
        for letter in op["mf"]:
            flags |= MAP_LETTERS[letter]
        w.mmap(addr, op["n"], PROT[op["prot"]], flags)
        return "ok"

    def op_mapfar(self, op: Op) -> str:
        flags = 0
        for letter in op["mf"]:
            flags |= MAP_LETTERS[letter]
        addr = w.mmap(0, op["n"], PROT[op["prot"]], flags)
        self.far[op["id"]] = addr
        self.owned.update(self.pages_of(addr, op["n"]))
        return "ok"

    def op_unmap(self, op: Op) -> str:
        addr = self.address(op["sp"], op["off"], op["n"])
        self.require_owned(addr, op["n"])
        w.munmap(addr, op["n"])
        self.owned.difference_update(self.pages_of(addr, op["n"]))
        return "ok"

    def op_protect(self, op: Op) -> str:
        addr = self.address(op["sp"], op["off"], op["n"])
        self.require_owned(addr, op["n"])
        w.mprotect(addr, op["n"], PROT[op["prot"]])
        return "ok"

    def op_remap(self, op: Op) -> str:
        addr = self.address(op["sp"], op["off"], op["n"])
        self.require_owned(addr, op["n"])
        old, new, mode = op["n"], op["new"], op["mode"]
        flags, target = 0, 0
        if mode in ("maymove", "fixed", "dontunmap"):
            flags |= w.MREMAP_MAYMOVE
        if mode == "dontunmap":
            flags |= MREMAP_DONTUNMAP
        if "dsp" in op:
            target = self.address(op["dsp"], op["doff"], new)
            self.claim(target, new)
            flags |= w.MREMAP_FIXED
        got = _sys(SYS_MREMAP, addr, old * PAGE, new * PAGE, flags, target)
        if mode != "dontunmap":
            self.owned.difference_update(self.pages_of(addr, old))
        self.owned.update(self.pages_of(got, new))
        if "id" in op:
            self.far[op["id"]] = got
        return "ok" if got == addr else "ok:moved"

    def op_lock(self, op: Op) -> str:
        addr = self.address(op["sp"], op["off"], op["n"])
        self.require_owned(addr, op["n"])
        kind = op["kind"]
        if kind == "mlock":
            w.mlock(addr, op["n"])
        elif kind == "munlock":
            w.munlock(addr, op["n"])
        else:
            _sys(SYS_MLOCK2, addr, op["n"] * PAGE, MLOCK_ONFAULT)
        return "ok"

    def op_lockall(self, op: Op) -> str:
        flags = 0
        for letter in op["kind"]:
            flags |= MCL[letter]
        _ok(_libc.mlockall(flags))
        return "ok"

    def op_unlockall(self, op: Op) -> str:
        _ok(_libc.munlockall())
        return "ok"

    def op_advise(self, op: Op) -> str:
        addr = self.address(op["sp"], op["off"], op["n"])
        self.require_owned(addr, op["n"])
        _ok(_libc.madvise(addr, op["n"] * PAGE, MADVICE[op["adv"]]))
        return "ok"

    def op_touch(self, op: Op) -> str:
        addr = self.address(op["sp"], op["off"], op["n"])
        self.require_owned(addr, op["n"])
        _ok(_libc.read(self.zero, addr, op["n"] * PAGE))  # the kernel writes: EFAULT, not SIGSEGV
        return "ok"

    def op_brk(self, op: Op) -> str:
        current = _sys(SYS_BRK, 0)
        if not self._brk_is_ours():
            self.brk_start, self.brk_pages = current, 0
            current = self.brk_start
        delta = op["delta"]
        if delta < 0:
            delta = -min(-delta, self.brk_pages)
            if delta == 0:
                raise Skip("brk-empty")
        got = _sys(SYS_BRK, current + delta * PAGE)
        if got != current + delta * PAGE:
            raise OSError(errno.ENOMEM, "brk refused")
        first = (current // PAGE)
        if delta > 0:
            self.owned.update(range(first, first + delta))
        else:
            self.owned.difference_update(range(first + delta, first))
        self.brk_pages += delta
        return "ok"

    def op_grow(self, op: Op) -> str:
        """Touch a page below a MAP_GROWSDOWN mapping: the fault handler expands it."""
        addr = self.address(op["sp"], op["off"], 1)
        page = addr // PAGE
        if page in self.owned:
            raise Skip("mapped")
        vec = ctypes.create_string_buffer(1)
        if _libc.mincore(addr, PAGE, vec) == 0:
            raise Skip("foreign")
        _ok(_libc.read(self.zero, addr, 1))
        end = page
        while end - page < 64 and end not in self.owned:
            end += 1
        self.owned.update(range(page, end))
        return "ok"


def _mapped_ranges() -> Tuple[List[int], List[int]]:
    """Start and end pages of this process's VMAs, ascending."""
    starts: List[int] = []
    ends: List[int] = []
    with open("/proc/self/maps") as fh:
        for line in fh:
            lo, hi = line.split(" ", 1)[0].split("-")
            starts.append(int(lo, 16) // PAGE)
            ends.append(int(hi, 16) // PAGE)
    return starts, ends


def _inside(starts: List[int], ends: List[int], page: int) -> bool:
    i = bisect.bisect_right(starts, page) - 1
    return i >= 0 and page < ends[i]


def recurse(depth: int) -> int:
    """Grow the main thread's stack through C frames: qsort calls back into Python, which
    calls qsort again, `depth` times (about 2.4 KiB of stack a level on CPython 3.11)."""
    pair = (ctypes.c_int * 2)(1, 2)
    reached = [0]

    def compare(_a: int, _b: int) -> int:
        if reached[0] < depth:
            reached[0] += 1
            _libc.qsort(ctypes.addressof(pair), 2, ctypes.sizeof(ctypes.c_int), callback)
        return 0

    callback = _COMPARE(compare)
    _libc.qsort(ctypes.addressof(pair), 2, ctypes.sizeof(ctypes.c_int), callback)
    return reached[0]


class Workers:
    """Threads that run operations for the main thread (one at a time: the actor is serial)."""

    def __init__(self) -> None:
        self.queues: List["queue.Queue[Optional[Tuple[Callable[[], str], List[str], threading.Event]]]"] = []
        self.threads: List[threading.Thread] = []

    def resize(self, count: int) -> None:
        while len(self.threads) < count:
            q: "queue.Queue[Optional[Tuple[Callable[[], str], List[str], threading.Event]]]" = queue.Queue()
            thread = threading.Thread(target=self._serve, args=(q,), daemon=True)
            thread.start()
            self.queues.append(q)
            self.threads.append(thread)
        while len(self.threads) > count:
            self.queues.pop().put(None)
            self.threads.pop().join()

    @staticmethod
    def _serve(q: "queue.Queue[Optional[Tuple[Callable[[], str], List[str], threading.Event]]]") -> None:
        while True:
            job = q.get()
            if job is None:
                return
            run, box, done = job
            box.append(run())
            done.set()

    def run(self, index: int, job: Callable[[], str]) -> str:
        """Run job on worker `index` (1-based); 0, or a worker that is gone, means this thread."""
        if index < 1 or index > len(self.threads):
            return job()
        box: List[str] = []
        done = threading.Event()
        self.queues[index - 1].put((job, box, done))
        done.wait()
        return box[0]


def _guarded(memory: Memory, op: Op) -> Callable[[], str]:
    def job() -> str:
        try:
            return getattr(memory, f"op_{op['op']}")(op)  # type: ignore[no-any-return]
        except Skip as why:
            return f"skip:{why}"
        except OSError as exc:
            return f"err:{errno.errorcode.get(exc.errno or 0, exc.errno)}"
    return job


class Actor:
    def __init__(self, ident: int, sock_name: str, threads: int) -> None:
        self.ident = ident
        self.sock_name = sock_name
        self.memory = Memory()
        self.workers = Workers()
        self.workers.resize(threads)
        self.conn: Optional[socket.socket] = None
        self.reader: Any = None

    def connect(self) -> None:
        self.conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.conn.connect("\0" + self.sock_name)  # an abstract socket: nothing on disk
        self.reader = self.conn.makefile("r")
        self.send({"hello": self.ident, "pid": os.getpid(), "threads": len(self.workers.threads)})

    def send(self, message: Dict[str, Any]) -> None:
        assert self.conn is not None
        self.conn.sendall((json.dumps(message) + "\n").encode())

    def serve(self) -> None:
        while True:
            line = self.reader.readline()
            if not line:
                os._exit(0)  # the orchestrator went away
            op = json.loads(line)
            reply: Dict[str, Any] = {"r": self.handle(op)}
            self.send(reply)

    def handle(self, op: Op) -> str:
        kind = op["op"]
        if kind == "threads":
            self.workers.resize(op["n"])
            return "ok"
        if kind == "recurse":
            return f"ok:{recurse(op['depth'])}"
        if kind == "fork":
            return self.fork(op["child"])
        if kind == "spawn":
            pid = os.posix_spawn(sys.executable, _actor_argv(op["child"], self.sock_name), dict(os.environ))
            return f"ok:{pid}"
        if kind == "exec":
            self.send({"r": "ok"})
            os.execv(sys.executable, _actor_argv(self.ident, self.sock_name))
        if kind == "exit":
            self.send({"r": "ok"})
            os._exit(0)
        return self.workers.run(op.get("t", 0), _guarded(self.memory, op))

    def fork(self, child: int) -> str:
        threads = len(self.workers.threads)
        pid = os.fork()
        if pid:
            return f"ok:{pid}"
        # the child: only this thread survived; it becomes actor `child` with its own link
        assert self.conn is not None
        self.conn.close()
        self.ident = child
        self.memory.after_fork()
        self.workers = Workers()
        self.workers.resize(threads)
        self.connect()
        self.serve()
        os._exit(0)


def _actor_argv(ident: int, sock_name: str) -> List[str]:
    return [sys.executable, "-m", "mpxtrace.randomwork", "--actor", str(ident), "--sock", sock_name]


def actor_main(ident: int, sock_name: str) -> int:
    warnings.simplefilter("ignore")  # fork() of a threaded process warns on 3.12+
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children (forks, spawns) reap themselves
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    threading.stack_size(THREAD_STACK)
    sys.setrecursionlimit(20000)
    _libc.mallopt(-2, MALLOC_TOP_PAD)  # M_TOP_PAD
    _libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: libc never shrinks brk under our extension
    actor = Actor(ident, sock_name, 1)
    actor.connect()
    actor.serve()
    return 0
