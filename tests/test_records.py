"""The record schema: every kind the decoder makes passes it, nonsense does not, kernel text never fails."""
from __future__ import annotations

from typing import Any, Dict

import pytest

from mpxtrace.events import COMM_LEN, Kind, RawEvent, decode_raw
from mpxtrace.records import EVENT_KINDS, RecordError, check_record, kernel_text, printable
from helpers import ev


def test_every_kernel_event_kind_has_a_schema_entry() -> None:
    assert {k.name.lower() for k in Kind} <= set(EVENT_KINDS)


@pytest.mark.parametrize("kind", list(Kind))
def test_what_the_decoder_makes_passes_the_schema(kind: Kind) -> None:
    raw = RawEvent(ts_ns=5, mm=0xFFFF8880, start=0x1000, end=0x3000, vm_flags=0x2000, ext_start=0x1000,
                   ext_end=0x4000, aux=0x2000, aux2=0x3000, tgid=42, tid=43, kind=int(kind), ctx=3,
                   comm=b"\xffwork\x1b")
    rec = decode_raw(raw)
    check_record(rec)
    assert rec["comm"] == "\\xffwork\\x1b"


KIND_NAMES = {"at", "old_start", "old_end", "parent_mm"}


@pytest.mark.parametrize("kind", list(Kind))
def test_the_decoder_names_the_aux_words_per_kind(kind: Kind) -> None:
    rec = decode_raw(RawEvent(start=0x1000, end=0x3000, aux=0x2000, aux2=0x2800, kind=int(kind)))
    expected = {Kind.SPLIT: {"at": 0x2000}, Kind.MOVE: {"old_start": 0x2000, "old_end": 0x2800},
                Kind.FORK: {"parent_mm": 0x2000}, Kind.GROW: {"old_start": 0x2000}}.get(kind, {})
    assert {k: v for k, v in rec.items() if k in KIND_NAMES} == expected
    assert "aux" not in rec and "aux2" not in rec


def test_new_kinds_and_optional_move_fields() -> None:
    check_record(ev("grow", 1, 0x1000, 0x3000))
    check_record(ev("sync", 1, 0x1000, 0x3000, ext=(0x1000, 0x3000)))
    check_record(dict(ev("move", 1, 0x5000, 0x6000, old_start=0x1000, old_end=0x2000), old_len=0x1000, dontunmap=True))
    with pytest.raises(RecordError, match="move source .0x2000, 0x1000. is reversed"):
        check_record(ev("move", 1, 0x5000, 0x6000, old_start=0x2000, old_end=0x1000))
    with pytest.raises(RecordError, match="`dontunmap` must be true or false"):
        check_record(dict(ev("move", 1, 0x5000, 0x6000, old_start=0x1000, old_end=0x2000), dontunmap=1))
    with pytest.raises(RecordError, match="grow event without `start`"):
        check_record({k: v for k, v in ev("grow", 1, 0x1000, 0x3000).items() if k != "start"})


@pytest.mark.parametrize("change, problem", [
    ({"ts": True}, "`ts` must be an integer, not a boolean"),
    ({"ts": 1.5}, "`ts` must be an integer, not a number"),
    ({"mm": 1 << 64}, "`mm` 18446744073709551616 is out of range"),
    ({"tgid": -1}, "`tgid` -1 is out of range"),
    ({"owner": "yes"}, "`owner` must be true or false"),
    ({"comm": None}, "`comm` must be a string, not null"),
    ({"comm": "x" * 5000}, "`comm` is 5000 characters long"),
    ({"comm": "\ud800"}, "lone surrogates"),
    ({"end": 0x1000}, "empty or reversed range"),
    ({"ext": [1]}, "`ext` must be a [start, end] pair"),
    ({"kind": ["map"]}, "unknown event kind ['map']"),
])
def test_event_nonsense(change: Dict[str, Any], problem: str) -> None:
    with pytest.raises(RecordError) as info:
        check_record(dict(ev("map", 1, 0x1000, 0x3000), **change))
    assert problem in str(info.value)


def test_drift_records_from_verify_are_log_records() -> None:
    check_record({"type": "drift", "ts": 1, "pid": 3, "vma": [0x1000, 0x2000], "expected": "absent", "seen": "present"})
    with pytest.raises(RecordError, match="`seen` must be one of absent, present"):
        check_record({"type": "drift", "ts": 1, "pid": 3, "vma": [0x1000, 0x2000], "expected": "absent", "seen": 1})


@pytest.mark.parametrize("rec, problem", [
    ({"type": "seed", "ts": 1, "pid": 0, "comm": "x", "start": 0, "end": 4096, "flags": 1}, "`pid` 0 is out of range"),
    ({"type": "proc_exit", "ts": 1}, "proc_exit record without `pid`"),
    ({"type": "lost", "ts": 1, "source": "ring_buffer", "count": 0}, "`count` 0 is out of range"),
    ({"type": "end"}, "end record without `ts`"),
    ({"ts": 1}, "record without a type"),
    ({"type": "resident", "ts": 1, "mem_total_bytes": 1, "flagged_resident_bytes": 0, "ram_share": float("nan"),
      "processes_sampled": 0, "sample_ns": 1, "processes": []}, "`ram_share` nan is not a share"),
    ({"type": "resident", "ts": 1, "mem_total_bytes": 1, "flagged_resident_bytes": 0, "ram_share": 0.5,
      "processes_sampled": 0, "sample_ns": 1, "processes": [{"pid": 1}]}, "has no `resident_bytes`"),
])
def test_other_record_nonsense(rec: Dict[str, Any], problem: str) -> None:
    with pytest.raises(RecordError) as info:
        check_record(rec)
    assert problem in str(info.value)


@pytest.mark.parametrize("raw, text", [
    (b"worker", "worker"),
    (b"caf\xc3\xa9", "caf\u00e9"),
    (b"\xff\xfe", "\\xff\\xfe"),
    (b"a\x1b[31mb", "a\\x1b[31mb"),
    (b"\xc2\x9b", "\\x9b"),  # C1 CSI, valid UTF-8 yet a terminal escape
    (b"tab\there", "tab\\x09here"),
])
def test_kernel_text_never_fails_and_is_printable(raw: bytes, text: str) -> None:
    assert kernel_text(raw) == text
    assert printable(text) == text  # escaping is idempotent on its output
    text.encode("utf-8")


def test_decoder_comm_is_cut_at_nul_and_at_comm_len() -> None:
    assert decode_raw(RawEvent(kind=1, start=0, end=1, comm=b"ab\0cd"))["comm"] == "ab"
    assert decode_raw(RawEvent(kind=1, start=0, end=1, comm=b"\xe2" * COMM_LEN))["comm"] == "\\xe2" * COMM_LEN
