"""The event log: private creation, bounded validated reading, and writing that survives faults."""
from __future__ import annotations

import errno
import json
import os
import random
import stat
import threading
from pathlib import Path
from typing import Any, Dict, List

import pytest

import mpxtrace.eventlog as eventlog
from mpxtrace.eventlog import MAX_LINE, LogError, LogWriter, open_log
from mpxtrace.records import AUX_WORDS, EVENT_KINDS, NAMED_FIELDS_VERSION
from helpers import MM, MM2, PAGE, ev, header


def _write(path: Path, records: list) -> None:
    w = LogWriter(path)
    for r in records:
        w.write(r)
    w.close()


def _lines(path: Path, *lines: Any) -> Path:
    path.write_bytes(b"".join((x if isinstance(x, bytes) else json.dumps(x).encode()) + b"\n" for x in lines))
    return path


def _read(path: Path, strict: bool = False) -> tuple:
    reader = open_log(path, strict)
    return reader, list(reader.records())


def test_log_is_private_and_roundtrips(tmp_path: Path) -> None:
    path = tmp_path / "run.ndjson"
    recs = [ev("map", 1, 0x1000, 0x2000), {"type": "end", "ts": 2}]
    _write(path, [header()] + recs)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    reader, body = _read(path)
    assert reader.header["type"] == "header" and body == recs
    assert reader.damaged_count == 0 and reader.warnings == [] and reader.ended


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "run.ndjson"
    path.write_text("precious")
    with pytest.raises(LogError, match="already exists"):
        LogWriter(path)
    assert path.read_text() == "precious"


def test_refuses_symlink_even_dangling(tmp_path: Path) -> None:
    target = tmp_path / "etc-passwd-stand-in"
    link = tmp_path / "run.ndjson"
    os.symlink(target, link)
    with pytest.raises(LogError):
        LogWriter(link)
    assert not target.exists()


