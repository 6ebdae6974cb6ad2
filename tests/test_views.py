"""Views of a capture: Prometheus metrics scraped over HTTP, the plot, the Perfetto trace."""
from __future__ import annotations

import json
import struct
import urllib.request
from pathlib import Path
from typing import Any, Dict, List

import pytest

from mpxtrace import tallies
from mpxtrace.lostspaces import slot_of
from mpxtrace.stats import Session

from helpers import MM, MM2, PAGE, ev, header

A = 0x7F0000000000
S = 1_000_000_000


def _capture(big: int = 4) -> List[Dict[str, Any]]:
    return [{"type": "seed", "ts": 1, "pid": 100, "comm": "work", "start": A + 100 * PAGE, "end": A + 102 * PAGE,
             "flags": 0x2000},
            ev("map", S // 2, A, A + big * PAGE),
            ev("map", S, A + 20 * PAGE, A + 21 * PAGE, mm=MM2, tgid=200, comm="other"),
            {"type": "lost", "ts": S, "source": "perf_buffer", "count": 7},
            ev("unmap", 5 * S // 2, A, A + big * PAGE),
            {"type": "end", "ts": 3 * S}]


# -- Prometheus ---------------------------------------------------------------------------------
def test_parse_listen() -> None:
    from mpxtrace.views.prometheus import parse_listen
    assert parse_listen("9464") == ("127.0.0.1", 9464)
    assert parse_listen(":9464") == ("127.0.0.1", 9464)
    assert parse_listen("0.0.0.0:9464") == ("0.0.0.0", 9464)
    assert parse_listen("[::1]:9464") == ("::1", 9464)
    with pytest.raises(ValueError, match=r"\[ADDR:\]PORT"):
        parse_listen("localhost:http")
    with pytest.raises(ValueError, match="0-65535"):
        parse_listen("70000")


def _scrape(port: int) -> Dict[str, Any]:
    from prometheus_client.parser import text_string_to_metric_families
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples: Dict[Any, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_scraped_over_http_follow_the_session() -> None:
    from mpxtrace.views.prometheus import MetricsView, serve
    session = Session(header())
    view = MetricsView("VM_LOCKED")
    server, port = serve("0", view)  # port 0: any free port, on 127.0.0.1
    try:
        assert server.server_address[0] == "127.0.0.1"  # type: ignore[attr-defined]
        records = _capture()
        for rec in records[:4]:
            session.apply(rec)
        view.publish(session)
        before = _scrape(port)
        work = (("comm", "work"), ("mm", "0xffff888000100000"), ("pid", "100"))
        assert before[("mpxtrace_process_live_bytes", work)] == 6 * PAGE
        assert before[("mpxtrace_process_live_vmas", work)] == 2
        assert before[("mpxtrace_allocations_total", ())] == 2
        assert before[("mpxtrace_lost_events_total", (("source", "perf_buffer"),))] == 7
        assert before[("mpxtrace_lost_events_total", (("source", "frame_overflow"),))] == 0  # exported before any loss
        # log2 buckets, cumulative: the 4K allocation at le=8191, the 16K one at le=32767
        assert before[("mpxtrace_allocation_size_bytes_bucket", (("le", "8191"),))] == 1
        assert before[("mpxtrace_allocation_size_bytes_bucket", (("le", "32767"),))] == 2
        assert before[("mpxtrace_allocation_size_bytes_sum", ())] == 5 * PAGE
        for rec in records[4:]:
            session.apply(rec)
        session.apply({"type": "resident", "ts": 3 * S, "source": "smaps", "mem_total_bytes": 1 << 30,
                       "flagged_resident_bytes": PAGE, "ram_share": PAGE / (1 << 30), "processes_sampled": 1,
                       "sample_ns": 1, "processes": [{"pid": 100, "mm": "0xffff888000100000", "resident_bytes": PAGE,
                                                      "smaps_flagged_bytes": 2 * PAGE, "rss_bytes": 4 * PAGE,
                                                      "vsize_bytes": 8 * PAGE, "rss_share": 0.25, "vsize_share": 0.25}]})
        view.publish(session)
        after = _scrape(port)
        assert after[("mpxtrace_process_live_bytes", work)] == 2 * PAGE
        assert after[("mpxtrace_process_resident_bytes", work)] == PAGE
        assert after[("mpxtrace_frees_total", ())] == 1
        assert after[("mpxtrace_lifetime_ns_count", ())] == 1
        assert after[("mpxtrace_resident_bytes", ())] == PAGE
        assert ("mpxtrace_process_lost_events", work) not in after  # none of its events was refused
        session.apply({"type": "lost", "ts": 3 * S, "source": "ring_buffer", "count": 3, "slots": [[slot_of(MM), 3]]})
        view.publish(session)
        assert _scrape(port)[("mpxtrace_process_lost_events", work)] == 3
        assert not any(name.startswith("mpxtrace_kernel_") for name, _ in after)  # no tallies record yet
        # the kernel's own counts: 9 maps where the stream delivered 2 (tallies.py)
        values = [0] * tallies.SIZE
        values[tallies.INDEX["EMITTED"] + 1] = 9
        values[tallies.INDEX["MAP_BYTES"]] = 9 * PAGE
        values[tallies.INDEX["MAP_LOG2"] + PAGE.bit_length()] = 9
        session.apply(tallies.tallies_record(values, 3 * S))
        view.publish(session)
        kernel = _scrape(port)
        assert kernel[("mpxtrace_kernel_events_total", (("kind", "map"),))] == 9
        assert kernel[("mpxtrace_kernel_mapped_size_bytes_bucket", (("le", "8191"),))] == 9
        assert kernel[("mpxtrace_kernel_mapped_size_bytes_sum", ())] == 9 * PAGE
        assert kernel[("mpxtrace_kernel_lifetime_ns_count", ())] == 0
    finally:
        server.shutdown()  # type: ignore[attr-defined]
        server.server_close()  # type: ignore[attr-defined]


# -- plot ------------------------------------------------------------------------------------------
def _png_size(path: Path) -> tuple:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_plot_png_and_svg(tmp_path: Path) -> None:
    from mpxtrace.views.plot import DPI, SIZE_INCHES, plot_capture
    from mpxtrace.views.files import OutputError
    first, second, svg = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "a.svg"
    summary = plot_capture(header(), _capture(4), first)
    plot_capture(header(), _capture(64), second)
    plot_capture(header(), _capture(4), svg)
    assert summary["totals"]["allocations"] == 2
    assert _png_size(first) == (int(SIZE_INCHES[0] * DPI), int(SIZE_INCHES[1] * DPI))
    assert first.read_bytes() != second.read_bytes()  # the picture follows the data
    assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()
    assert first.stat().st_mode & 0o777 == 0o600
    with pytest.raises(OutputError, match="already exists"):
        plot_capture(header(), _capture(4), first)
    with pytest.raises(ValueError, match=".png or .svg"):
        plot_capture(header(), _capture(4), tmp_path / "a.jpg")


# -- Perfetto ----------------------------------------------------------------------------------------
def test_perfetto_trace_events(tmp_path: Path) -> None:
    from mpxtrace.views.perfetto import COUNTER_NAME, SLICE_CATEGORY, write_perfetto
    path = tmp_path / "trace.json"
    write_perfetto(header(), _capture(), path)
    events = json.loads(path.read_text())["traceEvents"]
    names = {e["pid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    assert names == {100: "work [100]", 200: "other [200]"}
    counters = [(e["pid"], e["ts"], e["args"]["bytes"]) for e in events if e["ph"] == "C"]
    assert all(e["name"] == COUNTER_NAME for e in events if e["ph"] == "C")
    assert counters == [(100, 0.001, 2 * PAGE), (100, 500_000.0, 6 * PAGE), (200, 1_000_000.0, PAGE),
                        (100, 2_500_000.0, 2 * PAGE)]
    slices: Dict[int, Dict[str, Any]] = {}
    for e in events:
        if e["ph"] in "be":
            assert e["cat"] == SLICE_CATEGORY
            slices.setdefault(e["id"], {})[e["ph"]] = e
    spans = sorted((s["b"]["pid"], s["b"]["name"], s["b"]["ts"], s["e"]["ts"], s["e"]["args"]["live_at_end"])
                   for s in slices.values())
    assert spans == [(100, "mmap 16K", 500_000.0, 2_500_000.0, False), (200, "mmap 4K", 1_000_000.0, 3_000_000.0, True)]
