"""`mpxtrace trace` with a recorded kernel, for terminal tests: run as a script, it starts the
real CLI with the host examination and the tracer replaced by a replay of a synthetic capture,
in real time, ticking intervals until the CLI asks it to stop (`q` on the screen, Ctrl-C)."""
from __future__ import annotations

import sys
import time
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Optional

from mpxtrace import doctor, tracer as tracer_module
from mpxtrace.cli import main
from mpxtrace.stats import Session

from synthetic_capture import S, capture


class ReplayTracer:
    def __init__(self, options: Any, features: Any, on_record: Callable[..., None], on_interval: Callable[..., None],
                 **_: Any) -> None:
        self.options = options
        self.on_record = on_record
        self.on_interval = on_interval
        self.load_seconds = 0.0
        self.config = SimpleNamespace(buffer="ring", plan=SimpleNamespace(attaches=[], missing=[], uses=lambda hook: True))
        self.session: Optional[Session] = None
        self.stopped = False
        records: List[Dict[str, Any]] = capture(seconds=120)
        self.header, self.records = records[0], records[1:]

    def start(self) -> Session:
        self.session = Session(self.header)
        return self.session

    def add_record(self, rec: Dict[str, Any]) -> None:
        assert self.session is not None
        self.session.apply(rec)

    def request_stop(self, *_: object) -> None:
        self.stopped = True

    def finish(self) -> None:
        pass

    def run(self) -> Session:
        assert self.session is not None
        started = time.monotonic()
        interval = self.options.interval
        next_tick = interval
        for rec in self.records:
            if rec["type"] == "resident":
                continue  # the CLI samples its own
            while not self.stopped and time.monotonic() - started < int(rec["ts"]) / S:
                time.sleep(0.02)
                if time.monotonic() - started >= next_tick:
                    self.on_interval(self.session, next_tick)
                    next_tick += interval
            if self.stopped:
                break
            self.session.apply(rec)
            self.on_record(rec, self.session)
        return self.session


if __name__ == "__main__":
    doctor.examine_host = lambda: SimpleNamespace(  # type: ignore[assignment]
        features=SimpleNamespace(release="recorded"), problems=[], checks=[], probe_seconds=0.0)
    tracer_module.Tracer = ReplayTracer  # type: ignore[assignment,misc]
    sys.argv = ["mpxtrace", "trace", "--flag", "lo", "--no-resident", *sys.argv[1:]]
    main()
