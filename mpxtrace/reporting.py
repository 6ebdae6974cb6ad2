"""What ``trace`` does every interval: sample resident memory (I/O, logged as its own record),
cut the interval record in the Session, and hand it to the outputs — plain text, NDJSON, the
full-screen view, Prometheus metrics."""
from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Optional

from . import render, resident
from .events import Record
from .output import print_json
from .stats import Session

__all__ = ["IntervalReporter", "live_screen_available"]

METRICS_PUBLISH_S = 0.5  # between intervals, scrapes see the session at most this stale
RESIDENT_BUDGET = 0.05  # sampling may take this share of the time at most: slow samples are spaced out


def live_screen_available() -> bool:
    """The full-screen view needs a terminal on stdout and the `live` extra (rich)."""
    if not sys.stdout.isatty():
        return False
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class IntervalReporter:
    as_json: bool = False
    cumulative: bool = False
    sample_resident: bool = True
    quiet: bool = False  # intervals only refresh samples and metrics (--prometheus without INTERVAL)
    add_record: Callable[[Record], None] = lambda rec: None  # logs and applies (Tracer.add_record)
    screen: Optional[Any] = None  # views.live.LiveScreen
    metrics: Optional[Any] = None  # views.prometheus.MetricsView
    _published: float = field(default=0.0)
    _next_sample_ns: int = field(default=0)

    def interval(self, session: Session, now_ns: Optional[int] = None) -> Record:
        now_ns = now_ns if now_ns is not None else time.monotonic_ns()
        if self.sample_resident and now_ns >= self._next_sample_ns:
            sample = resident.sample(session, now_ns)
            self.add_record(sample)
            # many processes, or a slow machine: the next sample waits until this one is within budget
            self._next_sample_ns = now_ns + int(int(sample["sample_ns"]) / RESIDENT_BUDGET)
        rec = session.interval_snapshot(now_ns, self.cumulative)
        self.publish(session, force=True)
        if self.quiet:
            pass
        elif self.screen is not None:
            self.screen.update(rec)
        elif self.as_json:
            print_json(rec)
        else:
            sys.stdout.write("\n" + render.interval_text(rec, time.strftime("%H:%M:%S")) + "\n")
            sys.stdout.flush()
        return rec

    def publish(self, session: Session, force: bool = False) -> None:
        """Refresh the metrics from the session (on the tracer's thread), at most every half second."""
        if self.metrics is None:
            return
        now = time.monotonic()
        if force or now - self._published >= METRICS_PUBLISH_S:
            self.metrics.publish(session)
            self._published = now

    def running(self) -> ContextManager[object]:
        """The full-screen view is on while the tracer runs (the summary prints after it)."""
        return self.screen if self.screen is not None else contextlib.nullcontext()
