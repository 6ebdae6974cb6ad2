"""A seeded mutation fuzzer of the log reader + `report`, and of the raw event decoder.

Valid logs come from the project's own writer; each case mutates one (byte flips, truncation,
dropped/duplicated/swapped lines, field type swaps, changed kinds, edge numbers, deep nesting,
non-UTF-8, a second header) and runs `mpxtrace report` on it.  A clean error (exit 1) or a
summary (exit 0) is fine; a traceback, a hang or any other status is a finding, returned with
the bytes that reproduce it.

    python tests/fuzzing.py [--seed N] [--cases N]     # a longer run than the test suite's
"""
from __future__ import annotations

import ctypes
import json
import os
import random
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from click.testing import CliRunner  # noqa: E402

from helpers import MASK, PAGE, header  # noqa: E402
from mpxtrace.cli import main  # noqa: E402
from mpxtrace.eventlog import LogWriter  # noqa: E402
from mpxtrace.events import RawEvent, decode_raw  # noqa: E402
from mpxtrace.records import AUX_WORDS, EVENT_KINDS, RecordError, check_record  # noqa: E402
from mpxtrace.stats import Session  # noqa: E402

CASE_TIMEOUT_S = 10


@dataclass
class Finding:
    what: str  # the exception line, or "hang" / "exit N"
    data: bytes  # the input that reproduces it
    detail: str = ""

    def reproducer(self) -> str:
        return f"{self.what}\n  reproduce with: {self.data!r}\n{self.detail}"


# -- valid logs ---------------------------------------------------------------------------------------
def _event(rng: random.Random, kind: str, ts: int, mm: int, base: int) -> Dict[str, Any]:
    start = base + rng.randrange(0, 64) * PAGE
    end = start + rng.randrange(1, 16) * PAGE
    rec: Dict[str, Any] = {"type": "event", "kind": kind, "ts": ts, "mm": mm, "tgid": 100 + mm % 7, "tid": 100,
                           "owner": rng.random() < 0.8, "comm": rng.choice(["work", "caf\u00e9", "\\xff"])}
    if EVENT_KINDS[kind].has_range:
        rec.update(start=start, end=end, flags=rng.choice([MASK, MASK | 1, 1, 0]))
    if kind in ("split",):
        rec["at"] = rng.randrange(start, end + 1)
    if kind == "fork":
        rec["parent_mm"] = rng.choice([0x1000, 0x2000])
    if kind == "move":
        old = base + rng.randrange(0, 64) * PAGE
        rec.update(old_start=old, old_end=old + rng.randrange(0, 16) * PAGE)
        if rng.random() < 0.3:
            rec["dontunmap"] = True
        if rng.random() < 0.3:
            rec["old_len"] = rec["old_end"] - rec["old_start"]
    if kind == "grow" and rng.random() < 0.5:
        rec["old_start"] = start
    if rng.random() < 0.3 and "start" in rec:
        lo = rec["start"] - rng.randrange(0, 4) * PAGE
        rec["ext"] = [lo, rec["end"] + rng.randrange(0, 4) * PAGE]
    return rec


def _in_version1_words(rec: Dict[str, Any]) -> Dict[str, Any]:
    """An event as a version 1 log wrote it: the kind's own fields under the generic aux, aux2."""
    for word, name in zip(AUX_WORDS, EVENT_KINDS[rec["kind"]].aux_names):
        if name in rec:
            rec[word] = rec.pop(name)
    return rec


def valid_log(rng: random.Random, path: Path) -> None:
    """A plausible log with every record type and event kind, written by LogWriter (one in four
    in the version 1 field names, which `report` still reads)."""
    w = LogWriter(path)
    version1 = rng.random() < 0.25
    w.write(dict(header(start_ns=1000, interval_ns=rng.choice([1, 1000, 10**9])), **({"version": 1} if version1 else {})))
    ts = 1000
    base = 0x7F0000000000
    for i in range(rng.randrange(0, 4)):
        w.write({"type": "seed", "ts": ts, "pid": 100 + i, "comm": "seeded", "start": base + i * 0x100000,
                 "end": base + i * 0x100000 + 8 * PAGE, "flags": MASK, **({"mm": 0x1000} if i == 0 else {})})
    kinds = list(EVENT_KINDS)
    for _ in range(rng.randrange(1, 40)):
        ts += rng.randrange(0, 5000)
        roll = rng.random()
        if roll < 0.05:
            w.write({"type": "lost", "ts": ts, "source": rng.choice(["ring_buffer", "perf_buffer"]),
                     "count": rng.randrange(1, 9)})
        elif roll < 0.08:
            w.write({"type": "proc_exit", "ts": ts, "pid": rng.choice([100, 101, 102])})
        elif roll < 0.10:
            w.write({"type": "resident", "ts": ts, "source": "smaps", "mem_total_bytes": 1 << 33,
                     "flagged_resident_bytes": 4096, "ram_share": 0.0001, "processes_sampled": 1, "sample_ns": 50,
                     "processes": [{"pid": 100, "mm": "0x1000", "resident_bytes": 4096, "smaps_flagged_bytes": 8192,
                                    "rss_bytes": 1 << 20, "vsize_bytes": 1 << 24, "rss_share": 0.1,
                                    "vsize_share": 0.01}]})
        elif roll < 0.12:
            w.write({"type": "drift", "ts": ts, "pid": 100, "vma": [base, base + PAGE],
                     "expected": "present", "seen": "absent"})
        else:
            rec = _event(rng, rng.choice(kinds), ts, rng.choice([0x1000, 0x2000, 0x3000]), base)
            w.write(_in_version1_words(rec) if version1 else rec)
    if rng.random() < 0.9:
        w.write({"type": "end", "ts": ts + 1})
    w.close()


