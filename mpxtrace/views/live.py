"""The full-screen live view (``trace`` on a terminal, ``report LOG --live``), built on rich.

It shows interval records only (see ``Session.interval_snapshot``): totals, rates, lost
events, the resident cost, the top processes, both histograms and a short history of live
bytes.  Keys: ``q`` quits, ``s`` cycles the sort column; the screen follows terminal resizes.
"""
from __future__ import annotations

import os
import select
import sys
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, Iterable, List, Optional

from rich.console import Console, RenderableType
from rich.layout import Layout
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..events import Record
from ..render import human_bytes, human_ns, window_label

__all__ = ["LiveScreen", "SORT_KEYS", "sparkline", "replay_live"]

# column shown -> how processes are ordered (largest first)
SORT_KEYS: Dict[str, Callable[[Dict[str, object]], float]] = {
    "live": lambda p: float(p["live_bytes"]),  # type: ignore[arg-type]
    "resident": lambda p: float(p.get("resident_bytes", -1)),  # type: ignore[arg-type]
    "allocs": lambda p: float(p["allocations"]),  # type: ignore[arg-type]
    "pid": lambda p: -float(p["pid"]),  # type: ignore[arg-type]
}
_BLOCKS = " ▁▂▃▄▅▆▇█"
COLUMNS = ("PID", "COMM", "LIVE", "VMAS", "RESIDENT", "%RSS", "%VSZ", "ALLOCS", "FREES", "ALLOC_B", "FREED_B")
NARROW_DROPS = ("%VSZ", "FREES", "FREED_B")  # left out below WIDE columns
WIDE = 100


def sparkline(values: Iterable[int], width: int) -> str:
    """The last `width` values, lowest to highest as ▁ to █ (a flat line sits in the middle)."""
    points = list(values)[-width:]
    if not points:
        return ""
    low, high = min(points), max(points)
    if high == low:
        return _BLOCKS[4] * len(points)
    return "".join(_BLOCKS[1 + round((v - low) / (high - low) * (len(_BLOCKS) - 2))] for v in points)


def _percent(share: object) -> str:
    return f"{100 * float(share):.1f}%" if share is not None else "-"  # type: ignore[arg-type]


def _histogram(hist: Dict[str, object], title: str, width: int) -> Panel:
    buckets: List[Dict[str, int]] = hist.get("buckets", [])  # type: ignore[assignment]
    label = human_bytes if hist.get("unit") == "bytes" else human_ns
    text = Text()
    peak = max((b["count"] for b in buckets), default=0)
    bar_width = max(5, width - 30)
    for b in buckets:
        bar = "█" * max(1, round(bar_width * b["count"] / peak)) if b["count"] else ""
        text.append(f"[{label(b['low'])}, {label(b['high'])})".ljust(16) + f"{b['count']:>7} ")
        text.append(bar + "\n", style="cyan")
    if not buckets:
        text.append("(no samples)", style="dim")
    return Panel(text, title=f"{title} ({hist.get('count', 0)})", title_align="left")


