"""The contract between bpf/ and the Python side, read from both: the enums of
mpxtrace_event.h against mpxtrace/events.py, and every program and -D name the planner and
build_config may use against mpxtrace.bpf.c.  Nothing here lists kinds or hooks by hand."""
from __future__ import annotations

import os
import re
from typing import Dict, List, Set, Tuple

import pytest

from mpxtrace import events
from mpxtrace.events import COUNTERS, Kind
from mpxtrace.flags import resolve_flags
from mpxtrace.kernel.hooks import HOOKS, OPTIONAL_FIELDS, STRUCT_FIELDS, VMG_FIELDS
from mpxtrace.program import bpf_dir, build_config

from fake_kernel import KERNEL_510, KERNEL_612, VMG, features


def c_source(name: str) -> str:
    """A file of bpf/ without its comments (a name in a comment is not a use)."""
    text = (bpf_dir() / name).read_text()
    return re.sub(r"/\*.*?\*/|//[^\n]*", " ", text, flags=re.S)


def c_enum(source: str, name: str) -> List[Tuple[str, int]]:
    """Enumerators of `enum name` in order, with their values (explicit or implied)."""
    match = re.search(rf"\benum\s+{name}\s*{{(.*?)}}", source, re.S)
    assert match, f"enum {name} not found in bpf/"
    out: List[Tuple[str, int]] = []
    for item in (part.strip() for part in match.group(1).split(",")):
        if not item:
            continue
        ident, _, value = (s.strip() for s in item.partition("="))
        out.append((ident, int(value, 0) if value else (out[-1][1] + 1 if out else 0)))
    return out


def without_prefix(entries: List[Tuple[str, int]]) -> Dict[str, int]:
    """EV_MAP -> MAP: drop the prefix, up to its last underscore, that every name shares."""
    common = os.path.commonprefix([ident for ident, _ in entries])
    cut = common.rfind("_") + 1
    return {ident[cut:]: value for ident, value in entries}


def test_event_kinds_match_enum_mpxtrace_kind() -> None:
    c_kinds = without_prefix(c_enum(c_source("mpxtrace_event.h"), "mpxtrace_kind"))
    assert c_kinds == {kind.name: kind.value for kind in Kind}


def test_counters_match_enum_mpxtrace_counter() -> None:
    c_counters = without_prefix(c_enum(c_source("mpxtrace_event.h"), "mpxtrace_counter"))
    size = c_counters.pop("MAX")  # the array size, not a counter
    assert c_counters == {name.upper(): index for index, name in enumerate(COUNTERS)}
    assert size == len(COUNTERS)


def test_tallies_match_enum_mpxtrace_tally() -> None:
    from mpxtrace import records, tallies
    header = c_source("mpxtrace_event.h")
    c_tallies = without_prefix(c_enum(header, "mpxtrace_tally"))
    assert c_tallies.pop("MAX") == tallies.SIZE
    assert c_tallies == tallies.INDEX
    buckets = re.search(r"#define\s+MPXTRACE_TALLY_BUCKETS\s+(\d+)", header)
    assert buckets and int(buckets.group(1)) == tallies.BUCKETS == records.TALLY_BUCKETS
    # every kind has its own count, and each histogram its buckets, without overlap
    assert max(Kind) < tallies.INDEX["MAP_BYTES"]
    assert tallies.INDEX["MAP_LOG2"] + tallies.BUCKETS == tallies.INDEX["UNMAP_LOG2"]
    assert tallies.INDEX["UNMAP_LOG2"] + tallies.BUCKETS == tallies.INDEX["LIFETIME_NS"]
    assert tallies.INDEX["LIFETIME_LOG2"] + tallies.BUCKETS == tallies.SIZE


def test_shared_counters_are_added_atomically() -> None:
    """BCC's map.increment() is a load and a store (iovisor/bcc#2490): on a map every CPU shares,
    two CPUs counting at once lose counts (the lab's tallies test saw lost events go unreported)."""
    program = c_source("mpxtrace.bpf.c")
    assert ".increment(" not in program
    assert program.count("__sync_fetch_and_add") >= 2  # count_loss() and tally()


def test_event_context_bits_match() -> None:
    header = c_source("mpxtrace_event.h")
    c_bits = {name: int(value, 0) for name, value in re.findall(r"#define\s+EV(CTX_\w+)\s+(\w+)", header)}
    assert c_bits, "no EVCTX_* bits in mpxtrace_event.h"
    assert c_bits == {name: getattr(events, name, None) for name in c_bits}


