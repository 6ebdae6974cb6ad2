"""A real trace in the lab, seen through the views: Prometheus scraped over HTTP in the guest,
interval records with histograms and resident bytes, and the log replayed on the host into
the same summary, a plot and a Perfetto trace."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
from prometheus_client.parser import text_string_to_metric_families

from guestreport import ROOT, GuestRuns

MARK = "=====MPXTRACE-VIEWS-JSON====="
KERNELS = ["5.10", "6.1", "6.12", "7.2"]
PAGE = 4096

guest_run = GuestRuns("views", ["python3", "tests/lab/views_guest.py"], MARK, 1200)


def _lines(path: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


@pytest.mark.lab
@pytest.mark.parametrize("kernel", KERNELS)
def test_prometheus_scrape_of_a_real_trace(kernel: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    report, out = guest_run(kernel, tmp_path_factory)
    assert "error" not in report, (report, (out / "trace.stderr").read_text()[-2000:])
    assert report["tracer_exit"] == 0 and report["workload_exit"] == 0
    pid = str(report["workload_pid"])
    samples = {}
    for family in text_string_to_metric_families((out / "metrics.txt").read_text()):
        for sample in family.samples:
            if sample.labels.get("pid", pid) == pid:
                samples[(sample.name, sample.labels.get("le", ""))] = sample.value
    assert samples[("mpxtrace_process_live_bytes", "")] == 64 * PAGE
    assert samples[("mpxtrace_process_live_vmas", "")] == 1
    assert samples[("mpxtrace_process_resident_bytes", "")] == 16 * PAGE  # the pages the workload touched
    assert samples[("mpxtrace_allocations_total", "")] >= 3 and samples[("mpxtrace_frees_total", "")] >= 2
    assert samples[("mpxtrace_lifetime_ns_count", "")] >= 2
    assert samples[("mpxtrace_allocation_size_bytes_bucket", str(64 * PAGE * 2 - 1))] >= 1  # [256K, 512K)


@pytest.mark.lab
@pytest.mark.parametrize("kernel", KERNELS)
def test_interval_records_and_resident_samples(kernel: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    report, out = guest_run(kernel, tmp_path_factory)
    stream = _lines(out / "trace.ndjson")
    intervals = [r for r in stream if r["type"] == "interval"]
    assert len(intervals) >= 3
    assert all(r["window"] == "interval" and 0.5e9 < r["window_ns"] < 2e9 for r in intervals[1:])
    assert sum(r["histograms"]["allocation_size"]["count"] for r in intervals) >= 3
    assert sum(r["histograms"]["lifetime"]["count"] for r in intervals) >= 2
    held = [p for r in intervals for p in r["processes"] if p["pid"] == report["workload_pid"] and "resident_bytes" in p]
    assert any(p["resident_bytes"] == 16 * PAGE and 0 < p["rss_share"] < 1 for p in held), held
    samples = [r for r in _lines(out / "run.ndjson") if r["type"] == "resident"]
    # logged for report: one per interval while sampling costs under 5% of the time (spaced out beyond)
    assert 1 <= len(samples) <= len(intervals)
    plain = (out / "plain.txt").read_text()
    assert report["plain_exit"] == 0, plain[-2000:]
    assert plain.count("@allocation_size (last ") >= 3 and "resident:" in plain


@pytest.mark.lab
@pytest.mark.parametrize("kernel", KERNELS)
def test_report_views_of_a_real_capture(kernel: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    report, out = guest_run(kernel, tmp_path_factory)
    summary = next(r for r in _lines(out / "trace.ndjson") if r["type"] == "summary")
    png, trace = out / "run.png", out / "run.trace.json"
    replay = subprocess.run([sys.executable, "-m", "mpxtrace", "report", str(out / "run.ndjson"), "--json",
                             "--plot", str(png), "--perfetto", str(trace)], capture_output=True, text=True, cwd=ROOT)
    assert replay.returncode == 0, replay.stderr
    assert json.loads(replay.stdout) == summary
    assert png.stat().st_size > 10_000
    events = json.loads(trace.read_text())["traceEvents"]
    pid = report["workload_pid"]
    assert any(e["ph"] == "C" and e["pid"] == pid and e["args"]["bytes"] == 64 * PAGE for e in events)
    freed = [e for e in events if e["ph"] == "e" and e["pid"] == pid and e["args"]["live_at_end"] is False]
    assert len(freed) >= 2
