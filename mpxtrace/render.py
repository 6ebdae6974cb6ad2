"""Human-readable output: bpftrace-style histograms, per-process tables, the summary.

JSON output needs no code here: every record is already a dict (NDJSON, one per line).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from .events import Record

__all__ = ["human_bytes", "human_ns", "histogram_text", "processes_text", "summary_text", "window_label",
           "interval_text", "resident_text", "kernel_tallies_text"]

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


def processes_text(processes: Sequence[Dict[str, object]]) -> List[str]:
    header = f"{'PID':>7} {'COMM':<16} {'LIVE':>9} {'VMAS':>5} {'ALLOCS':>7} {'FREES':>6} {'ALLOC_B':>9} {'FREED_B':>9}"
    lines = [header]
    for p in processes:
        pid = p["pid"] or "?"
        lines.append(
            f"{pid!s:>7} {str(p['comm'])[:16]:<16} {human_bytes(int(p['live_bytes'])):>9} {p['live_vmas']!s:>5} "  # type: ignore[call-overload]
            f"{p['allocations']!s:>7} {p['frees']!s:>6} {human_bytes(int(p['allocated_bytes'])):>9} "  # type: ignore[call-overload]
            f"{human_bytes(int(p['freed_bytes'])):>9}{'  (exited)' if p.get('exited') else ''}"  # type: ignore[call-overload]
            f"{_lost_note(p)}")
    if len(lines) == 1:
        lines.append("  (no process holds flagged memory)")
    return lines


def _lost_note(process: Dict[str, object]) -> str:
    """Events of its address space the stream refused (lostspaces.py), and whether its picture
    is still provisional for it."""
    notes = []
    if process.get("lost_events"):
        notes.append(f"{process['lost_events']} events lost")
    if process.get("resync_pending"):
        notes.append("resync pending")
    return f"  ({', '.join(notes)})" if notes else ""


def window_label(rec: Record) -> str:
    """Which window an interval record's counts cover: `last 1s` or `since start (12s)`."""
    span = human_ns(int(rec["window_ns"])) if rec["window_ns"] else "0s"
    return f"since start ({span})" if rec.get("window") == "since_start" else f"last {span}"


def _percent(share: object) -> str:
    return f"{100 * float(share):.1f}%" if share is not None else "-"  # type: ignore[arg-type]


def resident_text(resident: Dict[str, object], live_bytes: int) -> str:
    """One line: the flagged memory in RAM, and its share of the virtual size and of RAM."""
    res = int(resident["flagged_resident_bytes"])  # type: ignore[call-overload]
    return (f"resident: {human_bytes(res)} of {human_bytes(live_bytes)} flagged "
            f"({_percent(res / live_bytes if live_bytes else 0)}), {_percent(resident['ram_share'])} of RAM "
            f"({human_bytes(int(resident['mem_total_bytes']))}); sampled {resident['processes_sampled']} "  # type: ignore[call-overload]
            f"process{'' if resident['processes_sampled'] == 1 else 'es'} "
            f"in {human_ns(int(resident['sample_ns']))}")  # type: ignore[call-overload]


def interval_text(rec: Record, clock: str = "") -> str:
    """An interval record as bcc tools print one: a headline, the process table, both histograms.

    Every windowed column covers the window named in the headers; LIVE, VMAS and the resident
    columns are as of the end of it.
    """
    label = window_label(rec)
    totals = rec["totals"]
    out = [f"{clock + '  ' if clock else ''}{label}: {rec['events']} events, {rec['lost_events']} lost; "
           f"{totals['allocations']} allocations ({human_bytes(totals['allocated_bytes'])}, "
           f"{human_bytes(rec['rate']['allocated_bytes_per_s'])}/s), {totals['frees']} frees "
           f"({human_bytes(totals['freed_bytes'])}); live {human_bytes(totals['live_bytes'])} in "
           f"{totals['live_vmas']} VMAs"]
    if rec["lost_events"]:
        out.append(f"WARNING: {rec['lost_events']} events lost {label} ({rec['lost_by_source']})")
    kernel = rec.get("kernel")
    if kernel and rec["lost_events"]:
        out.append(f"kernel counted {label} (complete): {kernel['events']} events, {kernel['mapped']} flagged "
                   f"mappings made ({human_bytes(kernel['mapped_bytes'])}, {human_bytes(kernel['mapped_bytes_per_s'])}/s), "
                   f"{kernel['destroyed']} flagged VMAs destroyed ({human_bytes(kernel['destroyed_bytes'])})")
    if rec.get("resident"):
        out.append(resident_text(rec["resident"], int(totals["live_bytes"])))
    now_cols = f"{'LIVE':>9} {'VMAS':>5} {'RESIDENT':>9} {'%RSS':>6} {'%VSZ':>6}"
    win_cols = f"{'ALLOCS':>7} {'FREES':>6} {'ALLOC_B':>9} {'FREED_B':>9}"
    out.append(" " * 25 + f"{' now ':-^{len(now_cols)}} {' ' + label + ' ':-^{len(win_cols)}}")
    out.append(f"{'PID':>7} {'COMM':<16} {now_cols} {win_cols}")
    for p in rec["processes"]:
        resident = human_bytes(int(p["resident_bytes"])) if "resident_bytes" in p else "-"
        out.append(
            f"{p['pid'] or '?'!s:>7} {str(p['comm'])[:16]:<16} {human_bytes(int(p['live_bytes'])):>9} "
            f"{p['live_vmas']!s:>5} {resident:>9} {_percent(p.get('rss_share')):>6} {_percent(p.get('vsize_share')):>6} "
            f"{p['allocations']!s:>7} {p['frees']!s:>6} {human_bytes(int(p['allocated_bytes'])):>9} "
            f"{human_bytes(int(p['freed_bytes'])):>9}{'  (exited)' if p.get('exited') else ''}")
    if not rec["processes"]:
        out.append("  (no process holds flagged memory)")
    for name in ("allocation_size", "lifetime"):
        out.append("")
        out += histogram_text(rec["histograms"][name], f"{name} ({label})")
    return "\n".join(out)


