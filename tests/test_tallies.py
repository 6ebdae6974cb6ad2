"""The kernel's own aggregates (mpxtrace/tallies.py): read from the mapped `tallies` array,
logged as `tallies` records, checked when read back, and reported beside what the stream
delivered, so a summary keeps complete counts and size histograms when events were lost.
What the kernel program counts is checked in the lab (tests/lab/test_lab_tallies.py)."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, Iterator, List, Sequence

import pytest

from helpers import MASK, PAGE, ev, header
from mpxtrace.program import LoadedProgram
from mpxtrace.records import RecordError, check_record
from mpxtrace.render import summary_text
from mpxtrace.stats import Log2Histogram, Session
from mpxtrace.tallies import BUCKETS, INDEX, SIZE, tallies_record
from test_mappedarray import _NoLookups, _update, mmapable_array

ROOT = Path(__file__).resolve().parents[1]


def kernel_values(mapped: List[int], destroyed: List[int], other: Dict[int, int],
                  lifetimes: Sequence[int] = ()) -> List[int]:
    """The array as the kernel program leaves it (bpf/mpxtrace.bpf.c tally_event): a value's
    bucket is its bit length (bpf_log2l), capped at the last bucket."""
    values = [0] * SIZE
    for sizes, kind, sum_at, log2_at in ((mapped, 1, "MAP_BYTES", "MAP_LOG2"),
                                         (destroyed, 4, "UNMAP_BYTES", "UNMAP_LOG2"),
                                         (lifetimes, 0, "LIFETIME_NS", "LIFETIME_LOG2")):
        if kind:
            values[INDEX["EMITTED"] + kind] += len(sizes)
        for size in sizes:
            values[INDEX[sum_at]] += size
            values[INDEX[log2_at] + min(size.bit_length(), BUCKETS - 1)] += 1
    for kind, count in other.items():
        values[INDEX["EMITTED"] + kind] += count
    return values


MAPPED = [PAGE, 2 * PAGE, 3 * PAGE, 4 << 20, 4 << 20, 3 << 30]
DESTROYED = [PAGE, 4 << 20]
LIFETIMES = [1_500, 2_000_000_000]  # one per destroyed mapping at most


def test_the_kernels_buckets_read_back_as_the_streams_histogram_would_hold_them() -> None:
    rec = tallies_record(kernel_values(MAPPED, DESTROYED, {2: 7}, LIFETIMES), 5)
    check_record(rec)
    assert rec["emitted"] == {"map": 6, "flags": 7, "unmap": 2}
    session = Session(header())
    session.apply(rec)
    stream = Log2Histogram("bytes")
    for size in MAPPED:
        stream.add(size)
    tallies = session.summary()["kernel_tallies"]
    assert tallies["mapped"] == stream.to_json()
    assert tallies["destroyed"]["count"] == 2 and tallies["destroyed"]["sum"] == PAGE + (4 << 20)
    assert tallies["events"] == 15 and tallies["events_by_kind"] == {"flags": 7, "map": 6, "unmap": 2}
    lived = Log2Histogram("ns")
    for ns in LIFETIMES:
        lived.add(ns)
    assert tallies["lifetime"] == lived.to_json()


def test_a_layout_of_another_size_is_refused() -> None:
    with pytest.raises(ValueError, match=str(SIZE)):
        tallies_record([0] * (SIZE - 1), 1)


@pytest.fixture
def tallies_fd() -> Iterator[int]:
    yield from mmapable_array(SIZE)


def test_the_loaded_program_reads_the_tallies_array_from_memory(tallies_fd: int) -> None:
    _update(tallies_fd, INDEX["EMITTED"] + 1, 3)
    _update(tallies_fd, INDEX["MAP_BYTES"], 3 * PAGE)
    _update(tallies_fd, INDEX["MAP_LOG2"] + PAGE.bit_length(), 3)
    program = LoadedProgram(None, SimpleNamespace(arrays_mapped=True))  # type: ignore[arg-type]
    program.bpf = {"tallies": _NoLookups(tallies_fd, SIZE)}
    rec = tallies_record(program.tallies(), 9)
    assert rec["emitted"] == {"map": 3}
    assert rec["mapped"] == {"bytes": 3 * PAGE, "log2": [[PAGE.bit_length(), 3]]}
    _update(tallies_fd, INDEX["EMITTED"] + 4, 1)
    _update(tallies_fd, INDEX["UNMAP_LOG2"] + PAGE.bit_length(), 1)
    assert tallies_record(program.tallies(), 10)["emitted"] == {"map": 3, "unmap": 1}
    program.close()


def test_a_read_between_the_kernels_two_adds_still_adds_up() -> None:
    """The kernel adds to a map's (unmap's) count, then to its size bucket; the tracer reads the
    array meanwhile.  A read between the two adds must still make a record `report --strict`
    accepts (the 7.2 overload run refused one: 458,217 sizes, 458,216 unmaps)."""
    values = kernel_values(MAPPED, DESTROYED, {}, LIFETIMES)
    values[INDEX["EMITTED"] + 1] += 1  # a map counted, its size not yet
    values[INDEX["EMITTED"] + 4] += 2  # two unmaps counted, their sizes not yet
    rec = tallies_record(values, 5)
    check_record(rec)
    assert rec["emitted"]["map"] == len(MAPPED) and rec["emitted"]["unmap"] == len(DESTROYED)


def _broken(change: str) -> Dict[str, Any]:
    rec = copy.deepcopy(tallies_record(kernel_values(MAPPED, DESTROYED, {}, LIFETIMES), 5))
    if change == "count":
        rec["emitted"]["map"] += 1
    elif change == "kind":
        rec["emitted"]["teleport"] = 1
    elif change == "bucket":
        rec["mapped"]["log2"][-1][0] = BUCKETS
    elif change == "order":
        rec["mapped"]["log2"].reverse()
    elif change == "bytes":
        rec["destroyed"]["bytes"] = -1
    elif change == "missing":
        del rec["destroyed"]
    elif change == "lifetimes":
        rec["lifetimes"]["log2"].append([BUCKETS - 1, 1])  # three lifetimes, two VMAs destroyed
    return rec


@pytest.mark.parametrize("change, says", [
    ("count", "holds 6 values but 7 map events"), ("lifetimes", "holds 3 values but 2 unmap events"), ("kind", "unknown event kind 'teleport'"),
    ("bucket", "out of range"), ("order", "not ascending"), ("bytes", "out of range"),
    ("missing", "without `destroyed`")])
def test_a_tallies_record_that_does_not_add_up_is_refused(change: str, says: str) -> None:
    with pytest.raises(RecordError, match=says):
        check_record(_broken(change))


def _log(tmp_path: Path) -> Path:
    """A trace whose stream lost 4 of 6 maps (and 1 of 2 unmaps) that the kernel counted."""
    records: List[Dict[str, Any]] = [header()]
    records.append(ev("map", 10, 0x10000, 0x10000 + PAGE, ext=(0x10000, 0x10000 + PAGE)))
    records.append(ev("map", 20, 0x20000, 0x20000 + 2 * PAGE, ext=(0x20000, 0x20000 + 2 * PAGE)))
    records.append({"type": "lost", "ts": 30, "source": "ring_buffer", "count": 5})
    records.append(tallies_record(kernel_values(MAPPED[:3], [], {}), 1_500_000_000))
    records.append(ev("unmap", 1_600_000_000, 0x10000, 0x10000 + PAGE))
    records.append(tallies_record(kernel_values(MAPPED, DESTROYED, {}), 2_500_000_000))
    records.append({"type": "end", "ts": 2_600_000_000})
    path = tmp_path / "trace.ndjson"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_report_shows_the_kernels_complete_counts_where_the_stream_lost_events(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "mpxtrace", "report", "--json", "--strict", str(_log(tmp_path))],
                         cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout.splitlines()[-1])
    assert summary["totals"]["allocations"] == 2 and summary["histograms_complete"] is False
    tallies = summary["kernel_tallies"]
    assert tallies["mapped"]["count"] == 6 and tallies["mapped"]["sum"] == sum(MAPPED)
    assert tallies["destroyed"]["count"] == 2 and tallies["ts"] == 2_500_000_000
    text = summary_text(summary)
    assert "6 flagged mappings made" in text and "@mapped_size (kernel, complete):" in text


def test_intervals_take_the_kernels_counts_of_their_own_window() -> None:
    session = Session(header(start_ns=0))
    session.apply(tallies_record(kernel_values(MAPPED[:3], [], {}), 1_000_000_000))
    first = session.interval_snapshot(now_ns=1_000_000_000)
    assert first["kernel"]["mapped"] == 3 and first["kernel"]["mapped_bytes"] == 6 * PAGE
    session.apply(tallies_record(kernel_values(MAPPED, DESTROYED, {3: 2}), 2_000_000_000))
    second = session.interval_snapshot(now_ns=2_000_000_000)
    assert second["kernel"]["mapped"] == 3 and second["kernel"]["destroyed"] == 2
    assert second["kernel"]["events"] == 3 + 2 + 2 and second["kernel"]["mapped_per_s"] == 3.0
    since = session.interval_snapshot(now_ns=2_000_000_000, cumulative=True)
    assert since["kernel"]["mapped"] == 6


def test_without_a_tallies_record_there_are_no_kernel_figures() -> None:
    session = Session(header())
    session.apply(ev("map", 10, 0x10000, 0x10000 + PAGE, flags=MASK))
    assert session.summary()["kernel_tallies"] is None
    assert session.interval_snapshot()["kernel"] is None
    assert "kernel counted" not in summary_text(session.summary())


def test_the_tracer_logs_the_tallies_it_reads() -> None:
    from mpxtrace.flags import resolve_flags
    from mpxtrace.tracer import TraceOptions, Tracer
    tracer = Tracer(TraceOptions(resolve_flags(["lo"], None), seed=False), features=None)  # type: ignore[arg-type]
    tracer._program = SimpleNamespace(tallies=lambda: kernel_values(MAPPED, [], {}))  # type: ignore[assignment]
    tracer.session = Session(header())
    tracer._record_tallies()
    assert tracer.session.tallies is not None and tracer.session.tallies["emitted"] == {"map": 6}


def test_the_live_screen_shows_the_kernels_counts() -> None:
    import io

    from rich.console import Console

    from mpxtrace.views.live import LiveScreen
    session = Session(header(start_ns=0))
    session.apply(ev("map", 10, 0x10000, 0x10000 + PAGE, ext=(0x10000, 0x10000 + PAGE)))
    session.apply(tallies_record(kernel_values(MAPPED, DESTROYED, {}), 2_000_000_000))
    rec = session.interval_snapshot(now_ns=2_000_000_000)
    console = Console(file=io.StringIO(), width=160, height=60)
    screen = LiveScreen("test", on_quit=lambda: None, console=console)
    screen._rec = rec
    screen._history.append(int(rec["totals"]["live_bytes"]))
    console.print(screen.render(60))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "kernel counted: 6 mappings" in text and "2 destroyed" in text