def test_refuses_a_symlinked_parent_directory(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    os.symlink(tmp_path / "etc", tmp_path / "x")
    with pytest.raises(LogError, match="symbolic link"):
        LogWriter(tmp_path / "x" / "log")
    assert list((tmp_path / "etc").iterdir()) == []


def test_torn_last_line_is_skipped_and_named(tmp_path: Path) -> None:
    path = tmp_path / "run.ndjson"
    path.write_text(json.dumps(header()) + "\n" + json.dumps(ev("map", 1, 0, 4096)) + "\n" + '{"type": "ev')
    reader, body = _read(path)
    assert len(body) == 1 and reader.damaged_count == 1 and "torn" in reader.damaged[0]
    assert any("ends at line 3 without an end record" in w for w in reader.warnings)


def test_damage_in_the_middle_is_skipped_with_its_line_number(tmp_path: Path) -> None:
    path = tmp_path / "run.ndjson"
    path.write_text(json.dumps(header()) + "\nGARBAGE\n" + json.dumps(ev("map", 1, 0, 4096)) + "\n")
    reader, body = _read(path)
    assert len(body) == 1 and reader.damaged_count == 1 and reader.damaged[0].startswith(f"{path}:2: not JSON")


def test_strict_stops_at_the_first_damaged_record(tmp_path: Path) -> None:
    path = tmp_path / "run.ndjson"
    path.write_text(json.dumps(header()) + "\nGARBAGE\n" + json.dumps(ev("map", 1, 0, 4096)) + "\n")
    with pytest.raises(LogError, match=":2: not JSON"):
        _read(path, strict=True)


@pytest.mark.parametrize("line, problem", [
    (ev("map", 1, 0x2000, 0x1000), "empty or reversed range"),
    (ev("map", 1, -4096, 4096), "`start` -4096 is out of range"),
    ({"type": "lost", "ts": 1, "source": "ring_buffer", "count": -5}, "`count` -5 is out of range"),
    (dict(ev("map", 1, 0, 4096), start="0"), "`start` must be an integer, not a string"),
    ({k: v for k, v in ev("map", 1, 0, 4096).items() if k != "start"}, "without `start`"),
    (dict(ev("map", 1, 0, 4096), kind="teleport"), "unknown event kind 'teleport'"),
    (dict(header(), mask=0x1), "a second header"),
    (dict(ev("map", 1, 0, 4096), ext=[8192, 4096]), "`ext` is empty or reversed"),
    (dict(ev("map", 1, 0, 4096), comm="\x1b]0;pwned\x07"), "`comm` holds control characters"),
    ({"type": "summary"}, "is --json output"),
    ([1, 2], "must be a JSON object"),
    (b"\xff\xfe{}", "not UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"type": "end", "ts": 1e999}', "must be an integer, not inf"),
])
def test_nonsense_that_parses_is_rejected_with_the_reason(tmp_path: Path, line: Any, problem: str) -> None:
    path = _lines(tmp_path / "run.ndjson", header(), ev("map", 1, 0x10000, 0x20000), line, {"type": "end", "ts": 3})
    reader, body = _read(path)
    assert reader.damaged_count == 1 and problem in reader.damaged[0], reader.damaged
    assert reader.damaged[0].startswith(f"{path}:3: ")
    assert [r["type"] for r in body] == ["event", "end"]


@pytest.mark.parametrize("bad_header, problem", [
    (dict(header(), interval_ns=0), "`interval_ns` 0 is out of range"),
    (dict(header(), start_ns=-1), "`start_ns` -1 is out of range"),
    (dict(header(), mask=0), "`mask` 0 is out of range"),
    (dict(header(), version=99), "newer than this mpxtrace"),
    (dict(header(), pids=[0]), "`pids` item 0"),
])
def test_a_bad_header_is_always_fatal(tmp_path: Path, bad_header: Dict[str, Any], problem: str) -> None:
    path = _lines(tmp_path / "run.ndjson", bad_header, {"type": "end", "ts": 3})
    with pytest.raises(LogError, match=problem.replace("`", ".")) as info:
        open_log(path)
    assert str(info.value).startswith(f"{path}:1: ")


def _in_version1_words(rec: Dict[str, Any]) -> Dict[str, Any]:
    named = EVENT_KINDS[rec["kind"]].aux_names
    return {dict(zip(named, AUX_WORDS)).get(key, key): value for key, value in rec.items()}


NAMED_EVENTS = [ev("map", 1, 0x10000, 0x14000), ev("split", 2, 0x10000, 0x14000, at=0x11000),
                ev("move", 3, 0x40000, 0x41000, old_start=0x10000, old_end=0x11000),
                ev("fork", 4, 0x11000, 0x14000, mm=MM2, owner=False, parent_mm=MM),
                ev("grow", 5, 0x14000, 0x16000, flags=0, mm=MM2, old_start=0x11000)]


def test_a_version1_log_is_read_in_todays_field_names(tmp_path: Path) -> None:
    assert eventlog.LOG_VERSION >= NAMED_FIELDS_VERSION > 1  # what the tracer writes is named per kind
    old = [_in_version1_words(rec) for rec in NAMED_EVENTS]
    assert all("aux" in rec for rec in old[1:]) and "aux2" in old[2]
    path = _lines(tmp_path / "old.ndjson", dict(header(), version=1), *old, {"type": "end", "ts": 9})
    reader, body = _read(path, strict=True)
    assert body[:-1] == NAMED_EVENTS


def test_field_names_follow_the_log_version(tmp_path: Path) -> None:
    move = NAMED_EVENTS[2]
    path = _lines(tmp_path / "old.ndjson", dict(header(), version=1), _in_version1_words(move),
                  {k: v for k, v in _in_version1_words(move).items() if k != "aux2"}, {"type": "end", "ts": 9})
    reader, body = _read(path)
    assert reader.damaged == [f"{path}:3: move event without `aux2` (old_end)"] and body[0] == move
    path = _lines(tmp_path / "new.ndjson", header(), _in_version1_words(move), {"type": "end", "ts": 9})
    reader, body = _read(path)  # a version 2 log's aux words are not read as names
    assert reader.damaged == [f"{path}:2: move event without `old_start`"]


def test_order_rules(tmp_path: Path) -> None:
    seed = {"type": "seed", "ts": 1, "pid": 7, "comm": "x", "start": 0x1000, "end": 0x3000, "flags": 0x2000}
    path = _lines(tmp_path / "run.ndjson", header(), seed, dict(seed, start=0x2000, end=0x4000),
                  ev("map", 2, 0x10000, 0x20000), dict(seed, start=0x8000, end=0x9000),
                  {"type": "end", "ts": 3}, ev("unmap", 4, 0x10000, 0x20000))
    reader, body = _read(path)
    assert [d.split(": ", 1)[0].rsplit(":", 1)[1] for d in reader.damaged] == ["3", "5", "7"]
    assert "overlaps an earlier seed" in reader.damaged[0]
    assert "seed after traced events" in reader.damaged[1]
    assert "after the end record" in reader.damaged[2]
    assert [r["type"] for r in body] == ["seed", "event", "end"]


def test_an_overlong_line_is_skipped_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "run.ndjson"
    with open(path, "wb") as fh:
        fh.write(json.dumps(header()).encode() + b"\n")
        fh.write(b'{"type": "event", "comm": "' + b"A" * (5 * MAX_LINE) + b'"}\n')
        fh.write(json.dumps({"type": "end", "ts": 3}).encode() + b"\n")
    reader = open_log(path)
    seen: List[int] = []
    source = reader._source

    class Spy:  # every read of the log, measured
        def readline(self, size: int = -1) -> bytes:
            assert source is not None
            line = source.readline(size)
            seen.append(len(line))
            return line

        def close(self) -> None:
            assert source is not None
            source.close()
    reader._source = Spy()  # type: ignore[assignment]
    body = list(reader.records())
    assert max(seen) == MAX_LINE + 1  # never more than the cap held at once
    assert reader.damaged_count == 1 and "longer than" in reader.damaged[0] and body[-1]["type"] == "end"


def test_a_fifo_or_a_device_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    done: List[str] = []

    def attempt(path: Path) -> None:
        try:
            open_log(path)
        except LogError as err:
            done.append(str(err))
    for path in (fifo, Path("/dev/zero"), tmp_path):
        t = threading.Thread(target=attempt, args=(path,), daemon=True)
        t.start()
        t.join(5)
        assert not t.is_alive(), f"open_log({path}) blocked"
    assert "is a FIFO" in done[0] and "device" in done[1] and "directory" in done[2]


def test_log_writer_on_a_full_device_stops_logging_and_says_so() -> None:
    messages: List[str] = []
    w = LogWriter(Path("/dev/full"), on_failure=messages.append, fd=os.open("/dev/full", os.O_WRONLY))
    for i in range(3):
        w.write(ev("map", i, 0, PAGE))
    w.flush()  # ENOSPC here; no exception escapes
    w.write(ev("map", 9, 0, PAGE))
    w.close()
    assert len(messages) == 1 and "No space left on device" in messages[0] and "logging stopped" in messages[0]
    assert w.lines_written == 0


def test_log_writer_keeps_whole_lines_when_the_disk_fills_mid_write(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A write that fits only partly: the torn line is cut off, the rest replays, report says where it ends."""
    path = tmp_path / "run.ndjson"
    messages: List[str] = []
    w = LogWriter(path, on_failure=messages.append)
    w.write(header())
    for i in range(5):
        w.write(ev("map", i + 1, (i + 1) * 0x10000, (i + 1) * 0x10000 + PAGE))
    room = len(json.dumps(header(), separators=(",", ":"))) + 1 + 350  # the header, two records and part of a third fit
    real_write = os.write

    def full_disk(fd: int, data: Any) -> int:
        nonlocal room
        if room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real_write(fd, bytes(data[:room]))
        room -= n
        return n
    monkeypatch.setattr(eventlog.os, "write", full_disk)
    w.flush()
    w.write({"type": "end", "ts": 99})
    w.close()
    monkeypatch.undo()
    assert len(messages) == 1 and "No space left" in messages[0]
    assert path.read_bytes().endswith(b"\n")  # no torn tail left
    reader, body = _read(path)
    assert reader.damaged_count == 0 and not reader.ended and len(body) == w.lines_written - 1 >= 2
    assert any(f"ends at line {w.lines_written}" in warning for warning in reader.warnings)


def test_not_a_log(tmp_path: Path) -> None:
    path = tmp_path / "x"
    path.write_text('{"hello": 1}\n')
    with pytest.raises(LogError, match="not an mpxtrace log"):
        open_log(path)
    path.write_text("")
    with pytest.raises(LogError, match="empty"):
        open_log(path)


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(7 if depth < 3 else 5)
    if choice == 0:
        return rng.choice([0, 1, -1, (1 << 64) - 1, 1 << 70, rng.getrandbits(64)])
    if choice == 1:
        return rng.choice([True, False, None])
    if choice == 2:
        return rng.choice([0.5, 1e300, -0.0, float("inf"), float("nan")])
    if choice in (3, 4):
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0, 32), rng.randrange(0x80, 0x3000),
                                       0x1F600, 0xDC80, 0x22, 0x5C])) for _ in range(rng.randrange(8)))
    if choice == 5:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {f"k{i}\u00e9": _random_value(rng, depth + 1) for i in range(rng.randrange(4))}


def test_log_lines_are_what_json_dumps_writes() -> None:
    """The writer's encoder (the standard library's C scanner, made once) against json.dumps, on
    random records: big and negative integers, NaN and infinities, control characters, non-ASCII
    text, lone surrogates, quotes and backslashes, nesting."""
    rng = random.Random()
    for _ in range(2000):
        rec = {"type": "event", **{f"f{i}": _random_value(rng) for i in range(rng.randrange(1, 6))}}
        assert eventlog._encode_line(rec) == json.dumps(rec, separators=(",", ":"))


def test_log_encoder_falls_back_to_the_public_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the C scanner, or with one that writes anything else than json's pure-Python path,
    lines come from json's public encoder."""
    rec = {"type": "event", "comm": "w\u00e9\x1b", "n": 1 << 64, "ext": [1, 2]}
    monkeypatch.setattr(json.encoder, "c_make_encoder", None)
    without = eventlog._line_encoder()
    assert getattr(without, "__self__", None).__class__ is json.JSONEncoder
    assert without(rec) == json.dumps(rec, separators=(",", ":"))
    monkeypatch.setattr(json.encoder, "c_make_encoder", lambda *args: lambda obj, level: ["{}"])
    wrong = eventlog._line_encoder()
    assert getattr(wrong, "__self__", None).__class__ is json.JSONEncoder
    monkeypatch.setattr(json.encoder, "c_make_encoder", lambda *args: 1 / 0)  # another signature
    assert getattr(eventlog._line_encoder(), "__self__", None).__class__ is json.JSONEncoder
    assert getattr(eventlog._encode_line, "__self__", None) is None  # here the scanner is used
