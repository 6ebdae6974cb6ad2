"""The record schema: one home for every record type mpxtrace writes or reads back.

Log records (``--log``, replayed by ``report``): ``header``, ``seed``, ``event``, ``lost``,
``proc_exit``, ``resident``, ``drift``, ``resync``, ``tallies``, ``end``.  Output records (``--json``): ``attached``, ``interval``, ``snapshot``,
``summary``, ``drift``, ``lost_events``, ``targets_exited``, ``log_stopped``.

A log is input like any other: ``check_header``/``LogChecker`` validate each record read back
(types, ranges, order) before it reaches the model, and say ``file:line: what is wrong``.
Event kinds are a table (``EVENT_KINDS``): a new kind is one line there, naming what the
kernel's generic ``aux``/``aux2`` words mean for it.  Version 1 logs wrote those words as
they were; they are still read, renamed on the way in.

Text from the kernel (process names, paths) is bytes; ``kernel_text`` turns it into a str
that never fails to decode nor to print (undecodable bytes and control characters are
backslash-escaped, never silently replaced).
"""
from __future__ import annotations

import math
import re
from bisect import bisect_left
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Set, Tuple

__all__ = ["RecordError", "EventKind", "EVENT_KINDS", "FIELD_CHECKS", "LOG_TYPES", "OUTPUT_TYPES",
           "check_header", "check_record", "LogChecker", "rename_version1_fields", "AUX_WORDS",
           "NAMED_FIELDS_VERSION", "kernel_text", "printable", "U64_MAX", "MAX_INTERVAL_NS"]

U64_MAX = (1 << 64) - 1
U32_MAX = (1 << 32) - 1
MAX_INTERVAL_NS = 366 * 86400 * 10**9  # a year: more is a typo, and keeps timeline arithmetic sane
MAX_TEXT = 4096  # a comm is 15 bytes, a source name a word; anything longer is not ours

LOG_TYPES = ("header", "seed", "event", "lost", "proc_exit", "resident", "drift", "resync", "tallies", "end")
OUTPUT_TYPES = ("attached", "interval", "snapshot", "summary", "drift", "lost_events", "targets_exited",
                "log_stopped")


class RecordError(ValueError):
    """A record that is not what the schema says; the message says which field and why."""


# -- text from the kernel -----------------------------------------------------------------------
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _escape(match: "re.Match[str]") -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """`text` with control characters and lone surrogates backslash-escaped (a process can
    name itself ``\\x1b]...`` to drive the terminal that shows it)."""
    return _UNPRINTABLE.sub(_escape, text)


def kernel_text(raw: bytes) -> str:
    """Bytes the kernel gave us (a comm, a path) as printable text; decoding never fails:
    invalid UTF-8 becomes ``\\xff``-style escapes, control characters too."""
    return printable(raw.decode("utf-8", "backslashreplace"))


# -- field checks -----------------------------------------------------------------------------
Check = Callable[[Any], Optional[str]]  # None when fine, else what is wrong


def _int_in(low: int, high: int) -> Check:
    def check(value: Any) -> Optional[str]:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"must be an integer, not {_kind_of(value)}"
        if not low <= value <= high:
            return f"{value} is out of range [{low}, {high}]"
        return None
    return check


def _is_bool(value: Any) -> Optional[str]:
    return None if isinstance(value, bool) else f"must be true or false, not {_kind_of(value)}"


def _is_text(value: Any) -> Optional[str]:
    if not isinstance(value, str):
        return f"must be a string, not {_kind_of(value)}"
    if len(value) > MAX_TEXT:
        return f"is {len(value)} characters long (at most {MAX_TEXT})"
    if _UNPRINTABLE.search(value):
        return "holds control characters or lone surrogates (mpxtrace escapes them when writing)"
    return None


def _is_range_pair(value: Any) -> Optional[str]:
    if not isinstance(value, list) or len(value) != 2:
        return "must be a [start, end] pair"
    for item in value:
        problem = U64(item)
        if problem:
            return problem
    if value[1] <= value[0]:
        return f"is empty or reversed ([{value[0]:#x}, {value[1]:#x}))"
    return None


