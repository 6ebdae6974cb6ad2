"""smaps parsing against mappings this test makes, and the commands that need no tracing."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from mpxtrace import workload
from mpxtrace.cli import main
from mpxtrace.eventlog import LogWriter
from mpxtrace.smaps import flagged_vmas, read_smaps, scan
from mpxtrace.stats import Session

from helpers import ev, header

A = 0x7F0000000000
PAGE = 4096


def test_scan_sees_exactly_our_noreserve_mappings() -> None:
    before = sum(v.size for v in flagged_vmas(read_smaps(os.getpid()), ["nr"]))
    addr = workload.mmap(0, 7, workload.PROT_READ | workload.PROT_WRITE, workload.MAP_NORESERVE)
    try:
        vmas = flagged_vmas(read_smaps(os.getpid()), ["nr"])
        assert sum(v.size for v in vmas) == before + 7 * PAGE
        assert any(v.start == addr and v.size == 7 * PAGE for v in vmas)
        (me,) = scan(["nr"], [os.getpid()])
        assert me.pid == os.getpid() and me.live_bytes == before + 7 * PAGE
    finally:
        workload.munmap(addr, 7)
    assert sum(v.size for v in flagged_vmas(read_smaps(os.getpid()), ["nr"])) == before


def test_scan_command_json() -> None:
    addr = workload.mmap(0, 3, workload.PROT_READ | workload.PROT_WRITE, workload.MAP_NORESERVE)
    try:
        result = CliRunner().invoke(main, ["scan", "--flag", "VM_NORESERVE", "-p", str(os.getpid()), "--json"])
        assert result.exit_code == 0, result.output
        doc = json.loads(result.output)
        assert doc["processes"][0]["pid"] == os.getpid()
        assert any(v["start"] == hex(addr) and v["size"] == 3 * PAGE for v in doc["processes"][0]["vmas"])
    finally:
        workload.munmap(addr, 3)


def _log(path: Path) -> dict:
    w = LogWriter(path)
    session = Session(header())
    for rec in [header(), ev("map", 10, A, A + 4 * PAGE), ev("unmap", 20, A, A + PAGE), {"type": "end", "ts": 30}]:
        w.write(rec)
        if rec["type"] != "header":
            session.apply(rec)
    w.close()
    return session.summary()


def test_report_json_equals_the_session_summary(tmp_path: Path) -> None:
    expected = _log(tmp_path / "run.ndjson")
    result = CliRunner().invoke(main, ["report", str(tmp_path / "run.ndjson"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == expected


def test_report_text_has_histograms(tmp_path: Path) -> None:
    _log(tmp_path / "run.ndjson")
    result = CliRunner().invoke(main, ["report", str(tmp_path / "run.ndjson")])
    assert result.exit_code == 0
    assert "@allocation_size:" in result.output and "[16K, 32K)" in result.output
    assert "@lifetime:" in result.output


def test_report_on_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_text("hello\n")
    result = CliRunner().invoke(main, ["report", str(bad)])
    assert result.exit_code == 1 and "not an mpxtrace log header" in result.output
    missing = CliRunner().invoke(main, ["report", str(tmp_path / "nope")])
    assert missing.exit_code == 1 and "cannot read" in missing.output


def test_trace_refuses_unknown_flag_before_touching_the_kernel() -> None:
    result = CliRunner().invoke(main, ["trace", "--flag", "VM_BOGUS"])
    assert result.exit_code == 2 and "unknown flag" in result.output


def test_trace_bad_interval() -> None:
    result = CliRunner().invoke(main, ["trace", "--flag", "lo", "--", "-1"])
    assert result.exit_code == 2


def test_default_mpx_profile_without_mpx_points_to_flag() -> None:
    from mpxtrace.flags import resolve_mpx
    if resolve_mpx().available:
        pytest.skip("this kernel has MPX (3.19-5.5): the default profile is valid here")
    result = CliRunner().invoke(main, ["trace"])
    assert result.exit_code == 2
    assert "no MPX bounds-table flag" in result.output and "--flag VM_LOCKED" in result.output


# -- the parser looks for a header only on lines that can be one ---------------------------------
_LINES = ["7f0000000000-7f0000001000 rw-p 00000000 00:00 0 ",
          "7f0000001000-7f0000003000 r--p 00001000 08:01 42    /usr/lib/x86_64-linux-gnu/libc.so.6",
          "55d0c0000000-55d0c0021000 rw-p 00000000 00:00 0                          [heap]",
          "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]",
          "Size:                  4 kB", "Rss:                   8 kB", "Rss:                   0 kB",
          "Pss:                   4 kB", "VmFlags: rd wr mr mw me ac nr", "VmFlags: rd mr mw me lo",
          "THPeligible:    0", "ProtectionKey:         0", "", "deadbeef not a header", "0", "f-f x"]


def _every_line_tried(text: str) -> list:
    """The parser before it filtered by first character: every line tried as a header."""
    import re
    header = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (\S+) ([0-9a-f]+) \S+ \d+\s*(.*)$")
    out: list = []
    for line in text.splitlines():
        m = header.match(line)
        if m:
            out.append([int(m.group(1), 16), int(m.group(2), 16), m.group(3), int(m.group(4), 16), m.group(5), 0, set()])
        elif out and line.startswith("VmFlags:"):
            out[-1][6] = set(line.split()[1:])
        elif out and line.startswith("Rss:"):
            out[-1][5] = int(line.split()[1])
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_LINES), max_size=40))
def test_parsing_smaps_reads_what_trying_every_line_as_a_header_reads(lines: list) -> None:
    from mpxtrace.smaps import parse_smaps
    text = "\n".join(lines) + "\n"
    assert [[v.start, v.end, v.perms, v.offset, v.path, v.rss_kb, set(v.flags)] for v in parse_smaps(text)] == \
        _every_line_tried(text)
