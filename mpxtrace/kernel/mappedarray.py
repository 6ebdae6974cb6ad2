"""A BPF array read from memory instead of by bpf(BPF_MAP_LOOKUP_ELEM).

Every map lookup from user space runs under bpf_disable_instrumentation(), which holds the
CPU's bpf_prog_active; a kprobe program that fires on that CPU meanwhile is skipped (counted
in its recursion_misses).  Held for a moment on most kernels, but where the kernel preempts
in kernel mode (7.2's lazy preemption) the reading task can be preempted inside it, and every
task on that CPU then runs untraced until it is back: measured in the lab (7.2, kprobes).
The tracer read its loss counters that way after every poll.  An array created with
BPF_F_MMAPABLE (5.5+: fc9702273e2e "bpf: Add mmap() support for BPF_MAP_TYPE_ARRAY") is
mapped into our memory: reading it is a load, no system call, no window.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import struct
from functools import lru_cache
from typing import List

from .bpfsyscall import BPF_MAP_CREATE, sys_bpf

__all__ = ["BPF_F_MMAPABLE", "mmapable_arrays_supported", "MappedArray"]

BPF_F_MMAPABLE = 1 << 10
BPF_MAP_TYPE_ARRAY = 2


class MapCreateAttr(ctypes.Structure):
    """The head of union bpf_attr for BPF_MAP_CREATE; the zeroed tail is what the kernel requires."""

    _fields_ = [("map_type", ctypes.c_uint32), ("key_size", ctypes.c_uint32), ("value_size", ctypes.c_uint32),
                ("max_entries", ctypes.c_uint32), ("map_flags", ctypes.c_uint32), ("_rest", ctypes.c_uint8 * 108)]


def create_array(entries: int, value_size: int = 8, flags: int = 0) -> int:
    """A new BPF array map's fd, or -errno."""
    attr = MapCreateAttr(BPF_MAP_TYPE_ARRAY, 4, value_size, entries, flags)
    return sys_bpf(BPF_MAP_CREATE, attr)


@lru_cache(maxsize=1)
def mmapable_arrays_supported() -> bool:
    """The kernel creates and maps a BPF_F_MMAPABLE array (probed, not inferred from a version)."""
    fd = create_array(1, flags=BPF_F_MMAPABLE)
    if fd < 0:
        return False
    try:
        with mmap.mmap(fd, mmap.PAGESIZE, mmap.MAP_SHARED, mmap.PROT_READ):
            return True
    except OSError:
        return False
    finally:
        os.close(fd)


class MappedArray:
    """The u64 values of a BPF_F_MMAPABLE array map, read from a shared read-only mapping.

    An aligned 8-byte load is atomic on the architectures BPF runs on, and the program adds
    with atomic instructions, so each value read is one the kernel held."""

    def __init__(self, map_fd: int, entries: int, writable: bool = False) -> None:
        self._format = f"={entries}Q"
        size = -(-struct.calcsize(self._format) // mmap.PAGESIZE) * mmap.PAGESIZE
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        self._map = mmap.mmap(map_fd, size, mmap.MAP_SHARED, prot)

    def values(self, descending: bool = False) -> List[int]:
        """Every value, in index order; read from the last to the first with `descending`."""
        if descending:
            entries = struct.calcsize(self._format) // 8
            out = [0] * entries
            for index in range(entries - 1, -1, -1):
                out[index] = struct.unpack_from("=Q", self._map, 8 * index)[0]
            return out
        return list(struct.unpack_from(self._format, self._map))

    def store(self, index: int, value: int) -> None:
        """Write one value (a mapping made writable), as the program's next lookup sees it."""
        struct.pack_into("=Q", self._map, 8 * index, value)

    def close(self) -> None:
        self._map.close()