def _list_of(item_check: Check, limit: int = 4096) -> Check:
    def check(value: Any) -> Optional[str]:
        if not isinstance(value, list):
            return f"must be a list, not {_kind_of(value)}"
        if len(value) > limit:
            return f"has {len(value)} items (at most {limit})"
        for i, item in enumerate(value):
            problem = item_check(item)
            if problem:
                return f"item {i} {problem}"
        return None
    return check


def _share(value: Any) -> Optional[str]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"must be a number, not {_kind_of(value)}"
    if not (math.isfinite(value) and 0 <= value <= 1):
        return f"{value} is not a share between 0 and 1"
    return None


def _one_of(*allowed: str) -> "Check":
    def check(value: Any) -> Optional[str]:
        return None if value in allowed else f"must be one of {', '.join(allowed)}, not {value!r:.40}"
    return check


def _hex_or_null(value: Any) -> Optional[str]:
    if value is None or (isinstance(value, str) and re.fullmatch("0x[0-9a-f]{1,16}", value)):
        return None
    return "must be a hexadecimal address string or null"


def _object(required: Dict[str, "Check"], optional: Dict[str, "Check"]) -> "Check":
    def check(value: Any) -> Optional[str]:
        if not isinstance(value, dict):
            return f"must be an object, not {_kind_of(value)}"
        for name, field_check in list(required.items()) + list(optional.items()):
            if name not in value:
                if name in required:
                    return f"has no `{name}`"
                continue
            problem = field_check(value[name])
            if problem:
                return f"`{name}` {problem}"
        return None
    return check


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "an object"}.get(type(value), type(value).__name__)


U64 = _int_in(0, U64_MAX)
U32 = _int_in(0, U32_MAX)
PID = _int_in(1, U32_MAX)
COUNT = _int_in(1, U64_MAX)
LOST_SLOTS = 4096  # lostspaces.SLOTS (records does not import the tracer's side)
_SLOT = _int_in(0, LOST_SLOTS - 1)
TALLY_BUCKETS = 64  # MPXTRACE_TALLY_BUCKETS: a size's bit length, capped


def _bucket_count(value: Any) -> Optional[str]:
    if not isinstance(value, list) or len(value) != 2:
        return "must be a [bucket, count] pair"
    return _int_in(0, TALLY_BUCKETS - 1)(value[0]) or COUNT(value[1])


_SIZES = _object({"bytes": U64, "log2": _list_of(_bucket_count, limit=TALLY_BUCKETS)}, {})
_LIFETIMES = _object({"ns": U64, "log2": _list_of(_bucket_count, limit=TALLY_BUCKETS)}, {})


def _emitted(value: Any) -> Optional[str]:
    if not isinstance(value, dict):
        return f"must be an object, not {_kind_of(value)}"
    for name, count in value.items():
        if name not in EVENT_KINDS:
            return f"names an unknown event kind {name!r:.40}"
        problem = U64(count)
        if problem:
            return f"`{name}` {problem}"
    return None

def _slot_counts(value: Any) -> Optional[str]:
    """`lost.slots`: [[slot, count], ...], slots ascending (lostspaces.py: whose events were lost)."""
    if not isinstance(value, list) or len(value) > LOST_SLOTS:
        return f"must be a list of at most {LOST_SLOTS} [slot, count] pairs"
    previous = -1
    for item in value:
        if not isinstance(item, list) or len(item) != 2:
            return "must hold [slot, count] pairs"
        problem = _SLOT(item[0]) or COUNT(item[1])
        if problem:
            return problem
        if item[0] <= previous:
            return f"slot {item[0]} is not after {previous}: slots must ascend"
        previous = item[0]
    return None


