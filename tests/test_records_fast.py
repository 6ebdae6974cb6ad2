"""The quick test for event records (records._PLAINLY_VALID) never accepts what the
field-by-field checks reject, and accepts the well-formed events it is there for."""
from __future__ import annotations

from typing import Any, Dict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mpxtrace import records
from mpxtrace.records import EVENT_KINDS, RecordError, check_record

from helpers import ev

A = 0x7F0000000000
NAMED = {"split": {"at": A + 4096}, "move": {"old_start": A + 0x100000, "old_end": A + 0x102000},
         "fork": {"parent_mm": 0x2000}, "grow": {"old_start": A - 4096}}


def valid(kind: str) -> Dict[str, Any]:
    rec = ev(kind, 5, A, A + 8192, ext=(A, A + 16384), **NAMED.get(kind, {}))
    if kind == "move":
        rec.update(old_len=8192, dontunmap=True)
    return rec


def slow_verdict(rec: Dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> bool:
    with monkeypatch.context() as patch:
        patch.setattr(records, "_PLAINLY_VALID", {})
        try:
            check_record(rec)
        except RecordError:
            return False
    return True


@pytest.mark.parametrize("kind", sorted(EVENT_KINDS))
def test_well_formed_events_take_the_quick_path(kind: str) -> None:
    rec = valid(kind)
    assert records._PLAINLY_VALID[kind](rec)
    check_record(rec)


BOUNDARIES = [-1, 0, 1, 2**32 - 1, 2**32, 2**64 - 1, 2**64, True, False, 1.0, None, "", "w", "\x1b", [], {}, [1, 2],
              [2, 1], [0, 2**64], [-1, 5]]
json_values = st.sampled_from(BOUNDARIES) | st.recursive(
    st.none() | st.booleans() | st.integers(-2, 2) | st.integers(2**32 - 2, 2**32 + 1)
    | st.integers(2**64 - 2, 2**64 + 1) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=4)


@settings(max_examples=1500, deadline=None)
@given(kind=st.sampled_from(sorted(EVENT_KINDS)), field=st.sampled_from(
    ["ts", "mm", "tgid", "tid", "owner", "comm", "start", "end", "flags", "ext", "at", "old_start", "old_end",
     "parent_mm", "old_len", "dontunmap", "kind"]), value=json_values | st.just(records), drop=st.booleans())
def test_quick_path_agrees_with_the_field_checks(kind: str, field: str, value: Any, drop: bool) -> None:
    rec = valid(kind)
    if drop:
        rec.pop(field, None)
    elif value is not records:
        rec[field] = value
    else:
        rec[field] = rec.get("start", 0) - 1 if field in ("end", "old_end") else rec.get(field)
    plainly_valid = records._PLAINLY_VALID.get(rec["kind"]) if isinstance(rec.get("kind"), str) else None
    quick = plainly_valid is not None and plainly_valid(rec)
    with pytest.MonkeyPatch.context() as patch:
        slow = slow_verdict(rec, patch)
    assert not quick or slow, rec
    try:
        check_record(rec)
        assert slow, rec
    except RecordError:
        assert not slow, rec


@pytest.mark.parametrize("kind", sorted(name for name, kind in EVENT_KINDS.items() if kind.has_range))
@pytest.mark.parametrize("delta", [-1, 0, 1])
def test_the_quick_path_draws_the_line_where_the_checks_do(kind: str, delta: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """At the edges: an empty range, a move source of no bytes, a value at 2**64 - 1 + delta."""
    cases = [dict(valid(kind), end=A + delta), dict(valid(kind), flags=2**64 - 1 + delta)]
    if kind == "move":
        cases.append(dict(valid(kind), old_end=A + 0x100000 + delta))
    for rec in cases:
        assert records._PLAINLY_VALID[kind](rec) == slow_verdict(rec, monkeypatch), rec
