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
from .perfetto import replay_events

__all__ = ["plot_capture", "FORMATS", "SIZE_INCHES", "DPI"]

FORMATS = ("png", "svg")
SIZE_INCHES = (10.0, 7.5)
DPI = 100  # a PNG is 1000x750 pixels
TOP_PROCESSES = 8


def _series(header: Record, records: Iterable[Record]) -> Tuple[Dict[str, Tuple[List[float], List[float]]], Record, float]:
    """Live bytes per process at every change (label -> (seconds, bytes)), the summary, the capture's length."""
    session, events, names = replay_events(header, records)
    series: Dict[str, Tuple[List[float], List[float]]] = {}
    for event in events:
        if event["ph"] != "C":
            continue
        pid = int(event["pid"])  # type: ignore[call-overload]
        times, values = series.setdefault(f"{names.get(pid) or '?'} [{pid}]", ([], []))
        times.append(float(event["ts"]) / 1e6)  # type: ignore[arg-type]
        values.append(float(event["args"]["bytes"]))  # type: ignore[index]
    summary = session.summary()
    return series, summary, int(summary["duration_ns"]) / 1e9


def _binary_ticks(peak: float) -> float:
    """A tick step that is a power of two bytes and gives 3 to 8 ticks up to `peak`."""
    step = 1.0
    while peak / step > 8:
        step *= 2
    return step


def _bars(ax: object, hist: Record, title: str) -> None:
    label = human_bytes if hist["unit"] == "bytes" else human_ns
    buckets = hist["buckets"]
    names = [f"[{label(b['low'])}, {label(b['high'])})" for b in buckets]
    ax.barh(range(len(buckets)), [b["count"] for b in buckets], color="tab:blue")  # type: ignore[attr-defined]
    ax.set_yticks(range(len(buckets)))  # type: ignore[attr-defined]
    ax.set_yticklabels(names, fontsize=8)  # type: ignore[attr-defined]
    ax.set_xlabel("count")  # type: ignore[attr-defined]
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # type: ignore[attr-defined]
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
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    series, summary, length = _series(header, records)
    top = sorted(series, key=lambda name: -max(series[name][1], default=0))[:TOP_PROCESSES]
    fig = plt.figure(figsize=SIZE_INCHES, dpi=DPI)
    grid = fig.add_gridspec(2, 2, height_ratios=[3, 2])
    over_time = fig.add_subplot(grid[0, :])
    peak = 0.0
    for name in top:
        times, values = series[name]
        # a value holds from its change until the next one, and until the capture ends
        over_time.step(times + [length], values + values[-1:], where="post", label=name)
        peak = max(peak, max(values))
    over_time.set_xlim(0, max(length, 1e-3))
    over_time.set_ylim(0, max(peak * 1.05, 1))
    over_time.yaxis.set_major_locator(MultipleLocator(_binary_ticks(peak)))
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