# -- mutations ----------------------------------------------------------------------------------------
_ODD_VALUES: List[Any] = [None, True, -1, 0, 1 << 64, (1 << 64) - 1, -(1 << 70), 1.5, float("nan"), float("inf"),
                          "", "x" * 50, "0x1000", [], [1, 2, 3], {}, {"a": 1}, 10**400]


def _json_line(rng: random.Random, lines: List[bytes], edit: Callable[[Dict[str, Any]], None]) -> None:
    i = rng.randrange(len(lines))
    try:
        rec = json.loads(lines[i])
    except (ValueError, RecursionError):
        return
    if isinstance(rec, dict) and rec:
        edit(rec)
        lines[i] = json.dumps(rec, allow_nan=True).encode() + b"\n"


def _swap_type(rng: random.Random, rec: Dict[str, Any]) -> None:
    key = rng.choice(sorted(rec))
    if rng.random() < 0.2:
        del rec[key]
    else:
        rec[key] = rng.choice(_ODD_VALUES)


def _change_kind(rng: random.Random, rec: Dict[str, Any]) -> None:
    if "kind" in rec and rng.random() < 0.7:
        rec["kind"] = rng.choice(list(EVENT_KINDS) + ["teleport", "", "MAP"])
    else:
        rec["type"] = rng.choice(["header", "seed", "event", "lost", "proc_exit", "resident", "drift", "end", "summary",
                                  "interval", "bogus"])


def _edge_number(rng: random.Random, rec: Dict[str, Any]) -> None:
    keys = [k for k, v in rec.items() if isinstance(v, int) and not isinstance(v, bool)]
    if keys:
        key = rng.choice(keys)
        rec[key] = rng.choice([0, -1, 1, (1 << 64) - 1, 1 << 64, rec[key] - PAGE * 100, rec[key] + 1])


def _deep(rng: random.Random, rec: Dict[str, Any]) -> None:
    depth = rng.choice([50, 1000, 100_000])
    value: Any = 1
    for _ in range(min(depth, 500)):
        value = [value]
    rec[rng.choice(sorted(rec))] = value if depth <= 500 else "DEEP"


def mutate(rng: random.Random, data: bytes) -> bytes:
    lines = data.splitlines(keepends=True) or [b"\n"]
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(12)
        if op == 0:  # byte flips
            raw = bytearray(b"".join(lines))
            for _ in range(rng.randrange(1, 8)):
                if raw:
                    raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
            lines = bytes(raw).splitlines(keepends=True) or [b"\n"]
        elif op == 1:  # truncation
            raw = b"".join(lines)
            lines = raw[:rng.randrange(len(raw) + 1)].splitlines(keepends=True) or [b"\n"]
        elif op == 2 and len(lines) > 1:  # dropped line
            del lines[rng.randrange(len(lines))]
        elif op == 3:  # duplicated line, here or elsewhere
            lines.insert(rng.randrange(len(lines) + 1), rng.choice(lines))
        elif op == 4 and len(lines) > 1:  # swapped lines
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == 5:
            _json_line(rng, lines, lambda rec: _swap_type(rng, rec))
        elif op == 6:
            _json_line(rng, lines, lambda rec: _change_kind(rng, rec))
        elif op == 7:
            _json_line(rng, lines, lambda rec: _edge_number(rng, rec))
        elif op == 8:  # deep nesting, as raw text (json.dumps itself would recurse)
            depth = rng.choice([100, 5000, 200_000])
            lines.insert(rng.randrange(len(lines) + 1), b'{"type": "event", "kind": ' + b"[" * depth + b"]" * depth + b"}\n")
        elif op == 9:  # non-UTF-8
            i = rng.randrange(len(lines))
            pos = rng.randrange(len(lines[i]) + 1)
            lines[i] = lines[i][:pos] + bytes(rng.choice([0xff, 0xc3, 0xed, 0x80, 0x00]) for _ in range(3)) + lines[i][pos:]
        elif op == 10:  # a second header (another mask)
            lines.insert(rng.randrange(1, len(lines) + 1),
                         json.dumps(header(mask=rng.choice([0, 1, -1, MASK]))).encode() + b"\n")
        elif op == 11:
            _json_line(rng, lines, lambda rec: _deep(rng, rec))
    return b"".join(lines)


