"""What the kernel counts about a loaded BPF program (bpf(BPF_OBJ_GET_INFO_BY_FD) on its fd).

The one figure mpxtrace needs is `recursion_misses` (5.12+, 9ed9e9ba2337 "bpf: Count the
number of times recursion was prevented"): the runs of a program the kernel skipped because
the same program was already running on that CPU.  fentry/fexit programs run preemptible
(migrate_disable only), so on a kernel that preempts in kernel mode (PREEMPT, or the lazy
mode of 6.13+) a task preempted inside one makes every other task on that CPU skip it: an
entry or return we never saw.  Older kernels lack the field: None.
"""
from __future__ import annotations

import ctypes
from typing import Optional

from .bpfsyscall import BPF_OBJ_GET_INFO_BY_FD, sys_bpf

__all__ = ["recursion_misses", "RECURSION_MISSES_OFFSET"]


class _ProgInfoHead(ctypes.Structure):
    """struct bpf_prog_info (include/uapi/linux/bpf.h) up to recursion_misses."""

    _fields_ = [
        ("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32), ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64), ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64), ("created_by_uid", ctypes.c_uint32), ("nr_map_ids", ctypes.c_uint32),
        ("map_ids", ctypes.c_uint64), ("name", ctypes.c_char * 16), ("ifindex", ctypes.c_uint32),
        ("gpl_compatible", ctypes.c_uint32), ("netns_dev", ctypes.c_uint64), ("netns_ino", ctypes.c_uint64),
        ("nr_jited_ksyms", ctypes.c_uint32), ("nr_jited_func_lens", ctypes.c_uint32),
        ("jited_ksyms", ctypes.c_uint64), ("jited_func_lens", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32), ("func_info_rec_size", ctypes.c_uint32), ("func_info", ctypes.c_uint64),
        ("nr_func_info", ctypes.c_uint32), ("nr_line_info", ctypes.c_uint32), ("line_info", ctypes.c_uint64),
        ("jited_line_info", ctypes.c_uint64), ("nr_jited_line_info", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32), ("jited_line_info_rec_size", ctypes.c_uint32),
        ("nr_prog_tags", ctypes.c_uint32), ("prog_tags", ctypes.c_uint64),
        ("run_time_ns", ctypes.c_uint64), ("run_cnt", ctypes.c_uint64), ("recursion_misses", ctypes.c_uint64),
    ]


RECURSION_MISSES_OFFSET: int = _ProgInfoHead.recursion_misses.offset
INFO_SIZE = 256  # larger than any kernel's struct: the tail stays zero, as the kernel requires


class _InfoAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64)]


def recursion_misses(prog_fd: int) -> Optional[int]:
    """Runs of the program the kernel skipped (recursion protection), or None where the kernel
    does not report it (before 5.12) or the call fails."""
    buf = ctypes.create_string_buffer(INFO_SIZE)
    attr = _InfoAttr(prog_fd, INFO_SIZE, ctypes.addressof(buf))
    if sys_bpf(BPF_OBJ_GET_INFO_BY_FD, attr) != 0:
        return None
    if attr.info_len < RECURSION_MISSES_OFFSET + 8:
        return None
    return int.from_bytes(buf.raw[RECURSION_MISSES_OFFSET:RECURSION_MISSES_OFFSET + 8], "little")