# Every field a log record may carry, and what it must hold.
FIELD_CHECKS: Dict[str, Check] = {
    "ts": U64, "mm": U64, "tgid": U32, "tid": U32, "owner": _is_bool, "comm": _is_text, "kind": _is_text,
    "start": U64, "end": U64, "flags": U64, "at": U64, "old_start": U64, "old_end": U64, "parent_mm": U64,
    "ext": _is_range_pair,
    "old_len": U64, "dontunmap": _is_bool, "pid": PID, "source": _is_text, "count": COUNT, "slots": _slot_counts,
    "vma": _is_range_pair, "expected": _one_of("absent", "present"), "seen": _one_of("absent", "present"),
    # resync after lost events (mpxtrace/resync.py): in `within`, the process's flagged VMAs are `vmas`
    "within": _is_range_pair, "vmas": _list_of(_is_range_pair, limit=1 << 16), "gone": _is_bool,
    # resident samples (mpxtrace/resident.py)
    "mem_total_bytes": U64, "flagged_resident_bytes": U64, "ram_share": _share, "processes_sampled": U32,
    "sample_ns": U64,
    "processes": _list_of(_object(
        {"pid": PID, "resident_bytes": U64, "smaps_flagged_bytes": U64, "rss_bytes": U64, "vsize_bytes": U64,
         "rss_share": _share, "vsize_share": _share}, {"mm": _hex_or_null}), limit=1 << 20),
    # the kernel's own aggregates (mpxtrace/tallies.py): events emitted by kind, mmap/unmap sizes
    "emitted": _emitted, "mapped": _SIZES, "destroyed": _SIZES, "lifetimes": _LIFETIMES,
}


@dataclass(frozen=True)
class EventKind:
    """What one event kind carries beyond the common fields (type, kind, ts, mm, tgid, tid, owner, comm)."""

    required: Tuple[str, ...] = ()
    optional: Tuple[str, ...] = ()
    # what the kernel event's generic `aux`, `aux2` words mean for this kind: the names the
    # decoder gives them, and that version 1 logs (which wrote `aux`, `aux2`) are read with
    aux_names: Tuple[str, ...] = ()

    @property
    def has_range(self) -> bool:
        return "start" in self.required


AUX_WORDS = ("aux", "aux2")  # the kernel event's generic words (mpxtrace_event.h); version 1 logs wrote them so
NAMED_FIELDS_VERSION = 2  # the first log version that names them per kind (EventKind.aux_names)
_RANGE = ("start", "end", "flags")
EVENT_COMMON = ("ts", "mm", "tgid", "tid", "owner", "comm")
# `ext` (the VMA the change ended in) may accompany any kind: the decoder adds it when the kernel set it.
EVENT_KINDS: Dict[str, EventKind] = {
    "map": EventKind(_RANGE, ("ext",)),
    "flags": EventKind(_RANGE, ("ext",)),
    "split": EventKind(_RANGE + ("at",), ("ext",), aux_names=("at",)),  # the new boundary
    "unmap": EventKind(_RANGE, ("ext",)),
    # [old_start, old_end): the bytes that moved to `start`
    "move": EventKind(_RANGE + ("old_start", "old_end"), ("ext", "old_len", "dontunmap"),
                      aux_names=("old_start", "old_end")),
    "fork": EventKind(_RANGE + ("parent_mm",), ("ext",), aux_names=("parent_mm",)),
    "task": EventKind((), ("ext",)),
    "mm_exit": EventKind((), ("ext",)),
    # old_start: where the range mremap() grew starts ([old_start, start) before, [old_start, end) after)
    "grow": EventKind(_RANGE, ("ext", "old_start"), aux_names=("old_start",)),
    "sync": EventKind(_RANGE, ("ext",)),
}

# Log record types other than header and event: required and optional fields.
_OTHER_TYPES: Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]] = {
    "seed": (("ts", "pid", "comm", "start", "end", "flags"), ("mm",)),
    "lost": (("ts", "source", "count"), ("slots",)),  # slots: log version 4
    "proc_exit": (("ts", "pid"), ()),
    "end": (("ts",), ()),
    "drift": (("ts", "pid", "vma", "expected", "seen"), ()),  # --verify: the model and smaps disagree (verify.py)
    "resync": (("ts", "pid", "within", "vmas"), ("comm", "mm", "gone")),
    "tallies": (("ts", "emitted", "mapped", "destroyed", "lifetimes"), ()),
    "resident": (("ts", "mem_total_bytes", "flagged_resident_bytes", "ram_share", "processes_sampled", "sample_ns",
                  "processes"), ("source",)),
}


