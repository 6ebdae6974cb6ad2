"""Interval records cut by the Session: one window for every windowed figure, histograms
included, and the summary unchanged by taking them."""
from __future__ import annotations

from typing import Any, Dict, List

from mpxtrace import render
from mpxtrace.stats import Session

from helpers import MM, MM2, PAGE, ev, header

A = 0x7F0000000000
S = 1_000_000_000


def _records() -> List[Dict[str, Any]]:
    return [ev("map", S // 2, A, A + 4 * PAGE),                      # window 1: a 16K allocation
            ev("map", S // 2 + 1, A + 8 * PAGE, A + 9 * PAGE, mm=MM2, tgid=200, comm="other"),
            {"type": "lost", "ts": S // 2 + 2, "source": "ring_buffer", "count": 3},
            ev("unmap", 3 * S // 2, A, A + 4 * PAGE),                  # window 2: its free, 1 s old
            {"type": "lost", "ts": 3 * S // 2 + 1, "source": "ring_buffer", "count": 2},
            {"type": "end", "ts": 2 * S}]


def _feed(session: Session, records: List[Dict[str, Any]], until: int) -> None:
    for rec in records:
        if until - S <= int(rec["ts"]) < until:
            session.apply(rec)


def test_each_interval_covers_its_own_window() -> None:
    session = Session(header())
    _feed(session, _records(), S)
    first = session.interval_snapshot(S)
    _feed(session, _records(), 2 * S)
    second = session.interval_snapshot(2 * S)

    assert (first["window"], first["window_start_ns"], first["window_ns"]) == ("interval", 0, S)
    assert first["totals"]["allocations"] == 2 and first["totals"]["frees"] == 0
    assert first["events"] == 2 and first["lost_events"] == 3
    assert first["histograms"]["allocation_size"]["count"] == 2
    assert first["histograms"]["lifetime"]["count"] == 0

    assert (second["window_start_ns"], second["window_ns"]) == (S, S)
    assert second["totals"]["allocations"] == 0 and second["totals"]["frees"] == 1
    assert second["totals"]["freed_bytes"] == 4 * PAGE and second["totals"]["live_bytes"] == PAGE
    assert second["events"] == 1 and second["lost_events"] == 2 and second["lost_by_source"] == {"ring_buffer": 2}
    assert second["histograms"]["allocation_size"]["count"] == 0
    assert second["histograms"]["lifetime"]["buckets"] == [{"low": 1 << 29, "high": 1 << 30, "count": 1}]
    work = next(p for p in second["processes"] if p["pid"] == 100)
    assert (work["allocations"], work["frees"], work["allocated_bytes"], work["freed_bytes"]) == (0, 1, 0, 4 * PAGE)
    assert second["rate"]["freed_bytes_per_s"] == 4 * PAGE


def test_cumulative_intervals_count_since_the_start() -> None:
    session = Session(header())
    _feed(session, _records(), S)
    session.interval_snapshot(S, cumulative=True)
    _feed(session, _records(), 2 * S)
    rec = session.interval_snapshot(2 * S, cumulative=True)
    assert (rec["window"], rec["window_start_ns"], rec["window_ns"]) == ("since_start", 0, 2 * S)
    assert rec["totals"]["allocations"] == 2 and rec["totals"]["frees"] == 1
    assert rec["events"] == 3 and rec["lost_events"] == 5
    assert rec["histograms"]["allocation_size"]["count"] == 2 and rec["histograms"]["lifetime"]["count"] == 1
    assert render.window_label(rec) == "since start (2s)"


def test_taking_intervals_leaves_the_summary_as_a_replay_makes_it() -> None:
    live, replay = Session(header()), Session(header())
    for rec in _records():
        live.apply(rec)
        live.interval_snapshot(int(rec["ts"]))
        replay.apply(rec)
    assert live.summary() == replay.summary()


def test_resident_sample_joins_the_interval_and_the_summary() -> None:
    session = Session(header())
    _feed(session, _records(), S)
    sample = {"type": "resident", "ts": S, "source": "smaps", "mem_total_bytes": 1 << 30,
              "flagged_resident_bytes": 2 * PAGE, "ram_share": 2 * PAGE / (1 << 30), "processes_sampled": 1,
              "sample_ns": 1000,
              "processes": [{"pid": 100, "mm": f"{MM:#x}", "resident_bytes": 2 * PAGE, "smaps_flagged_bytes": 4 * PAGE,
                             "rss_bytes": 8 * PAGE, "vsize_bytes": 64 * PAGE, "rss_share": 0.25, "vsize_share": 0.0625}]}
    session.apply(sample)
    rec = session.interval_snapshot(S)
    work = next(p for p in rec["processes"] if p["pid"] == 100)
    other = next(p for p in rec["processes"] if p["pid"] == 200)
    assert work["resident_bytes"] == 2 * PAGE and work["rss_share"] == 0.25 and "resident_bytes" not in other
    assert rec["resident"]["flagged_resident_bytes"] == 2 * PAGE
    assert session.summary()["resident"] == sample
    text = render.interval_text(rec)
    assert "resident: 8K of 20K flagged (40.0%)" in text
    assert "25.0%" in text


def test_plain_interval_names_its_window_in_every_header() -> None:
    session = Session(header())
    _feed(session, _records(), S)
    text = render.interval_text(session.interval_snapshot(S), "12:00:00")
    lines = text.splitlines()
    assert lines[0].startswith("12:00:00  last 1s: 2 events, 3 lost;")
    assert any("- last 1s -" in line for line in lines)  # the windowed columns' group header
    assert "@allocation_size (last 1s):" in lines and "@lifetime (last 1s):" in lines
    assert any(line.startswith("[16K, 32K)") for line in lines)
