"""Render a bench/suite.py results file as the Markdown tables README's performance section uses.

    .venv/bin/python bench/render_results.py bench/results/<timestamp>.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

WORKLOADS = (("plain", "no flag"), ("noreserve", "VM_NORESERVE"), ("locked", "VM_LOCKED"))


def _x(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.2f}x"


def _n(value: Optional[float], fmt: str = "{:,.0f}") -> str:
    return "–" if value is None else fmt.format(value)


def hot_path_rows(results: Dict[str, Any]) -> List[str]:
    rows = ["| kernel | memory | untraced µs/pair | mpxtrace (auto) | bpftrace (fentry) | added cost mpxtrace / bpftrace "
            "| mpxtrace kprobe | bpftrace kprobe | added cost kprobe / kprobe |",
            "|---|---|---|---|---|---|---|---|---|"]
    for kernel, lab in results.get("lab", {}).items():
        guest = lab.get("guest") or {}
        runs = guest.get("overhead", {}).get("runs", {})
        ratios = guest.get("overhead", {}).get("mpx_added_over_bpftrace_added", {})
        for name, label in WORKLOADS:
            def r(phase: str) -> Optional[float]:
                row = runs.get(f"{phase}/{name}")
                return row["vs_untraced"] if row else None

            def spread(phase: str) -> str:
                row = runs.get(f"{phase}/{name}")
                if not row or not runs.get(f"none/{name}"):
                    return "–"
                base = runs[f"none/{name}"]["median"]
                return f"{row['median'] / base:.2f}x ({row['min'] / base:.2f}–{row['max'] / base:.2f})"
            base = runs.get(f"none/{name}")
            rows.append(f"| {kernel} | {label} | {_n(base['us_per_pair'] if base else None, '{:.1f}')} "
                        f"| {spread('mpx-auto')} | {spread('bpftrace-fentry')} "
                        f"| {_x(ratios.get(f'mpx-auto/bpftrace-fentry/{name}'))} "
                        f"| {_x(r('mpx-kprobe'))} | {_x(r('bpftrace-kprobe'))} "
                        f"| {_x(ratios.get(f'mpx-kprobe/bpftrace-kprobe/{name}'))} |")
    return rows


def load_rows(results: Dict[str, Any]) -> List[str]:
    rows = ["| kernel | start-up mpxtrace / bpftrace (s) | drain events/s | stress-ng 20 s, VM_NORESERVE: applied / lost "
            "| VM_LOCKED: applied / lost | tracer peak RSS (MiB) |", "|---|---|---|---|---|---|"]
    for kernel, lab in results.get("lab", {}).items():
        guest = lab.get("guest") or {}
        start = guest.get("startup", {})
        mpx, peer = start.get("mpx-auto", {}).get("median_s"), start.get("bpftrace-fentry", {}).get("median_s")
        peer_note = ""
        if peer is None and "bpftrace-kprobe" in start:  # e.g. bpftrace 0.11 on 5.10 has no kfunc there
            peer, peer_note = start["bpftrace-kprobe"]["median_s"], " (kprobe)"
        drain = guest.get("drain", {})
        stress = guest.get("stress", {})
        cells = []
        for flag in ("VM_NORESERVE", "VM_LOCKED"):
            s = stress.get(flag) or {}
            cells.append(f"{_n(s.get('events_applied'))} / {_n(s.get('lost_events'))}" if s else "–")
        peaks = [stress[f]["peak_rss_mib"] for f in ("VM_NORESERVE", "VM_LOCKED") if stress.get(f)]
        rows.append(f"| {kernel} | {_n(mpx, '{:.1f}')} / {_n(peer, '{:.1f}')}{peer_note} | {_n(drain.get('events_per_s'))} "
                    f"| {cells[0]} | {cells[1]} | {_n(max(peaks) if peaks else None)} |")
    return rows


# issue 9's goals: mpxtrace's added cost per mmap+munmap against bpftrace's, in the same boot
HOT_PATH_GOALS = (("plain", "no flag", 1.0), ("noreserve", "VM_NORESERVE", 1.5), ("locked", "VM_LOCKED", 1.5))


def verdict(value: Optional[float], limit: float) -> str:
    if value is None:
        return "not measured"
    return "met" if value <= limit else f"not met: {value / limit:.1f}x the goal"


def goal_rows(results: Dict[str, Any]) -> List[str]:
    """Each goal, the figure measured against it, and whether it is met or by how much it is missed."""
    rows = ["| goal | measured | verdict |", "|---|---|---|"]
    for kernel, lab in results.get("lab", {}).items():
        ratios = ((lab.get("guest") or {}).get("overhead") or {}).get("mpx_added_over_bpftrace_added", {})
        for name, label, limit in HOT_PATH_GOALS:
            pair = "mpx-auto/bpftrace-fentry"
            value = ratios.get(f"{pair}/{name}")
            if value is None:  # no fentry bpftrace there (5.10's 0.11, 7.2's failed builds): kprobe to kprobe
                pair = "mpx-kprobe/bpftrace-kprobe"
                value = ratios.get(f"{pair}/{name}")
            rows.append(f"| {kernel}, {label}: added cost ≤ {limit:g}x bpftrace's | {_x(value)} ({pair.replace('/', ' / ')}) "
                        f"| {verdict(value, limit)} |")
    host = results.get("host") or {}
    report = host.get("report") or {}
    order = (host.get("map_order") or {}).get("200000") or {}
    memory = ((host.get("memory") or {}).get("session") or {})
    for goal, value, limit, shown in (
            ("`report` of 1,000,000 events ≤ 1x json.loads of its lines", report.get("report_over_json_loads"), 1.0,
             _x(report.get("report_over_json_loads"))),
            ("200k maps descending ≤ 1.5x ascending", order.get("descending_over_ascending"), 1.5,
             _x(order.get("descending_over_ascending"))),
            ("≤ 200 bytes per live VMA (1,000,000 over 1,000 spaces)", memory.get("bytes_per_vma"), 200.0,
             _n(memory.get("bytes_per_vma"), "{:.0f} B"))):
        rows.append(f"| {goal} | {shown} | {verdict(value, limit)} |")
    return rows


def markdown(results: Dict[str, Any]) -> str:
    m = results.get("machine", {})
    loads = [lab.get("load_before", {}) for lab in results.get("lab", {}).values()]
    busiest = max((l.get("qemu_guests") or 0 for l in loads), default=0)
    head = (f"{results.get('date')} on {m.get('cpu')} ({m.get('cpus')} CPUs, QEMU {m.get('accel', 'tcg').upper()}); "
            f"host load average {results.get('load_at_start', {}).get('loadavg', ['?'])[0]:.1f} at start, "
            f"up to {busiest} QEMU guests running (ours included); mpxtrace {results.get('mpxtrace')} "
            f"({results.get('git', {}).get('commit', '')[:10]}){' QUICK RUN' if results.get('quick') else ''}.")
    versions = []
    for kernel, lab in results.get("lab", {}).items():
        g = lab.get("guest") or {}
        versions.append(f"{kernel}: {lab.get('release')}, BCC {g.get('bcc')}, {g.get('bpftrace')}, "
                        f"{(g.get('stress_ng') or 'no stress-ng').split(' (')[0]}")
    return "\n".join([head, "", *hot_path_rows(results), "", *load_rows(results), "", *host_lines(results),
                      *goal_rows(results), "", "Versions: " + "; ".join(versions)])


def host_lines(results: Dict[str, Any]) -> List[str]:
    """The host's live drain rate (issue 9 asks for it measured, with no goal), when measured."""
    drain = (results.get("host") or {}).get("live_drain")
    if not drain:
        return []
    return [f"Live drain on the host (decode → model → log, `bench/live_drain.py`): {_n(drain.get('events_per_s'))} "
            f"events/s, {_x(drain.get('drain_over_json_loads'))} the time json.loads takes for the log lines it wrote.", ""]


def print_table(results: Dict[str, Any]) -> None:
    print(markdown(results))
    for kernel, lab in results.get("lab", {}).items():
        if lab.get("error"):
            print(f"lab {kernel}: {lab['error']}")
        for what, why in ((lab.get("guest") or {}).get("skipped") or {}).items():
            print(f"lab {kernel}: skipped {what}: {why[:300]}")
        for what, why in ((lab.get("guest") or {}).get("overhead", {}).get("skipped") or {}).items():
            print(f"lab {kernel}: skipped {what}: {why[:300]}")


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: render_results.py RESULTS.json")
    print(markdown(json.loads(Path(sys.argv[1]).read_text())))


if __name__ == "__main__":
    main()
