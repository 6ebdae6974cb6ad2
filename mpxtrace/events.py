"""The event stream: the kernel's binary record, and the typed records the model consumes.

``RawEvent`` mirrors ``bpf/mpxtrace_event.h`` byte for byte; its generic ``aux``/``aux2``
words get the names their kind gives them (``records.EVENT_KINDS``) in the decoded record.
Every record the front end handles (kernel events, smaps seeds, lost-event notices, the end
marker) is a JSON-able dict, so that a live run and a replayed log go through exactly the same code.
"""
from __future__ import annotations

import ctypes
import enum
from typing import Any, Dict

from .records import AUX_WORDS, EVENT_KINDS, kernel_text

__all__ = ["Kind", "RawEvent", "COMM_LEN", "decode_raw", "Record", "CTX_OWNER", "COUNTERS"]

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


def decode_raw(raw: RawEvent) -> Record:
    """One kernel event as a log record (``type: "event"``)."""
    kind = Kind(raw.kind)
    rec: Record = {
        "type": "event",
        "kind": kind.name.lower(),
        "ts": raw.ts_ns,
        "mm": raw.mm,
        "tgid": raw.tgid,
        "tid": raw.tid,
        "owner": bool(raw.ctx & CTX_OWNER),
        "comm": kernel_text(raw.comm.split(b"\0", 1)[0]),
    }
    if kind is not Kind.TASK and kind is not Kind.MM_EXIT:
        rec["start"] = raw.start
        rec["end"] = raw.end
        rec["flags"] = raw.vm_flags
    if raw.ext_end > raw.ext_start:
        rec["ext"] = [raw.ext_start, raw.ext_end]
    for word, name in zip(AUX_WORDS, EVENT_KINDS[rec["kind"]].aux_names):  # split's `at`, move's `old_start`...
        rec[name] = getattr(raw, word)
    if kind is Kind.MOVE and raw.ctx & CTX_DONTUNMAP:
        rec["dontunmap"] = True
    return rec