# -- oracles ------------------------------------------------------------------------------------------
class _Hang(Exception):
    pass


def _alarm(signum: int, frame: object) -> None:
    raise _Hang()


def _last_line(exc: BaseException) -> str:
    tb = exc.__traceback__
    where = ""
    while tb is not None:
        where = f"{Path(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}"
        tb = tb.tb_next
    return f"{type(exc).__name__} at {where}: {str(exc)[:120]}"


def run_report(data: bytes, workdir: Path, args: List[str]) -> Optional[Finding]:
    """`mpxtrace report` on `data`: None when it summarised or failed cleanly."""
    path = workdir / "case.ndjson"
    path.write_bytes(data)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, CASE_TIMEOUT_S)
    try:
        result = CliRunner().invoke(main, ["report", str(path)] + args)
    except _Hang:
        return Finding("hang", data)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        return Finding(_last_line(exc), data, "".join(__import__("traceback").format_exception(
            type(exc), exc, exc.__traceback__))[-2000:])
    if result.exit_code not in (0, 1):
        return Finding(f"exit {result.exit_code}", data, result.output[-500:])
    return None


def fuzz_report(seed: int, cases: int) -> List[Finding]:
    rng = random.Random(seed)
    findings: List[Finding] = []
    with tempfile.TemporaryDirectory(prefix="mpxtrace-fuzz-") as tmp:
        workdir = Path(tmp)
        for case in range(cases):
            source = workdir / f"valid-{case}.ndjson"
            valid_log(rng, source)
            data = mutate(rng, source.read_bytes())
            source.unlink()
            args = rng.choice([["--json"], [], ["--strict", "--json"]])
            finding = run_report(data, workdir, args)
            if finding is not None:
                finding.detail = f"case {case}, report {' '.join(args)}\n" + finding.detail
                findings.append(finding)
    return findings


def fuzz_decoder(seed: int, cases: int) -> List[Finding]:
    """decode_raw on random bytes: a record or ValueError (unknown kind); a record that passes the
    schema must apply to a session without error."""
    rng = random.Random(seed)
    findings: List[Finding] = []
    size = ctypes.sizeof(RawEvent)
    session = Session(header())
    for _ in range(cases):
        data = bytearray(rng.getrandbits(8) for _ in range(size))
        raw = RawEvent.from_buffer_copy(bytes(data))
        if rng.random() < 0.8:  # mostly known kinds, small addresses, so that events interact
            raw.kind = rng.randrange(0, 12)
            for name in ("start", "end", "ext_start", "ext_end", "aux", "aux2"):
                if rng.random() < 0.8:
                    setattr(raw, name, rng.randrange(0, 64) * PAGE)
            raw.mm = rng.randrange(1, 4)
            data = bytearray(bytes(raw))
        try:
            rec = decode_raw(raw)
        except ValueError:
            continue
        except Exception as exc:  # noqa: BLE001 - any other error is the finding
            findings.append(Finding(_last_line(exc), bytes(data)))
            continue
        try:
            check_record(rec)
        except RecordError:
            continue
        try:
            session.apply(rec)
        except Exception as exc:  # noqa: BLE001
            findings.append(Finding(_last_line(exc), bytes(data), f"record {rec}"))
    return findings


def seed_from_env() -> int:
    text = os.environ.get("MPXTRACE_FUZZ_SEED")
    return int(text) if text else random.SystemRandom().randrange(1 << 32)


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=seed_from_env())
    parser.add_argument("--cases", type=int, default=2000)
    options = parser.parse_args()
    started = time.monotonic()
    found = fuzz_report(options.seed, options.cases)
    report_s = time.monotonic() - started
    found_decoder = fuzz_decoder(options.seed, options.cases * 10)
    print(f"seed {options.seed}: {options.cases} report cases in {report_s:.1f} s, "
          f"{options.cases * 10} decoder cases in {time.monotonic() - started - report_s:.1f} s")
    distinct: Dict[str, Finding] = {}
    for f in found + found_decoder:
        distinct.setdefault(f.what, f)
    for f in distinct.values():
        print(f.reproducer())
    print(f"{len(found) + len(found_decoder)} findings, {len(distinct)} distinct")
    sys.exit(1 if distinct else 0)
