"""Human-readable output: bpftrace-style histograms, per-process tables, the summary.

JSON output needs no code here: every record is already a dict (NDJSON, one per line).
"""
from __future__ import annotations

from typing import Dict, List, Sequence

from .events import Record

__all__ = ["human_bytes", "human_ns", "histogram_text", "processes_text", "summary_text"]

_BYTE_UNITS = ("", "K", "M", "G", "T", "P", "E")


def human_bytes(n: int) -> str:
    """Powers of 1024 the way bpftrace labels buckets: 4M, 512K, 0."""
    value = float(n)
    for unit in _BYTE_UNITS:
        if abs(value) < 1024 or unit == _BYTE_UNITS[-1]:
            return f"{int(value)}{unit}" if value == int(value) else f"{value:.1f}{unit}"
        value /= 1024
    return str(n)


def human_ns(ns: int) -> str:
    for unit, scale in (("s", 1_000_000_000), ("ms", 1_000_000), ("us", 1_000)):
        if ns >= scale:
            value = ns / scale
            return f"{value:.0f}{unit}" if value == int(value) or value >= 100 else f"{value:.1f}{unit}"
    return f"{ns}ns"


def histogram_text(hist: Dict[str, object], title: str, width: int = 40) -> List[str]:
    buckets: List[Dict[str, int]] = hist.get("buckets", [])  # type: ignore[assignment]
    unit = str(hist.get("unit"))
    label = human_bytes if unit == "bytes" else human_ns
    lines = [f"@{title}:"]
    if not buckets:
        return lines + ["  (no samples)"]
    peak = max(b["count"] for b in buckets)
    for b in buckets:
        bar = "@" * max(1, round(width * b["count"] / peak)) if b["count"] else ""
        lines.append(f"[{label(b['low'])}, {label(b['high'])})".ljust(22) + f"{b['count']:>8} |{bar.ljust(width)}|")
    return lines


def processes_text(processes: Sequence[Dict[str, object]], deltas: bool = False) -> List[str]:
    header = f"{'PID':>7} {'COMM':<16} {'LIVE':>9} {'VMAS':>5} {'ALLOCS':>7} {'FREES':>6} {'ALLOC_B':>9} {'FREED_B':>9}"
    lines = [header]
    for p in processes:
        pid = p["pid"] or "?"
        lines.append(
            f"{pid!s:>7} {str(p['comm'])[:16]:<16} {human_bytes(int(p['live_bytes'])):>9} {p['live_vmas']!s:>5} "  # type: ignore[call-overload]
            f"{p['allocations']!s:>7} {p['frees']!s:>6} {human_bytes(int(p['allocated_bytes'])):>9} "  # type: ignore[call-overload]
            f"{human_bytes(int(p['freed_bytes'])):>9}{'  (exited)' if p.get('exited') else ''}")  # type: ignore[call-overload]
    if len(lines) == 1:
        lines.append("  (no process holds flagged memory)")
    return lines


def summary_text(summary: Record) -> str:
    flags = summary.get("flags", {})
    totals = summary["totals"]
    out = [
        f"mpxtrace summary: {'|'.join(flags.get('names', []))} (mask {int(flags.get('mask', 0)):#x}), "
        f"{human_ns(int(summary['duration_ns']))}, {summary['events']} events, lost {summary['lost_events']}"
        + ("" if summary.get("complete", True) else "  [log ends without an end record: tracer was killed]"),
        f"live {human_bytes(totals['live_bytes'])} in {totals['live_vmas']} VMAs; "
        f"{totals['allocations']} allocations ({human_bytes(totals['allocated_bytes'])}), "
        f"{totals['frees']} frees ({human_bytes(totals['freed_bytes'])}), {totals['merges']} merges",
        "",
    ]
    if summary["lost_events"]:
        out.insert(1, f"WARNING: {summary['lost_events']} events lost ({summary['lost_by_source']}): "
                      "the live figures may be off; use a larger interval or fewer processes (-p)")
    out += processes_text(summary["processes"])
    out.append("")
    out += histogram_text(summary["histograms"]["allocation_size"], "allocation_size")
    out.append("")
    out += histogram_text(summary["histograms"]["lifetime"], "lifetime")
    if summary["timeline"]:
        out += ["", f"{'T+':>8} {'ALLOCS':>7} {'ALLOC_B':>9} {'FREES':>6} {'FREED_B':>9}"]
        for row in summary["timeline"]:
            out.append(f"{human_ns(row['t_ns']) if row['t_ns'] else '0s':>8} {row['allocations']:>7} "
                       f"{human_bytes(row['allocated_bytes']):>9} {row['frees']:>6} {human_bytes(row['freed_bytes']):>9}")
    for anomaly in summary["anomalies"]:
        out.append(f"ANOMALY pid {anomaly['pid']} [{anomaly['start']}, {anomaly['end']}): {anomaly['what']}")
    return "\n".join(out)
