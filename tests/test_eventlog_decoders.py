"""Both log decoders — msgspec's (extra `fast`) and the standard library's (lab guests) — read
every line alike: the same value, or the same `what is wrong`."""
from __future__ import annotations

import json
from typing import Any, Tuple

import msgspec  # noqa: F401 - in the test extra: both paths are tested
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpxtrace import eventlog
from mpxtrace.records import RecordError

TRICKY = [b'{"a":1}\n', b'{"a":1,"a":2}', b'"\\ud800"', b'"\\udc00\\ud800"', b'NaN', b'[Infinity]', b'1e400', b'-0.0',
          b'[' * 100_000 + b']' * 100_000, b'"\xed\xa0\x80"', b'"\xff"', b'\xff', b'\xef\xbb\xbf{}', b'"a\x01b"',
          b'18446744073709551616', b'-9223372036854775809', b'123456789012345678901234567890', b'{"a":1} x',
          b'[1,]', b'01', b'', b' \t\r\n', b'{"t":"\\u0000\\u001b"}', b'1.7976931348623157e308', b'1e-400',
          b'x' * (eventlog.MAX_LINE + 1)]


def both(line: bytes, monkeypatch: pytest.MonkeyPatch) -> Tuple[Any, Any]:
    assert eventlog._fast_decode is not None  # msgspec is installed: the first read takes it
    out = []
    for decoder in (eventlog._fast_decode, None):
        with monkeypatch.context() as patch:
            patch.setattr(eventlog, "_fast_decode", decoder)
            try:
                out.append(("value", eventlog._parse(line)))
            except RecordError as err:
                out.append(("error", str(err)))
    return out[0], out[1]


@pytest.mark.parametrize("line", TRICKY, ids=lambda line: repr(line[:20]))
def test_tricky_lines_read_alike(line: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, stdlib = both(line, monkeypatch)
    assert repr(fast) == repr(stdlib)  # repr: -0.0 and 0.0, nan, are told apart


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(value=json_values, ascii_only=st.booleans(), cut=st.integers(0, 40), flip=st.integers(0, 255))
def test_any_json_and_its_damage_read_alike(value: Any, ascii_only: bool, cut: int, flip: int) -> None:
    line = json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    damaged = bytearray(line[:-cut] if cut < len(line) else line)
    if damaged:
        damaged[flip % len(damaged)] ^= flip
    for case in (line, bytes(damaged)):
        with pytest.MonkeyPatch.context() as patch:
            fast, stdlib = both(case, patch)
        assert repr(fast) == repr(stdlib), case