def _fields(rec: Mapping[str, Any], what: str, required: Sequence[str], optional: Sequence[str] = ()) -> None:
    for name in required:
        if name not in rec:
            raise RecordError(f"{what} without `{name}`")
    for name in tuple(required) + tuple(optional):
        if name in rec:
            problem = FIELD_CHECKS[name](rec[name])
            if problem:
                raise RecordError(f"`{name}` {problem}")


def check_record(rec: Any) -> None:
    """Raise RecordError unless `rec` is a well-formed log record other than the header."""
    if not isinstance(rec, dict):
        raise RecordError(f"a record must be a JSON object, not {_kind_of(rec)}")
    rtype = rec.get("type")
    if not isinstance(rtype, str):
        raise RecordError("record without a type" if rtype is None else f"`type` must be a string, not {_kind_of(rtype)}")
    if rtype == "event":
        kind_name = rec.get("kind")
        plainly_valid = _PLAINLY_VALID.get(kind_name) if type(kind_name) is str else None
        if plainly_valid is not None and plainly_valid(rec):
            return
        kind = EVENT_KINDS.get(kind_name) if isinstance(kind_name, str) else None
        if kind is None:
            raise RecordError(f"unknown event kind {kind_name!r} (known: {', '.join(EVENT_KINDS)})")
        _fields(rec, f"{kind_name} event", EVENT_COMMON + kind.required, kind.optional)
        if kind.has_range:
            _nonempty(rec)
        if kind_name == "move" and rec["old_end"] < rec["old_start"]:
            raise RecordError(f"move source [{rec['old_start']:#x}, {rec['old_end']:#x}) is reversed")
    elif rtype in _OTHER_TYPES:
        required, optional = _OTHER_TYPES[rtype]
        _fields(rec, f"{rtype} record", required, optional)
        if rtype == "seed":
            _nonempty(rec)
        elif rtype == "resync":
            _resync_ranges(rec)
        elif rtype == "tallies":
            _tallies_add_up(rec)
    elif rtype == "header":
        raise RecordError("a second header (a log has exactly one, on line 1)")
    elif rtype in OUTPUT_TYPES:
        raise RecordError(f"a `{rtype}` record is --json output, not a log record (give report the --log file)")
    else:
        raise RecordError(f"unknown record type {rtype!r}")


