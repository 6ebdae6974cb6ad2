"""The event stream: the kernel's binary record, and the typed records the model consumes.

``RawEvent`` mirrors ``bpf/mpxtrace_event.h`` byte for byte; its generic ``aux``/``aux2``
words get the names their kind gives them (``records.EVENT_KINDS``) in the decoded record.
Every record the front end handles (kernel events, smaps seeds, lost-event notices, the end
marker) is a JSON-able dict, so that a live run and a replayed log go through exactly the same code.
"""
from __future__ import annotations

import ctypes
import enum
import struct
from typing import Any, Dict, Tuple

from .records import EVENT_KINDS, kernel_text

__all__ = ["Kind", "RawEvent", "RAW_LAYOUT", "COMM_LEN", "decode_raw", "decode_bytes", "Record", "CTX_OWNER", "COUNTERS"]

COMM_LEN = 16
CTX_OWNER = 1
CTX_DONTUNMAP = 2


class Kind(enum.IntEnum):
    MAP = 1
    FLAGS = 2
    SPLIT = 3
    UNMAP = 4
    MOVE = 5
    FORK = 6
    TASK = 7
    MM_EXIT = 8
    GROW = 9
    SYNC = 10


# enum mpxtrace_counter, in order
COUNTERS = ("lost_submit", "frame_overflow", "frame_stale", "map_full")


class RawEvent(ctypes.Structure):
    _fields_ = [
        ("ts_ns", ctypes.c_uint64),
        ("mm", ctypes.c_uint64),
        ("start", ctypes.c_uint64),
        ("end", ctypes.c_uint64),
        ("vm_flags", ctypes.c_uint64),
        ("ext_start", ctypes.c_uint64),
        ("ext_end", ctypes.c_uint64),
        ("aux", ctypes.c_uint64),
        ("aux2", ctypes.c_uint64),
        ("tgid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
        ("kind", ctypes.c_uint32),
        ("ctx", ctypes.c_uint32),
        ("comm", ctypes.c_char * COMM_LEN),
    ]


Record = Dict[str, Any]


# RawEvent's bytes as one struct.Struct: the stream's hot path unpacks each event in one call
# (a split event here: 1.76 us cast to a RawEvent and read field by field, 0.69 us copied and
# unpacked); tests/test_event_layout.py holds the two to the same offsets.
RAW_LAYOUT = struct.Struct(f"=9Q4I{COMM_LEN}s")
_KIND_NAMES: Dict[int, str] = {int(kind): kind.name.lower() for kind in Kind}
_AUX_NAMES: Dict[int, Tuple[str, ...]] = {int(kind): EVENT_KINDS[kind.name.lower()].aux_names for kind in Kind}
_TASK, _MM_EXIT, _MOVE = int(Kind.TASK), int(Kind.MM_EXIT), int(Kind.MOVE)
_COMMS: Dict[bytes, str] = {}  # a process name's 16 kernel bytes -> its text (a stream repeats a few)
_COMMS_MAX = 4096


def decode_raw(raw: RawEvent) -> Record:
    """One kernel event as a log record (``type: "event"``)."""
    return decode_bytes(bytes(raw))


def decode_bytes(data: bytes) -> Record:
    """One kernel event from its bytes (at least RAW_LAYOUT.size of them) as a log record."""
    (ts, mm, start, end, flags, ext_start, ext_end, aux, aux2, tgid, tid, kind, ctx,
     comm) = RAW_LAYOUT.unpack_from(data)
    name = _KIND_NAMES.get(kind)
    if name is None:
        raise ValueError(f"{kind} is not a valid Kind")
    text = _COMMS.get(comm)
    if text is None:
        text = kernel_text(comm.split(b"\0", 1)[0])
        if len(_COMMS) >= _COMMS_MAX:
            _COMMS.clear()
        _COMMS[comm] = text
    rec: Record = {"type": "event", "kind": name, "ts": ts, "mm": mm, "tgid": tgid, "tid": tid,
                   "owner": bool(ctx & CTX_OWNER), "comm": text}
    if kind != _TASK and kind != _MM_EXIT:
        rec["start"] = start
        rec["end"] = end
        rec["flags"] = flags
    if ext_end > ext_start:
        rec["ext"] = [ext_start, ext_end]
    names = _AUX_NAMES[kind]  # split's `at`, move's `old_start`...
    if names:
        rec[names[0]] = aux
        if len(names) > 1:
            rec[names[1]] = aux2
    if kind == _MOVE and ctx & CTX_DONTUNMAP:
        rec["dontunmap"] = True
    return rec