class LiveScreen:
    """Context manager: the alternate screen while it is open, keys read on a thread."""

    def __init__(self, title: str, on_quit: Callable[[], None], history: int = 120,
                 console: Optional[Console] = None) -> None:
        self.title = title
        self.on_quit = on_quit
        self.console = console or Console()
        self.sort = "live"
        self.quit_requested = False
        self._rec: Optional[Record] = None
        self._history: Deque[int] = deque(maxlen=history)
        self._live = Live(self, console=self.console, screen=True, auto_refresh=True, refresh_per_second=4)
        self._stop_keys = threading.Event()
        self._keys: Optional[threading.Thread] = None
        self._tty_state: Optional[List[Any]] = None  # termios.tcgetattr()'s list

    # rich calls this on every refresh: the newest record, the current sort, the current size
    def __rich__(self) -> RenderableType:
        return self.render(self.console.size.height)

    def update(self, rec: Record) -> None:
        self._history.append(int(rec["totals"]["live_bytes"]))
        self._rec = rec
        self._live.refresh()

    def cycle_sort(self) -> None:
        names = list(SORT_KEYS)
        self.sort = names[(names.index(self.sort) + 1) % len(names)]
        self._live.refresh()

    def render(self, height: int) -> RenderableType:
        rec = self._rec
        layout = Layout()
        if rec is None:
            return Panel(Text(f"{self.title}\nwaiting for the first interval...  (q quits)"))
        label = window_label(rec)
        totals, rate = rec["totals"], rec["rate"]
        head = Text()
        head.append(f"{self.title}   {label}\n", style="bold")
        processes = int(totals["processes"])
        head.append(f"live {human_bytes(totals['live_bytes'])} in {totals['live_vmas']} VMAs, "
                    f"{processes} process{'' if processes == 1 else 'es'}   ")
        head.append(f"+{human_bytes(rate['allocated_bytes_per_s'])}/s -{human_bytes(rate['freed_bytes_per_s'])}/s, "
                    f"{rate['events_per_s']:.0f} events/s   ")
        head.append(f"lost {rec['lost_events']}", style="bold red" if rec["lost_events"] else "green")
        kernel = rec.get("kernel")
        if kernel:  # counted in the kernel: complete when the stream lost events (tallies.py)
            head.append(f"\nkernel counted: {kernel['mapped']} mappings +{human_bytes(kernel['mapped_bytes_per_s'])}/s, "
                        f"{kernel['destroyed']} destroyed -{human_bytes(kernel['destroyed_bytes_per_s'])}/s, "
                        f"{kernel['events_per_s']:.0f} events/s")
        resident = rec.get("resident")
        if resident:
            live = int(totals["live_bytes"])
            res = int(resident["flagged_resident_bytes"])
            head.append(f"\nresident {human_bytes(res)} ({_percent(res / live if live else 0)} of flagged), "
                        f"{_percent(resident['ram_share'])} of RAM {human_bytes(int(resident['mem_total_bytes']))}")
        width = self.console.size.width
        history = list(self._history)
        head.append(f"\nlive bytes, last {len(history)} intervals ({human_bytes(min(history))} to "
                    f"{human_bytes(max(history))}) ")
        head.append(sparkline(history, max(10, width - 50)), style="magenta")
        table = Table(expand=True, title=Text(f"LIVE, VMAS, RESIDENT, %: now    ALLOCS, FREES, ALLOC_B, FREED_B: {label}"), title_justify="left",
                      caption=Text(f"sorted by {self.sort}   s: sort   q: quit"), caption_justify="left")
        columns = [c for c in COLUMNS if width >= WIDE or c not in NARROW_DROPS]
        for name in columns:
            table.add_column(name, justify="left" if name == "COMM" else "right", no_wrap=True,
                             min_width=None if name == "COMM" else min(len(name), 6),
                             style="bold" if name.lower() == self.sort else None)
        rows_sorted = sorted(rec["processes"], key=SORT_KEYS[self.sort], reverse=True)
        hist_height = 2 + max(1, *(len(rec["histograms"][n]["buckets"]) for n in ("allocation_size", "lifetime")))
        head_height = head.plain.count("\n") + 3
        rows = max(1, height - head_height - hist_height - 6)  # 6: title, borders, header, caption
        for p in rows_sorted[:rows]:
            cells = {"PID": str(p["pid"] or "?"), "COMM": str(p["comm"])[:16], "LIVE": human_bytes(int(p["live_bytes"])),
                     "VMAS": str(p["live_vmas"]),
                     "RESIDENT": human_bytes(int(p["resident_bytes"])) if "resident_bytes" in p else "-",
                     "%RSS": _percent(p.get("rss_share")), "%VSZ": _percent(p.get("vsize_share")),
                     "ALLOCS": str(p["allocations"]), "FREES": str(p["frees"]),
                     "ALLOC_B": human_bytes(int(p["allocated_bytes"])), "FREED_B": human_bytes(int(p["freed_bytes"]))}
            table.add_row(*(cells[c] for c in columns))
        if len(rows_sorted) > rows:
            table.add_row("", f"... {len(rows_sorted) - rows} more", *[""] * (len(columns) - 2))
        hists = Layout()
        hists.split_row(Layout(_histogram(rec["histograms"]["allocation_size"], f"allocation size, {label}", width // 2)),
                        Layout(_histogram(rec["histograms"]["lifetime"], f"lifetime, {label}", width // 2)))
        shown = min(rows, len(rows_sorted)) + (len(rows_sorted) > rows)
        layout.split_column(Layout(Panel(head), size=head_height), Layout(table, size=shown + 6),
                            Layout(hists, size=hist_height), Layout(Text(" ")))  # slack at the bottom
        return layout

    # -- keys ------------------------------------------------------------------------------
    @property
    def reads_keys(self) -> bool:
        return self._keys is not None

    def _read_keys(self, fd: int) -> None:
        while not self._stop_keys.is_set():
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            key = os.read(fd, 1)
            if key in (b"q", b"Q", b"\x03"):
                self.quit_requested = True
                self.on_quit()
            elif key in (b"s", b"S"):
                self.cycle_sort()

    def __enter__(self) -> "LiveScreen":
        self._live.__enter__()
        if sys.stdin.isatty():
            import termios
            import tty
            fd = sys.stdin.fileno()
            self._tty_state = termios.tcgetattr(fd)
            tty.setcbreak(fd)
            self._keys = threading.Thread(target=self._read_keys, args=(fd,), daemon=True)
            self._keys.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_keys.set()
        if self._keys is not None:
            self._keys.join()
        if self._tty_state is not None:
            import termios
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self._tty_state)
        self._live.__exit__(None, None, None)


def replay_live(intervals: Iterable[Record], title: str, speed: float) -> int:
    """Show interval records one by one, each after its window (divided by `speed`) has passed;
    returns how many were shown."""
    shown = 0
    with LiveScreen(title, on_quit=lambda: None) as screen:
        for rec in intervals:
            deadline = time.monotonic() + int(rec["window_ns"]) / 1e9 / speed
            while not screen.quit_requested and time.monotonic() < deadline:
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
            if screen.quit_requested:
                break
            screen.update(rec)
            shown += 1
        while not screen.quit_requested and screen.reads_keys:  # the last picture stays until q
            time.sleep(0.05)
    return shown
