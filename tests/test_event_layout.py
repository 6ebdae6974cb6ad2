"""The ctypes mirror of struct mpxtrace_event must match the C header byte for byte."""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest

from mpxtrace.events import COMM_LEN, RawEvent, decode_raw
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
