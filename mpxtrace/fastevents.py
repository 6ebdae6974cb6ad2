"""Event lines of a log decoded and validated in one step, by msgspec (extra `fast`).

Nearly every line of a log is a kernel event.  ``event_reader()`` gives a function that
decodes such a line against typed structs made from the schema table (``records.EVENT_KINDS``
and ``FIELD_CHECKS``: one struct per kind, tagged by ``kind``; unknown fields refused) and
then checks in Python only what msgspec cannot say (64-bit upper bounds, printable text,
non-empty ranges).  It returns the record — the very dict ``eventlog`` would have made —
only when ``records.check_record`` would accept it; for anything else it returns None and
the reader's usual path decodes the line and says what is wrong.  So this may refuse more
than the schema does (a field a kind does not name, a value msgspec reads differently), never
less: tests/test_fastevents.py holds it to that.
"""
from __future__ import annotations

from operator import attrgetter
from typing import Annotated, Any, Callable, Dict, List, Literal, Optional, Set, Tuple, Union

from .events import Record
from .records import (EVENT_COMMON, EVENT_KINDS, FIELD_CHECKS, U32, U32_MAX, U64, U64_MAX, EventKind, _is_bool,
                      _is_range_pair, _is_text)

__all__ = ["event_reader", "EventReader"]

EventReader = Callable[[bytes], Optional[Record]]
_TEXT_SEEN_MAX = 4096  # process names found printable (a log repeats a few)


def event_reader() -> Optional[EventReader]:
    """The typed event decoder, or None without msgspec (the standard library path alone)."""
    try:
        import msgspec
    except ImportError:
        return None
    return _EventReader(msgspec).read


class _EventReader:
    def __init__(self, msgspec: Any) -> None:
        non_negative = Annotated[int, msgspec.Meta(ge=0)]  # msgspec bounds stop at int64: U64's top is checked here
        types: Dict[Any, Any] = {U64: non_negative, U32: Annotated[int, msgspec.Meta(ge=0, le=U32_MAX)],
                                 _is_bool: bool, _is_text: str, _is_range_pair: Tuple[non_negative, non_negative]}
        self._unset = msgspec.UNSET
        self._text_seen: Set[str] = set()
        structs: List[Any] = []
        self._checks: Dict[type, Callable[[Any], bool]] = {}
        for name, kind in EVENT_KINDS.items():
            fields: List[Any] = [("type", Literal["event"])]
            names = EVENT_COMMON + kind.required
            if any(FIELD_CHECKS[field] not in types for field in names + kind.optional):
                continue  # a kind with a field of another sort: its events take the usual path
            fields += [(field, types[FIELD_CHECKS[field]]) for field in names]
            fields += [(field, Union[types[FIELD_CHECKS[field]], msgspec.UnsetType], msgspec.UNSET)
                       for field in kind.optional]
            check = self._rest_of_check(name, kind)
            if check is None:
                continue
            struct = msgspec.defstruct(f"{name.title()}Event", fields, tag_field="kind", tag=name,
                                       forbid_unknown_fields=True, gc=False)
            structs.append(struct)
            self._checks[struct] = check
        self._typed = msgspec.json.Decoder(Union[tuple(structs)]).decode
        self._plain = msgspec.json.Decoder().decode

    def _rest_of_check(self, name: str, kind: EventKind) -> Optional[Callable[[Any], bool]]:
        """What check_record checks beyond the structs' types: U64 fields at most U64_MAX, the
        process name printable, ranges non-empty, a move's source not reversed.  None for a kind
        whose fields this does not know how to check (its events take the usual path)."""
        names = EVENT_COMMON + kind.required
        required_u64 = attrgetter(*[f for f in names if FIELD_CHECKS[f] is U64])
        optional_u64 = [f for f in kind.optional if FIELD_CHECKS[f] is U64]
        texts = [f for f in names + kind.optional if FIELD_CHECKS[f] is _is_text]
        pairs = [f for f in names + kind.optional if FIELD_CHECKS[f] is _is_range_pair]
        if texts != ["comm"] or pairs != ["ext"] or "ext" in names:
            return None
        has_range, is_move = kind.has_range, name == "move"
        unset, text_seen = self._unset, self._text_seen

        def check(event: Any) -> bool:
            if max(required_u64(event)) > U64_MAX:
                return False
            for field in optional_u64:
                value = getattr(event, field)
                if value is not unset and value > U64_MAX:
                    return False
            ext = event.ext
            if ext is not unset and not ext[0] < ext[1] <= U64_MAX:
                return False
            if has_range and event.end <= event.start:
                return False
            if is_move and event.old_end < event.old_start:
                return False
            comm = event.comm
            if comm in text_seen:
                return True
            if _is_text(comm) is not None:
                return False
            if len(text_seen) >= _TEXT_SEEN_MAX:
                text_seen.clear()
            text_seen.add(comm)
            return True
        return check

    def read(self, line: bytes) -> Optional[Record]:
        try:
            event = self._typed(line)
        except Exception:  # noqa: BLE001 - not a plainly valid event: the usual path decides what it is
            return None
        if not self._checks[type(event)](event):
            return None
        record: Record = self._plain(line)  # the same decoder as the usual path: the same dict, key order too
        return record