def _plainly_valid(kind_name: str, kind: EventKind) -> Callable[[Mapping[str, Any]], bool]:
    """A quick test for events of one kind: True only when every check_record check would pass,
    False otherwise — then the field-by-field checks run and say what is wrong.  `report`
    validates a million events a minute of heavy tracing: this is most of its validation cost,
    so the fields every event has are read at once and tested without a call each (an int
    in [0, 2**64) is one whose type is int and whose bits above 63 are 0)."""
    # what the inlined tests below assume of the table
    assert [FIELD_CHECKS[name] for name in EVENT_COMMON] == [U64, U64, U32, U32, _is_bool, _is_text]
    assert all(FIELD_CHECKS[name] is U64 for name in _RANGE)
    has_range, is_move = kind.has_range, kind_name == "move"
    own = [name for name in kind.required if name not in _RANGE]  # split's `at`, move's `old_start`...
    own_u64: Optional[Callable[[Mapping[str, Any]], Tuple[Any, ...]]] = None
    if own and all(FIELD_CHECKS[name] is U64 for name in own):
        own_u64 = itemgetter(*own, *own[:1])  # always a tuple, even for one name
    others = [name for name in own + list(kind.optional) if name != "ext" and not (own_u64 and name in own)]

    def check(rec: Mapping[str, Any]) -> bool:
        try:
            ts, mm, tgid, tid, owner, comm = _COMMON_FIELDS(rec)
            if has_range:
                start, end, flags = _RANGE_FIELDS(rec)
            if own_u64 is not None:
                values = own_u64(rec)
        except KeyError:
            return False
        if not (type(ts) is int and type(mm) is int and type(tgid) is int and type(tid) is int
                and (ts | mm) >> 64 == 0 and (tgid | tid) >> 32 == 0 and owner.__class__ is bool):
            return False
        if has_range and not (type(start) is int and type(end) is int and type(flags) is int
                              and (start | end | flags) >> 64 == 0 and start < end):
            return False
        if own_u64 is not None:
            for value in values:
                if type(value) is not int or value >> 64:  # negative: -1
                    return False
        if type(comm) is not str:
            return False
        if comm not in _TEXT_SEEN:
            if _is_text(comm) is not None:
                return False
            if len(_TEXT_SEEN) >= 4096:
                _TEXT_SEEN.clear()
            _TEXT_SEEN.add(comm)
        ext = rec.get("ext", _ALL_RIGHT)
        if ext is not _ALL_RIGHT and not (type(ext) is list and len(ext) == 2 and type(ext[0]) is int
                                    and type(ext[1]) is int and 0 <= ext[0] < ext[1] <= U64_MAX):
            return False
        if is_move and rec["old_end"] < rec["old_start"]:
            return False
        return not others or all(FIELD_CHECKS[name](rec[name]) is None for name in others if name in rec)
    return check


_COMMON_FIELDS = itemgetter(*EVENT_COMMON)
_RANGE_FIELDS = itemgetter(*_RANGE)
_ONLY_INT = {int}
_ALL_RIGHT = [0, 1]  # stands for an absent `ext`
_TEXT_SEEN: Set[str] = set()  # process names already found printable (a log repeats a few)
_PLAINLY_VALID = {name: _plainly_valid(name, kind) for name, kind in EVENT_KINDS.items()}


def _resync_ranges(rec: Mapping[str, Any]) -> None:
    """A resync's VMAs are ascending, disjoint and inside its `within` range."""
    cursor, (lo, hi) = rec["within"][0], rec["within"]
    for start, end in rec["vmas"]:
        if start < cursor or end > hi:
            raise RecordError(f"resync VMA [{start:#x}, {end:#x}) overlaps the one before it or lies outside "
                              f"[{lo:#x}, {hi:#x})")
        cursor = end


def _tallies_add_up(rec: Mapping[str, Any]) -> None:
    """A histogram's buckets ascend, sizes count exactly the events of their kind, and no more
    lifetimes than destroyed VMAs."""
    for part, kind in (("mapped", "map"), ("destroyed", "unmap"), ("lifetimes", "unmap")):
        buckets = [bucket for bucket, _ in rec[part]["log2"]]
        if buckets != sorted(set(buckets)):
            raise RecordError(f"`{part}` buckets are not ascending and distinct")
        counted, emitted = sum(count for _, count in rec[part]["log2"]), rec["emitted"].get(kind, 0)
        if counted != emitted and (part != "lifetimes" or counted > emitted):
            raise RecordError(f"`{part}` holds {counted} values but {emitted} {kind} events were emitted")


def _nonempty(rec: Mapping[str, Any]) -> None:
    if rec["end"] <= rec["start"]:
        raise RecordError(f"empty or reversed range [{rec['start']:#x}, {rec['end']:#x})")


