"""bench/render_results.py states each issue-9 goal, the figure measured against it, and met or by
how much it is missed (the benchmark suite's verdicts are read from its results file)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from render_results import goal_rows, verdict  # noqa: E402


def test_verdicts_say_met_or_by_how_much() -> None:
    assert verdict(0.9, 1.0) == "met" and verdict(1.5, 1.5) == "met"
    assert verdict(3.0, 1.5) == "not met: 2.0x the goal"
    assert verdict(None, 1.0) == "not measured"


def test_goal_rows_take_fentry_and_fall_back_to_kprobe_pairs() -> None:
    results = {
        "lab": {
            "6.1": {"guest": {"overhead": {"mpx_added_over_bpftrace_added": {
                "mpx-auto/bpftrace-fentry/plain": 0.8, "mpx-auto/bpftrace-fentry/noreserve": 3.0,
                "mpx-auto/bpftrace-fentry/locked": 1.2}}}},
            "5.10": {"guest": {"overhead": {"mpx_added_over_bpftrace_added": {
                "mpx-kprobe/bpftrace-kprobe/plain": 2.0}}}},
        },
        "host": {"report": {"report_over_json_loads": 3.43}, "map_order": {"200000": {"descending_over_ascending": 0.96}},
                 "memory": {"session": {"bytes_per_vma": 86.0}}},
    }
    rows = "\n".join(goal_rows(results))
    assert "| 6.1, no flag: added cost ≤ 1x bpftrace's | 0.80x (mpx-auto / bpftrace-fentry) | met |" in rows
    assert "| 6.1, VM_NORESERVE: added cost ≤ 1.5x bpftrace's | 3.00x (mpx-auto / bpftrace-fentry) | not met: 2.0x the goal |" in rows
    assert "| 5.10, no flag: added cost ≤ 1x bpftrace's | 2.00x (mpx-kprobe / bpftrace-kprobe) | not met: 2.0x the goal |" in rows
    assert "| 5.10, VM_LOCKED: added cost ≤ 1.5x bpftrace's | – (mpx-kprobe / bpftrace-kprobe) | not measured |" in rows
    assert "3.43x | not met: 3.4x the goal |" in rows and "86 B | met |" in rows and "0.96x | met |" in rows


def test_the_host_drain_rate_is_stated_when_measured() -> None:
    from render_results import host_lines
    assert host_lines({"host": {}}) == []
    line = host_lines({"host": {"live_drain": {"events_per_s": 165593.2, "drain_over_json_loads": 3.157}}})[0]
    assert "165,593 events/s" in line and "3.16x" in line
