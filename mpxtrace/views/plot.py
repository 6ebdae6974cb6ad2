"""``report LOG --plot FILE.png|.svg``: a picture of a capture (matplotlib, extra ``plot``).

Top: flagged bytes over time for the processes that held the most; below: the allocation-size
and lifetime histograms of the whole capture.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List, Tuple

from ..events import Record
from ..render import human_bytes, human_ns
from .files import create_private
from .replay import replay_intervals

__all__ = ["plot_capture", "FORMATS", "SIZE_INCHES", "DPI"]

FORMATS = ("png", "svg")
SIZE_INCHES = (10.0, 7.5)
DPI = 100  # a PNG is 1000x750 pixels
TOP_PROCESSES = 8


def _series(header: Record, records: Iterable[Record]) -> Tuple[List[float], Dict[str, List[float]], Record]:
    """Seconds since start, live bytes per process (label -> value per interval), the summary."""
    times: List[float] = []
    live: Dict[str, List[float]] = {}
    session = None
    start = int(header["start_ns"])
    for session, rec in replay_intervals(header, records):
        index = len(times)
        times.append((int(rec["ts"]) - start) / 1e9)
        for proc in rec["processes"]:
            label = f"{proc['comm'] or '?'} [{proc['pid']}]"
            column = live.setdefault(label, [0.0] * index)
            column.extend([0.0] * (index - len(column)))
            column.append(float(proc["live_bytes"]))
    for column in live.values():
        column.extend([0.0] * (len(times) - len(column)))
    assert session is not None
    return times, live, session.summary()


def _bars(ax: object, hist: Record, title: str) -> None:
    label = human_bytes if hist["unit"] == "bytes" else human_ns
    buckets = hist["buckets"]
    names = [f"[{label(b['low'])}, {label(b['high'])})" for b in buckets]
    ax.barh(range(len(buckets)), [b["count"] for b in buckets], color="tab:blue")  # type: ignore[attr-defined]
    ax.set_yticks(range(len(buckets)))  # type: ignore[attr-defined]
    ax.set_yticklabels(names, fontsize=8)  # type: ignore[attr-defined]
    ax.set_xlabel("count")  # type: ignore[attr-defined]
    ax.set_title(f"{title} ({hist['count']} samples)")  # type: ignore[attr-defined]
    if not buckets:
        ax.text(0.5, 0.5, "no samples", ha="center", va="center", transform=ax.transAxes)  # type: ignore[attr-defined]
        ax.set_xticks([])  # type: ignore[attr-defined]


def plot_capture(header: Record, records: Iterable[Record], path: Path) -> Record:
    """Draw the capture to `path` (format from its suffix); returns the replayed summary."""
    fmt = path.suffix.lstrip(".").lower()
    if fmt not in FORMATS:
        raise ValueError(f"--plot {path}: the file name must end in .png or .svg")
    import matplotlib
    matplotlib.use("Agg")  # no display needed
    from matplotlib import pyplot as plt
    from matplotlib.ticker import FuncFormatter

    times, live, summary = _series(header, records)
    top = sorted(live, key=lambda name: -max(live[name], default=0))[:TOP_PROCESSES]
    fig = plt.figure(figsize=SIZE_INCHES, dpi=DPI)
    grid = fig.add_gridspec(2, 2, height_ratios=[3, 2])
    over_time = fig.add_subplot(grid[0, :])
    for name in top:
        # an interval record holds the state at the end of its window
        over_time.step(times, live[name], where="pre", label=name)
    over_time.yaxis.set_major_formatter(FuncFormatter(lambda v, _: human_bytes(int(v))))
    over_time.set_xlabel("seconds since start")
    over_time.set_ylabel("flagged bytes (virtual)")
    names = "|".join(summary["flags"].get("names", [])) or f"mask {summary['flags'].get('mask', 0):#x}"
    over_time.set_title(f"{names}: flagged bytes per process (top {len(top)})")
    if top:
        over_time.legend(fontsize=8, loc="upper left")
    _bars(fig.add_subplot(grid[1, 0]), summary["histograms"]["allocation_size"], "allocation size")
    _bars(fig.add_subplot(grid[1, 1]), summary["histograms"]["lifetime"], "lifetime")
    fig.tight_layout()
    with create_private(path) as fh:
        fig.savefig(fh, format=fmt, dpi=DPI)
    plt.close(fig)
    return summary