def check_header(rec: Any, log_format: str, max_version: int) -> None:
    """Raise RecordError unless `rec` is a header this mpxtrace can replay."""
    if not isinstance(rec, dict) or rec.get("type") != "header" or rec.get("format") != log_format:
        raise RecordError("not an mpxtrace log header (was it written by `mpxtrace trace --log`?)")
    version = rec.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise RecordError(f"header `version` must be a positive integer, not {version!r}")
    if version > max_version:
        raise RecordError(f"log version {version} is newer than this mpxtrace understands; upgrade mpxtrace")
    checks: Dict[str, Check] = {"start_ns": U64, "interval_ns": _int_in(1, MAX_INTERVAL_NS), "mask": COUNT}
    for name, check in checks.items():
        if name not in rec:
            raise RecordError(f"header without `{name}`")
        problem = check(rec[name])
        if problem:
            raise RecordError(f"header `{name}` {problem}")
    optional: Dict[str, Check] = {"names": _list_of(_is_text), "mnemonics": _list_of(_is_text),
                                  "pids": _list_of(PID), "tracer_pid": U32}
    for name, check in optional.items():
        problem = check(rec[name]) if name in rec else None
        if problem:
            raise RecordError(f"header `{name}` {problem}")


def rename_version1_fields(rec: Any) -> None:
    """A version 1 event record in today's names, in place: its generic `aux`, `aux2` take the
    kind's names (split `at`; move `old_start`, `old_end`; fork `parent_mm`; grow `old_start`)."""
    for word, name in _aux_names(rec):
        if word in rec:
            rec[name] = rec.pop(word)


def _in_version1_words(problem: RecordError, rec: Any) -> RecordError:
    """`problem` with the kind's names as a version 1 log spells them (`aux` (at) ...)."""
    message = str(problem)
    for word, name in _aux_names(rec):
        message = message.replace(f"`{name}`", f"`{word}` ({name})")
    return RecordError(message)


def _aux_names(rec: Any) -> List[Tuple[str, str]]:
    """(generic word, the kind's name) for each aux word of an event record of a known kind."""
    kind_name = rec.get("kind") if isinstance(rec, dict) and rec.get("type") == "event" else None
    kind = EVENT_KINDS.get(kind_name) if isinstance(kind_name, str) else None
    return list(zip(AUX_WORDS, kind.aux_names)) if kind else []


class LogChecker:
    """Checks records in log order: each record, and the order rules between them.

    Seeds (the smaps picture at start) come before anything the tracer applied later and
    never overlap within one address space; nothing follows the end record.  Records of a
    version 1 log are first renamed to today's fields (``rename_version1_fields``).
    """

    def __init__(self, log_version: int = NAMED_FIELDS_VERSION) -> None:
        self.version1 = log_version < NAMED_FIELDS_VERSION
        self.ended = False
        self._seeding = True
        # per address space (mm, or pid when the seed had no mm): accepted seeds, sorted and disjoint
        self._seeded: Dict[Tuple[str, int], Tuple[List[int], List[int]]] = {}

    def check(self, rec: Any) -> None:
        if self.version1:
            rename_version1_fields(rec)
            try:
                check_record(rec)
            except RecordError as problem:
                raise _in_version1_words(problem, rec) from None
        else:
            check_record(rec)
        if self.ended:
            raise RecordError(f"a `{rec['type']}` record after the end record")
        if rec["type"] == "seed":
            if not self._seeding:
                raise RecordError("a seed after traced events (seeds are the picture at start)")
            self._add_seed(rec)
        else:
            self._seeding = False
            self._seeded.clear()
        if rec["type"] == "end":
            self.ended = True

    def passed_event(self) -> None:
        """An event record found valid elsewhere (fastevents): the order rules as check() applies them."""
        self._seeding = False
        if self._seeded:
            self._seeded.clear()

    def _add_seed(self, rec: Mapping[str, Any]) -> None:
        key = ("mm", rec["mm"]) if "mm" in rec else ("pid", rec["pid"])
        starts, ends = self._seeded.setdefault(key, ([], []))
        start, end = rec["start"], rec["end"]
        i = bisect_left(starts, end)  # seeds starting before our end: only the last may reach into us
        if i > 0 and ends[i - 1] > start:
            raise RecordError(f"seed [{start:#x}, {end:#x}) overlaps an earlier seed "
                              f"[{starts[i - 1]:#x}, {ends[i - 1]:#x}) of the same process")
        starts.insert(i, start)
        ends.insert(i, end)
