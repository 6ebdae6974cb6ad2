"""The kernel's own aggregates (issue 9 item 1: aggregation in the kernel cannot be lost), in
the lab: with a one-page stream buffer that the workload overflows, the counts and size
histograms the kernel program kept equal what the workers know they did, mapping by mapping,
while the stream's own picture misses events; with nothing lost, every event the kernel counted
is in the log, kind by kind, and the kernel's size and lifetime histograms are the stream's.  One boot per kernel (tests/lab/tallies_guest.py)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from guestreport import ROOT, GuestRuns

MARK = "=====MPXTRACE-TALLIES-JSON====="
KERNELS = ["5.10", "6.1", "6.12", "7.2"]

guest_run = GuestRuns("tallies", ["python3", "tests/lab/tallies_guest.py"], MARK, 900)


def workers_did(truths: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The workers' own counts, summed: mappings, bytes, and mappings by bucket."""
    buckets: Dict[int, int] = {}
    for truth in truths:
        for bucket, count in truth["log2"]:
            buckets[bucket] = buckets.get(bucket, 0) + count
    return {"count": sum(t["count"] for t in truths), "sum": sum(t["bytes"] for t in truths),
            "buckets": buckets}


def histogram(hist: Dict[str, Any]) -> Dict[str, Any]:
    """A summary histogram in the same terms (its bucket k covers [2^(k-1), 2^k))."""
    return {"count": hist["count"], "sum": hist["sum"],
            "buckets": {row["high"].bit_length() - 1: row["count"] for row in hist["buckets"]}}


def replayed(out: Path, log: str) -> Dict[str, Any]:
    run = subprocess.run([sys.executable, "-m", "mpxtrace", "report", "--json", "--strict", str(out / log)],
                         cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert run.returncode == 0, run.stderr[-2000:]
    summary: Dict[str, Any] = json.loads(run.stdout.splitlines()[-1])
    return summary


def _phase(kernel: str, tmp_path_factory: pytest.TempPathFactory,
           name: str) -> Tuple[Dict[str, Any], Dict[str, Any], Dict[str, Any], Path]:
    """One phase of the kernel's guest run: the phase, its summary, what the workers did, the output directory."""
    report, out = guest_run(kernel, tmp_path_factory)
    assert "error" not in report, report
    phase: Dict[str, Any] = report[name]
    assert "error" not in phase, phase
    assert phase["tracer_exit"] == 0 and "Traceback" not in phase["stderr"], phase["stderr"]
    assert phase["summary"] and phase["summary"]["kernel_tallies"], phase
    return phase, phase["summary"], workers_did(phase["truths"]), out


@pytest.mark.lab
@pytest.mark.parametrize("kernel", KERNELS)
def test_the_kernels_counts_equal_the_workload_after_the_stream_overflowed(
        kernel: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    phase, summary, truth, out = _phase(kernel, tmp_path_factory, "overload")
    # the stream overflowed and its own figures are short, or this proves nothing
    assert summary["lost_events"] > 0, summary["lost_by_source"]
    assert summary["totals"]["allocations"] < truth["count"]
    tallies = summary["kernel_tallies"]
    assert histogram(tallies["mapped"]) == truth
    assert histogram(tallies["destroyed"]) == truth  # each mapping was unmapped whole
    assert tallies["events_by_kind"]["map"] == tallies["events_by_kind"]["unmap"] == truth["count"]
    # every event the kernel handed to the ring was delivered or counted lost: the loss count is
    # exact (BCC's increment() lost 1-3 counts here when two CPUs counted at once)
    assert tallies["events"] == summary["events"] + summary["lost_by_source"].get("ring_buffer", 0)
    # every mapping died as it was made: one lifetime each, none longer than the workload ran
    assert tallies["lifetime"]["count"] == truth["count"]
    assert 0 < tallies["lifetime"]["sum"] <= truth["count"] * phase["workload_s"] * 1e9
    assert replayed(out, phase["log"])["kernel_tallies"] == tallies


@pytest.mark.lab
@pytest.mark.parametrize("kernel", KERNELS)
def test_with_nothing_lost_the_log_holds_every_event_the_kernel_counted(
        kernel: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    phase, summary, truth, out = _phase(kernel, tmp_path_factory, "paced")
    assert summary["lost_events"] == 0, summary["lost_by_source"]
    in_log: Dict[str, int] = {}
    with open(out / phase["log"]) as fh:
        for line in fh:
            rec = json.loads(line)
            if rec.get("type") == "event":
                in_log[rec["kind"]] = in_log.get(rec["kind"], 0) + 1
    tallies = summary["kernel_tallies"]
    assert tallies["events_by_kind"] == in_log
    assert histogram(tallies["mapped"]) == truth
    # and the stream's own picture, complete here, agrees with the kernel's, histogram by histogram
    assert summary["totals"]["allocations"] == summary["totals"]["frees"] == truth["count"]
    assert tallies["mapped"] == summary["histograms"]["allocation_size"]
    assert tallies["lifetime"] == summary["histograms"]["lifetime"]
    assert replayed(out, phase["log"])["kernel_tallies"] == tallies
