"""The ctypes mirror of struct mpxtrace_event must match the C header byte for byte."""
from __future__ import annotations

import ctypes
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict

import pytest

from mpxtrace.events import COMM_LEN, RAW_LAYOUT, Kind, RawEvent, decode_bytes, decode_raw
from mpxtrace.records import EVENT_KINDS, kernel_text
from mpxtrace.program import bpf_dir

FIELDS = [name for name, _ in RawEvent._fields_]


@pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")
def test_ctypes_layout_matches_c_header(tmp_path: Path) -> None:
    prog = tmp_path / "layout.c"
    lines = ['#include <stdio.h>', '#include <stddef.h>', '#include "mpxtrace_event.h"', "int main(void) {",
             'printf("size %zu\\n", sizeof(struct mpxtrace_event));']
    lines += [f'printf("{f} %zu %zu\\n", offsetof(struct mpxtrace_event, {f}), sizeof(((struct mpxtrace_event *)0)->{f}));'
              for f in FIELDS]
    lines.append("return 0; }")
    prog.write_text("\n".join(lines))
    exe = tmp_path / "layout"
    subprocess.run(["cc", f"-I{bpf_dir()}", str(prog), "-o", str(exe)], check=True)
    out = dict(line.split(" ", 1) for line in subprocess.run([str(exe)], check=True, capture_output=True,
                                                              text=True).stdout.splitlines())
    assert int(out.pop("size")) == ctypes.sizeof(RawEvent)
    for name in FIELDS:
        offset, size = map(int, out[name].split())
        field = getattr(RawEvent, name)
        assert (field.offset, field.size) == (offset, size), name


def test_decode_raw_map_event() -> None:
    raw = RawEvent(ts_ns=5, mm=0xFFFF8880, start=0x1000, end=0x3000, vm_flags=0x2000, ext_start=0x0,
                   ext_end=0x4000, aux=0, aux2=0, tgid=42, tid=43, kind=1, ctx=1, comm=b"worker")
    rec = decode_raw(raw)
    assert rec == {"type": "event", "kind": "map", "ts": 5, "mm": 0xFFFF8880, "tgid": 42, "tid": 43, "owner": True,
                   "comm": "worker", "start": 0x1000, "end": 0x3000, "flags": 0x2000, "ext": [0, 0x4000]}


def test_decode_raw_move_and_truncated_comm() -> None:
    raw = RawEvent(kind=5, start=10, end=20, aux=1, aux2=9, comm=b"a" * COMM_LEN)
    rec = decode_raw(raw)
    assert rec["kind"] == "move" and rec["old_start"] == 1 and rec["old_end"] == 9 and "ext" not in rec
    assert "aux" not in rec and "aux2" not in rec
    assert rec["comm"] == "a" * COMM_LEN and rec["owner"] is False


def test_struct_layout_reads_every_ctypes_field_at_its_offset() -> None:
    """decode_bytes unpacks RAW_LAYOUT; each field, set to a value of its own, comes back in its place."""
    assert RAW_LAYOUT.size == ctypes.sizeof(RawEvent)
    raw = RawEvent()
    values = []
    for i, name in enumerate(FIELDS):
        value: object = bytes([0x41 + i]) * COMM_LEN if name == "comm" else 0x0101010101 * (i + 1) % (1 << 32)
        setattr(raw, name, value)
        values.append(value)
    assert list(RAW_LAYOUT.unpack(bytes(raw))) == values


def _decode_by_attributes(raw: RawEvent) -> Dict[str, Any]:
    """The plain reading of a RawEvent, field by field through ctypes (what decode_raw did before
    it unpacked the bytes in one call): the reference the faster decoder is held to."""
    kind = Kind(raw.kind)
    rec: Dict[str, Any] = {"type": "event", "kind": kind.name.lower(), "ts": raw.ts_ns, "mm": raw.mm,
                           "tgid": raw.tgid, "tid": raw.tid, "owner": bool(raw.ctx & 1),
                           "comm": kernel_text(raw.comm.split(b"\0", 1)[0])}
    if kind not in (Kind.TASK, Kind.MM_EXIT):
        rec.update(start=raw.start, end=raw.end, flags=raw.vm_flags)
    if raw.ext_end > raw.ext_start:
        rec["ext"] = [raw.ext_start, raw.ext_end]
    for word, name in zip(("aux", "aux2"), EVENT_KINDS[rec["kind"]].aux_names):
        rec[name] = getattr(raw, word)
    if kind is Kind.MOVE and raw.ctx & 2:
        rec["dontunmap"] = True
    return rec


def test_decoder_agrees_with_reading_each_field_on_random_events() -> None:
    """Every kind, random words, process names with NULs, invalid UTF-8 and control bytes, the same
    name bytes seen again (the decoder caches names): the same record, key order included."""
    rng = random.Random()
    comms = [bytes(rng.getrandbits(8) for _ in range(COMM_LEN)) for _ in range(20)] + [b"worker", b"a\0b", b""]
    comms += [b"kworker/0:1H-ev" + bytes([last]) for last in (0x31, 0x32, 0xFF, 0x1B, 0)]  # differ in the last byte
    for _ in range(3000):
        raw = RawEvent.from_buffer_copy(bytes(rng.getrandbits(8) for _ in range(ctypes.sizeof(RawEvent))))
        raw.kind = rng.choice(list(Kind))
        raw.comm = rng.choice(comms)
        if rng.random() < 0.3:
            raw.ext_end = raw.ext_start + rng.choice([0, 1])
        expected = _decode_by_attributes(raw)
        got = decode_raw(raw)
        assert got == expected and list(got) == list(expected)
        assert decode_bytes(bytes(raw) + b"\0" * 8) == expected  # a perf record may carry padding after it


def test_decoder_refuses_a_kind_it_does_not_know() -> None:
    for kind in (0, max(Kind) + 1, 0xFFFFFFFF):
        with pytest.raises(ValueError, match="not a valid Kind"):
            decode_raw(RawEvent(kind=kind, start=0, end=1))
