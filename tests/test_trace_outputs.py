"""`mpxtrace trace` output paths on a host that cannot trace: the kernel side is replaced by a
tracer that feeds the Session recorded events and ticks intervals, so what the CLI makes of
them (plain and NDJSON interval reports, resident records in the log, Prometheus metrics) is
what a real trace gets."""
from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Optional

import pytest
from click.testing import CliRunner

from mpxtrace import doctor, tracer as tracer_module
from mpxtrace.cli import main
from mpxtrace.stats import Session

from helpers import PAGE, ev, header

A = 0x7F0000000000
S = 1_000_000_000
TICKS: List[List[Dict[str, Any]]] = [
    [ev("map", S // 2, A, A + 16 * PAGE)],
    [ev("map", 3 * S // 2, A + 32 * PAGE, A + 33 * PAGE), ev("unmap", 3 * S // 2 + 10, A + 32 * PAGE, A + 33 * PAGE)],
    [],
]


@dataclass
class FakeTracer:
    """What cli.trace uses of Tracer, with recorded events instead of a kernel."""

    options: Any
    features: Any
    on_record: Callable[..., None] = lambda rec, session: None
    on_interval: Callable[..., None] = lambda session, now: None
    on_snapshot: Callable[..., None] = lambda session: None
    on_targets_gone: Callable[[], None] = lambda: None
    on_log_stopped: Callable[[str], None] = lambda message: None
    session: Optional[Session] = None
    load_seconds: float = 0.0
    logged: List[Dict[str, Any]] = field(default_factory=list)
    scrapes: List[str] = field(default_factory=list)
    config: Any = field(default_factory=lambda: SimpleNamespace(buffer="ring", plan=SimpleNamespace(attaches=[], missing=[], uses=lambda hook: True)))

    def start(self) -> Session:
        self.session = Session(header())
        return self.session

    def add_record(self, rec: Dict[str, Any]) -> None:
        assert self.session is not None
        self.logged.append(rec)
        self.session.apply(rec)

    def request_stop(self) -> None:
        pass

    def finish(self) -> None:
        pass

    def run(self) -> Session:
        assert self.session is not None
        for i, records in enumerate(TICKS):
            for rec in records:
                self.logged.append(rec)
                self.session.apply(rec)
                self.on_record(rec, self.session)
            self.on_interval(self.session, (i + 1) * 1.0)
            if PORT:
                self.scrapes.append(urllib.request.urlopen(f"http://127.0.0.1:{PORT[0]}/metrics").read().decode())
        return self.session


PORT: List[int] = []
made: List[FakeTracer] = []


@pytest.fixture(autouse=True)
def fake_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor, "examine_host", lambda: SimpleNamespace(
        features=SimpleNamespace(release="fake"), problems=[], checks=[], probe_seconds=0.0))

    def build(*args: Any, **kwargs: Any) -> FakeTracer:
        made.append(FakeTracer(*args, **kwargs))
        return made[-1]
    monkeypatch.setattr(tracer_module, "Tracer", build)
    made.clear()
    PORT.clear()


def test_plain_interval_reports_carry_both_histograms_of_their_window() -> None:
    result = CliRunner().invoke(main, ["trace", "--flag", "lo", "--no-resident", "1"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.count("@allocation_size (last 1s):") == 3 and out.count("@lifetime (last 1s):") == 3
    first, second, third = out.split("@allocation_size (last 1s):")[1:]
    assert "[64K, 128K)" in first.split("@lifetime")[0] and "(no samples)" in first.split("@lifetime")[1]
    assert "[4K, 8K)" in second.split("@lifetime")[0] and "(no samples)" not in second.split("@lifetime")[1]
    assert "(no samples)" in third.split("@lifetime")[0]
    assert "mpxtrace summary" in out and made[0].logged == [r for tick in TICKS for r in tick]


def test_json_intervals_and_resident_records_in_the_log() -> None:
    result = CliRunner().invoke(main, ["trace", "--flag", "lo", "--json", "--cumulative", "1"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    intervals = [r for r in records if r["type"] == "interval"]
    assert [r["window"] for r in intervals] == ["since_start"] * 3
    assert [r["histograms"]["allocation_size"]["count"] for r in intervals] == [1, 2, 2]
    resident = [r for r in made[0].logged if r["type"] == "resident"]
    assert len(resident) == 3 and all(r["source"] == "smaps" for r in resident)  # pid 100 is not ours: none sampled
    assert all(r["resident"] is not None for r in intervals)
    assert records[-1]["type"] == "summary" and records[-1]["resident"] == resident[-1]


def test_prometheus_serves_the_trace_and_refuses_bad_addresses() -> None:
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        PORT.append(probe.getsockname()[1])
    # no INTERVAL: the metrics still refresh every second, and no interval report is printed
    result = CliRunner().invoke(main, ["trace", "--flag", "lo", "--no-resident", "--prometheus", str(PORT[0])])
    assert result.exit_code == 0, result.output
    assert made[0].options.interval == 1.0 and "@allocation_size (last" not in result.output
    assert "mpxtrace summary" in result.output
    scrapes = made[0].scrapes
    assert 'mpxtrace_process_live_bytes{comm="work",mm="0xffff888000100000",pid="100"} 65536.0' in scrapes[0]
    assert "mpxtrace_frees_total 1.0" in scrapes[1] and "mpxtrace_frees_total 0.0" in scrapes[0]
    PORT.clear()
    bad = CliRunner().invoke(main, ["trace", "--flag", "lo", "--prometheus", "localhost:http", "1"])
    assert bad.exit_code == 2 and "expected [ADDR:]PORT" in bad.output