def test_every_kprobe_and_kretprobe_program_the_planner_attaches_exists() -> None:
    program = c_source("mpxtrace.bpf.c")
    wanted = {name for spec in HOOKS for name in (spec.entry, spec.exit) if name}
    defined = {name for name in wanted if re.search(rf"\bint\s+{name}\s*\(", program)}
    assert wanted - defined == set(), "attach_kprobe/attach_kretprobe would find no such function"


def enclosing_conditions(program: str) -> Dict[str, List[str]]:
    """Each function defined in `program`: the #if/#ifdef conditions it is compiled under."""
    stack: List[str] = []
    out: Dict[str, List[str]] = {}
    for line in program.splitlines():
        directive = re.match(r"\s*#\s*(ifdef|ifndef|if|else|elif|endif)\b(.*)", line)
        if directive:
            word, rest = directive.groups()
            if word in ("ifdef", "ifndef", "if"):
                stack.append(f"{word} {rest.strip()}")
            elif word == "endif":
                stack.pop()
            else:
                stack[-1] = f"{word} {rest.strip()}"
            continue
        defined = re.match(r"\s*int\s+(\w+)\s*\(", line)
        if defined:
            out[defined.group(1)] = list(stack)
    return out


def test_each_kprobe_program_is_compiled_only_where_its_hook_attaches_by_kprobe() -> None:
    conditions = enclosing_conditions(c_source("mpxtrace.bpf.c"))
    users: Dict[str, Set[str]] = {}  # program -> the hooks that attach it
    for spec in HOOKS:
        for name in (spec.entry, spec.exit):
            if name:
                users.setdefault(name, set()).add(spec.key)
    for name, hooks in users.items():
        guard = " ".join(conditions[name])
        named = set(re.findall(r"\bKPROBE_HOOK_(\w+)", guard))
        assert named == hooks, f"{name} is compiled under {guard!r}: want KPROBE_HOOK_ of {sorted(hooks)}"


def test_enclosing_conditions_follow_nesting() -> None:
    source = "#ifdef A\nint f(void)\n#if defined(B) || defined(C)\nint g(void)\n#endif\n#else\nint h(void)\n#endif\nint i(void)\n"
    assert enclosing_conditions(source) == {"f": ["ifdef A"], "g": ["ifdef A", "if defined(B) || defined(C)"],
                                            "h": ["else "], "i": []}


def fentry_guards(program: str) -> Set[str]:
    return set(re.findall(r"(?:#\s*ifdef\s+|defined\s*\(\s*)FENTRY_(\w+)", program))


def test_every_symbol_the_planner_may_fentry_has_a_program() -> None:
    may_fentry = {symbol for spec in HOOKS if spec.fentry_ok for symbol in spec.symbols}
    assert may_fentry - fentry_guards(c_source("mpxtrace.bpf.c")) == set()


def test_every_fentry_program_is_one_the_planner_can_choose() -> None:
    may_fentry = {symbol for spec in HOOKS if spec.fentry_ok for symbol in spec.symbols}
    assert fentry_guards(c_source("mpxtrace.bpf.c")) - may_fentry == set(), "dead fentry program in bpf/"


def test_argument_and_offset_macros_agree_both_ways() -> None:
    program = c_source("mpxtrace.bpf.c")
    planned = ({define for spec in HOOKS for define in spec.args} | set(STRUCT_FIELDS) | set(VMG_FIELDS)
               | set(OPTIONAL_FIELDS))
    used = set(re.findall(r"\b((?:ARG|OFF)_[A-Z0-9_]+)\b", program))
    assert planned - used == set(), "computed for the kernel program but never read by it"
    assert used - planned == set(), "read by the kernel program but never computed"


@pytest.mark.parametrize("kernel, attach, buffer, pids", [
    (features(KERNEL_510), "auto", "auto", ()),
    (features(KERNEL_612, fields=VMG, ringbuf=False), "kprobe", "auto", (1,)),
    (features(KERNEL_612, fields=VMG), "fentry", "ring", ()),
], ids=["5.10-fentry-ring", "6.12-kprobe-perf-pid", "6.12-fentry"])
def test_every_define_build_config_passes_is_read_by_the_program(kernel: object, attach: str, buffer: str,
                                                                   pids: Tuple[int, ...]) -> None:
    config = build_config(resolve_flags(["lo"], None), kernel, attach, buffer, pids)  # type: ignore[arg-type]
    sources = c_source("mpxtrace.bpf.c") + c_source("mpxtrace_event.h")
    unread = {name for name in config.defines if not re.search(rf"\b{name}\b", sources)}
    assert unread == set()
