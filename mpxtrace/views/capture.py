"""``report LOG`` with views: the replayed session, and on the way the plot, the Perfetto
trace and the full-screen replay that were asked for."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, List, Optional

from ..events import Record
from ..stats import Session

__all__ = ["ViewError", "replay_capture"]


class ViewError(Exception):
    """A view cannot be made; the message says what to do."""


def _extra(module: str, extra: str, option: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise ViewError(f"{option} needs the `{extra}` extra: pip install 'mpxtrace[{extra}]'") from None


def replay_capture(header: Record, records: Iterable[Record], *, live: bool = False, speed: float = 1.0,
                   plot: Optional[Path] = None, perfetto: Optional[Path] = None, cumulative: bool = False) -> Session:
    """Replay the capture into a Session (the summary), making each requested view from it."""
    from .files import OutputError
    if plot is not None:
        _extra("matplotlib", "plot", "--plot")
        if plot.suffix.lower() not in (".png", ".svg"):
            raise ViewError(f"--plot {plot}: the file name must end in .png or .svg")
    if live:
        _extra("rich", "live", "--live")
    if speed <= 0:
        raise ViewError("--speed must be a positive factor (2 plays twice as fast)")
    kept: List[Record] = list(records) if (plot or perfetto or live) else []
    session = Session(header)
    for rec in kept or records:
        session.apply(rec)
    try:
        if plot is not None:
            from .plot import plot_capture
            plot_capture(header, kept, plot)
        if perfetto is not None:
            from .perfetto import write_perfetto
            write_perfetto(header, kept, perfetto)
    except OutputError as err:
        raise ViewError(str(err)) from None
    if live:
        from .live import replay_live
        from .replay import replay_intervals
        names = "|".join(header.get("names", [])) or f"mask {int(header.get('mask', 0)):#x}"
        replay_live((rec for _, rec in replay_intervals(header, kept, cumulative)),
                    f"mpxtrace replay {names} x{speed:g}", speed)
    return session
