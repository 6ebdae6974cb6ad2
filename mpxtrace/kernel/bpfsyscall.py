"""The bpf(2) system call, for the few commands BCC does not wrap (program info, map probes)."""
from __future__ import annotations

import ctypes
import ctypes.util
import platform
from typing import Optional

__all__ = ["SYS_BPF", "sys_bpf", "MapElemAttr", "BPF_MAP_CREATE", "BPF_MAP_LOOKUP_ELEM", "BPF_MAP_UPDATE_ELEM", "BPF_OBJ_GET_INFO_BY_FD"]

BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_OBJ_GET_INFO_BY_FD = 15
SYS_BPF = {"x86_64": 321, "aarch64": 280, "ppc64le": 361, "s390x": 351}
_SYS_BPF_NR = SYS_BPF.get(platform.machine())  # None: an architecture we have no number for
_libc: Optional[ctypes.CDLL] = None


class MapElemAttr(ctypes.Structure):
    """union bpf_attr for BPF_MAP_{LOOKUP,UPDATE}_ELEM: key and value are user addresses."""

    _fields_ = [("map_fd", ctypes.c_uint32), ("_pad", ctypes.c_uint32), ("key", ctypes.c_uint64),
                ("value", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


def sys_bpf(cmd: int, attr: "ctypes.Structure") -> int:
    """bpf(cmd, &attr, sizeof(attr)): its result (an fd, or 0), or -errno; -ENOSYS where we have
    no syscall number for this architecture."""
    global _libc
    if _SYS_BPF_NR is None:
        return -38
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    ret = int(_libc.syscall(ctypes.c_long(_SYS_BPF_NR), ctypes.c_int(cmd), ctypes.byref(attr),
                            ctypes.c_uint(ctypes.sizeof(attr))))
    return ret if ret >= 0 else -ctypes.get_errno()
