"""The typed event decoder (fastevents, msgspec) returns a record only when the usual path —
json, then records.check_record — would accept the line, and then the very same record; and a
log reads the same (records, damaged lines and their messages) with it as without it."""
from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import msgspec  # noqa: F401 - in the test extra: the fast path is tested
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpxtrace import eventlog
from mpxtrace.fastevents import event_reader
from mpxtrace.records import EVENT_COMMON, EVENT_KINDS, RecordError, check_record

import fuzzing
from helpers import ev, header

A = 0x7F0000000000
NAMED = {"split": {"at": A + 4096}, "move": {"old_start": A + 0x100000, "old_end": A + 0x102000},
         "fork": {"parent_mm": 0x2000}, "grow": {"old_start": A - 4096}}
read_event = event_reader()
assert read_event is not None


def valid(kind: str, ext: bool = True) -> Dict[str, Any]:
    rec = ev(kind, 5, A, A + 8192, ext=(A, A + 16384) if ext else None, **NAMED.get(kind, {}))
    if kind == "move":
        rec.update(old_len=8192, dontunmap=True)
    return rec


def usual_path(line: bytes) -> Optional[Any]:
    """What the reader's usual path makes of a line: the record, or None when it is damaged."""
    try:
        rec = json.loads(line)
        check_record(rec)
    except (ValueError, RecursionError, RecordError):
        return None
    return rec


def agree(line: bytes) -> Optional[Any]:
    fast = read_event(line)  # type: ignore[misc]
    if fast is not None:
        usual = usual_path(line)
        assert usual is not None, line  # never accepts what the checks reject
        assert list(fast.items()) == list(usual.items()), line  # the same record, keys in the same order
    return fast


@pytest.mark.parametrize("kind", sorted(EVENT_KINDS))
@pytest.mark.parametrize("ext", [True, False])
def test_every_well_formed_event_takes_the_fast_path(kind: str, ext: bool) -> None:
    rec = valid(kind, ext)
    line = json.dumps(rec, separators=(",", ":")).encode()
    assert agree(line) == rec


@pytest.mark.parametrize("line", [
    b'{"type":"event","kind":"map","ts":1,"ts":-1,"mm":1,"tgid":1,"tid":1,"owner":true,"comm":"w","start":0,"end":1,"flags":1}',
    b'{"type":"event","kind":"map","ts":1,"mm":18446744073709551616,"tgid":1,"tid":1,"owner":true,"comm":"w","start":0,"end":1,"flags":1}',
    b'{"type":"event","kind":"map","ts":1,"mm":1,"tgid":1,"tid":1,"owner":true,"comm":"w","start":0,"end":1,"flags":1,"ext":[0,18446744073709551616]}',
    b'{"type":"event","kind":"map","ts":1.0,"mm":1,"tgid":1,"tid":1,"owner":true,"comm":"w","start":0,"end":1,"flags":1}',
    b'{"type":"event","kind":"map","ts":1,"mm":1,"tgid":4294967296,"tid":1,"owner":true,"comm":"w","start":0,"end":1,"flags":1}',
    b'{"type":"event","kind":"map","ts":1,"mm":1,"tgid":1,"tid":1,"owner":1,"comm":"w","start":0,"end":1,"flags":1}',
    b'{"type":"event","kind":"map","ts":1,"mm":1,"tgid":1,"tid":1,"owner":true,"comm":"\\u001b[2J","start":0,"end":1,"flags":1}',
    b'{"type":"event","kind":"map","ts":1,"mm":1,"tgid":1,"tid":1,"owner":true,"comm":"\\ud800","start":0,"end":1,"flags":1}',
    b'{"type":"event","kind":"map","ts":1,"mm":1,"tgid":1,"tid":1,"owner":true,"comm":"w","start":1,"end":1,"flags":1}',
    b'{"type":"event","kind":"move","ts":1,"mm":1,"tgid":1,"tid":1,"owner":true,"comm":"w","start":0,"end":1,"flags":1,"old_start":9,"old_end":8}',
    b'{"type":"event","kind":"task","ts":1,"mm":1,"tgid":1,"tid":1,"owner":true,"comm":"' + b"w" * 4097 + b'"}',
    b'{"type":"seed","kind":"map","ts":1,"mm":1,"tgid":1,"tid":1,"owner":true,"comm":"w","start":0,"end":1,"flags":1}',
])
def test_what_the_checks_reject_is_left_to_them(line: bytes) -> None:
    assert usual_path(line) is None
    assert read_event(line) is None  # type: ignore[misc]


def test_fields_a_kind_does_not_name_and_repeated_tags_take_the_usual_path() -> None:
    """The schema ignores them; the structs refuse them, so the usual path keeps the record whole."""
    line = json.dumps(dict(valid("map"), at="anything", note=[1])).encode()
    assert read_event(line) is None and usual_path(line) is not None  # type: ignore[misc]
    repeated_kind = json.dumps(valid("map")).encode().replace(b'"kind": "map"', b'"kind": "map", "kind": "unmap"')
    assert read_event(repeated_kind) is None and usual_path(repeated_kind)["kind"] == "unmap"  # type: ignore[index,misc]


BOUNDARIES = [-1, 0, 1, 2**32 - 1, 2**32, 2**63, 2**64 - 1, 2**64, True, False, 1.0, 0.5, None, "", "w", "\x1b",
              "\ud800", "\x7f", "é", "x" * 4096, "x" * 4097, [], {}, [1, 2], [2, 1], [1, 1], [0, 2**64 - 1], [0, 2**64],
              [-1, 5], [1, 2, 3], [1.0, 2], "map", "event", "teleport"]
