"""Replay a captured log through a Session, cutting it into intervals as the live run did."""
from __future__ import annotations

from typing import Callable, Iterable, Iterator, Optional, Tuple

from ..events import Record
from ..stats import Session

__all__ = ["replay_intervals"]


def replay_intervals(header: Record, records: Iterable[Record], cumulative: bool = False,
                     on_record: Optional[Callable[[Record, Session], None]] = None,
                     ) -> Iterator[Tuple[Session, Record]]:
    """(session, interval record) at every interval boundary of the log (header's interval_ns,
    from its start_ns) and once at its end; the session is the same object throughout."""
    session = Session(header)
    step = int(header["interval_ns"])
    boundary = int(header["start_ns"]) + step
    for rec in records:
        ts = rec.get("ts")
        while ts is not None and int(ts) >= boundary:
            yield session, session.interval_snapshot(boundary, cumulative)
            boundary += step
        session.apply(rec)
        if on_record is not None:
            on_record(rec, session)
    yield session, session.interval_snapshot(session.end_ns if session.end_ns is not None else session.last_ns,
                                             cumulative)