def _incomplete_note(summary: Record) -> str:
    """Why a summary is incomplete: damaged records `report` skipped, or a log cut short."""
    if summary.get("complete", True):
        return ""
    notes = []
    if summary.get("skipped_records"):
        notes.append(f"{summary['skipped_records']} damaged records skipped")
    if summary.get("ended") is False or not summary.get("skipped_records"):
        notes.append("log ends without an end record: the tracer did not finish")
    return "  [incomplete: " + "; ".join(notes) + "]"


def kernel_tallies_text(tallies: Optional[Record], stream_lost: bool) -> List[str]:
    """What the kernel program counted itself (tallies.py); its histograms when the stream's are short."""
    if not tallies:
        return []
    mapped, destroyed = tallies["mapped"], tallies["destroyed"]
    out = ["", f"kernel counted (no stream loss touches these): {tallies['events']} events; "
               f"{mapped['count']} flagged mappings made ({human_bytes(mapped['sum'])}), "
               f"{destroyed['count']} flagged VMAs destroyed ({human_bytes(destroyed['sum'])})"]
    if stream_lost:
        out += [""] + histogram_text(mapped, "mapped_size (kernel, complete)")
        out += [""] + histogram_text(destroyed, "destroyed_size (kernel, complete)")
        out += [""] + histogram_text(tallies["lifetime"], "lifetime (kernel: mappings destroyed as made)")
    return out


def summary_text(summary: Record) -> str:
    flags = summary.get("flags", {})
    totals = summary["totals"]
    out = [
        f"mpxtrace summary: {'|'.join(flags.get('names', []))} (mask {int(flags.get('mask', 0)):#x}), "
        f"{human_ns(int(summary['duration_ns']))}, {summary['events']} events, lost {summary['lost_events']}"
        + _incomplete_note(summary),
        f"live {human_bytes(totals['live_bytes'])} in {totals['live_vmas']} VMAs; "
        f"{totals['allocations']} allocations ({human_bytes(totals['allocated_bytes'])}), "
        f"{totals['frees']} frees ({human_bytes(totals['freed_bytes'])}), {totals['merges']} merges",
        "",
    ]
    if summary["lost_events"]:
        if summary.get("resyncs"):
            effect = (f"live figures re-read from smaps after the losses ({summary['resyncs']} resyncs); "
                      "histograms, timeline and counts miss the lost events")
        else:
            effect = "the live figures may be off, and the histograms miss the lost events"
        out.insert(1, f"WARNING: {summary['lost_events']} events lost ({summary['lost_by_source']}): {effect}; "
                      "a larger --buffer-pages or fewer processes (-p) loses fewer")
    if summary.get("resident"):
        out.insert(-1, resident_text(summary["resident"], int(totals["live_bytes"])) + " (last sample)")
    out += processes_text(summary["processes"])
    out.append("")
    out += histogram_text(summary["histograms"]["allocation_size"], "allocation_size")
    out.append("")
    out += histogram_text(summary["histograms"]["lifetime"], "lifetime")
    out += kernel_tallies_text(summary.get("kernel_tallies"), bool(summary["lost_events"]))
    if summary["timeline"]:
        out += ["", f"{'T+':>8} {'ALLOCS':>7} {'ALLOC_B':>9} {'FREES':>6} {'FREED_B':>9}"]
        for row in summary["timeline"]:
            out.append(f"{human_ns(row['t_ns']) if row['t_ns'] else '0s':>8} {row['allocations']:>7} "
                       f"{human_bytes(row['allocated_bytes']):>9} {row['frees']:>6} {human_bytes(row['freed_bytes']):>9}")
    out += anomalies_text(summary)
    return "\n".join(out)


ANOMALIES_SHOWN = 10


def anomalies_text(summary: Record) -> List[str]:
    """The first anomalies, then how many there were and how many followed a loss."""
    anomalies = summary["anomalies"]
    out = [f"ANOMALY pid {a['pid']} [{a['start']}, {a['end']}): {a['what']}"
           + (" (after lost events)" if a.get("after_loss") else "") for a in anomalies[:ANOMALIES_SHOWN]]
    count = int(summary.get("anomaly_count", len(anomalies)))
    after_loss = int(summary.get("anomalies_after_loss", 0))
    if count > len(out) or after_loss:
        note = f"{count} anomalies in all"
        if count > len(out):
            note += f" ({count - len(out)} not shown; `--json` lists the first {len(anomalies)})"
        if after_loss:
            note += (f"; {after_loss} in processes that had lost events, whose picture was then provisional: "
                     "those likely come from the loss, not from the kernel")
        out.append(note)
    return out