json_values = st.sampled_from(BOUNDARIES) | st.recursive(
    st.none() | st.booleans() | st.integers(-2, 2) | st.integers(2**32 - 2, 2**32 + 1)
    | st.integers(2**64 - 2, 2**64 + 1) | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=4)
FIELDS = ["type", "kind", "ts", "mm", "tgid", "tid", "owner", "comm", "start", "end", "flags", "ext", "at", "old_start",
          "old_end", "parent_mm", "old_len", "dontunmap", "other"]


@settings(max_examples=3000, deadline=None)
@given(kind=st.sampled_from(sorted(EVENT_KINDS)), changes=st.lists(
    st.tuples(st.sampled_from(FIELDS), json_values, st.sampled_from(["set", "drop", "repeat"])), max_size=3),
    ascii_only=st.booleans())
def test_the_fast_path_agrees_with_the_checks(kind: str, changes: List[Tuple[str, Any, str]], ascii_only: bool) -> None:
    rec = valid(kind)
    repeats = []
    for field, value, how in changes:
        if how == "drop":
            rec.pop(field, None)
        elif how == "set":
            rec[field] = value
        else:  # the same key twice: json keeps the last
            repeats.append(f'"{field}":{json.dumps(value)}')
    line = json.dumps(rec, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    if repeats:
        line = line[:1] + ",".join(repeats).encode("utf-8", "surrogatepass") + (b"," if rec else b"") + line[1:]
    fast = agree(line)
    usual = usual_path(line)
    if fast is None and usual is not None:
        # refusing what the checks accept only costs time: allowed for what the structs do not
        # express (not an event, a field its kind does not name, a repeated key), never for a
        # record as the tracer writes it
        named = EVENT_KINDS[usual["kind"]].required + EVENT_KINDS[usual["kind"]].optional + EVENT_COMMON
        assert usual["type"] != "event" or repeats or set(usual) - {"type", "kind", *named}, line


def test_a_log_reads_alike_with_and_without_the_fast_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutated logs (tests/fuzzing.py): the same records, damaged lines, messages and end."""
    rng = random.Random(9)
    for case in range(150):
        path = tmp_path / f"log-{case}.ndjson"
        fuzzing.valid_log(rng, path)
        if case % 3:
            path.write_bytes(fuzzing.mutate(rng, path.read_bytes()))
        seen = []
        for fast in (read_event, None):
            monkeypatch.setattr(eventlog, "_read_event", fast)
            try:
                reader = eventlog.open_log(path)
            except eventlog.LogError as err:
                seen.append(("header", str(err)))
                continue
            body = list(reader.records())
            seen.append((body, reader.damaged, reader.damaged_count, reader.ended, reader.warnings, reader.lines))
        assert seen[0] == seen[1], path.read_bytes()[:2000]


def test_the_order_rules_hold_on_the_fast_path(tmp_path: Path) -> None:
    """A seed after an event, or anything after the end record, is damage either way."""
    seed = {"type": "seed", "ts": 1, "pid": 7, "comm": "x", "start": 0x1000, "end": 0x3000, "flags": 0x2000}
    path = tmp_path / "run.ndjson"
    lines = [header(), seed, valid("map"), seed, {"type": "end", "ts": 9}, valid("unmap")]
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in lines))
    assert eventlog._read_event is not None
    reader = eventlog.open_log(path)
    body = list(reader.records())
    assert [r["type"] for r in body] == ["seed", "event", "end"]
    assert ["seed after traced events" in reader.damaged[0], "after the end record" in reader.damaged[1]] == [True, True]


@pytest.mark.parametrize("kind", sorted(EVENT_KINDS))
@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_the_fast_path_draws_the_line_where_the_checks_do(kind: str, delta: int) -> None:
    """At the edges: an empty range, a move source of no bytes, 64- and 32-bit limits, `ext`."""
    base = valid(kind)
    cases = [dict(base, ts=2**64 - 1 + delta), dict(base, tgid=2**32 - 1 + delta), dict(base, tid=delta),
             dict(base, ext=[A, A + delta]), dict(base, ext=[2**64 - 2, 2**64 - 1 + delta])]
    if EVENT_KINDS[kind].has_range:
        cases += [dict(base, end=A + delta), dict(base, flags=2**64 - 1 + delta)]
    if kind == "move":
        cases += [dict(base, old_end=A + 0x100000 + delta), dict(base, old_len=2**64 - 1 + delta)]
    for rec in cases:
        line = json.dumps(rec).encode()
        assert (agree(line) is not None) == (usual_path(line) is not None), rec


@pytest.mark.parametrize("padding", [eventlog.MAX_LINE, 3 * eventlog.MAX_LINE])
def test_an_overlong_event_is_damage_on_the_fast_path_too(tmp_path: Path, padding: int) -> None:
    """A valid event padded past MAX_LINE: the part read (the cap) would decode, the line is still too long."""
    path = tmp_path / "run.ndjson"
    event = json.dumps(valid("map")).encode()
    path.write_bytes(json.dumps(header()).encode() + b"\n" + event + b" " * padding + b"\n"
                     + event + b"\n" + json.dumps({"type": "end", "ts": 9}).encode() + b"\n")
    reader = eventlog.open_log(path)
    body = list(reader.records())
    assert [r["type"] for r in body] == ["event", "end"] and reader.damaged_count == 1
    assert reader.damaged[0] == f"{path}:2: line longer than {eventlog.MAX_LINE} bytes"


def test_without_msgspec_there_is_no_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lab guests have no extra `fast`: the reader then takes the usual path for every line."""
    monkeypatch.setitem(__import__("sys").modules, "msgspec", None)  # `import msgspec` raises ImportError
    assert event_reader() is None
