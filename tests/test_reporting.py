"""IntervalReporter: resident sampling stays within its time budget."""
from __future__ import annotations

from typing import Any, Dict, List

import pytest

from mpxtrace import reporting, resident
from mpxtrace.stats import Session

from helpers import header

S = 1_000_000_000


def test_slow_resident_samples_are_spaced_out(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    cost = {"ns": S // 10}  # 100 ms a sample: with a 5% budget, one every 2 s at most

    def fake_sample(session: Session, now_ns: int) -> Dict[str, Any]:
        return {"type": "resident", "ts": now_ns, "source": "smaps", "mem_total_bytes": 1 << 30,
                "flagged_resident_bytes": 0, "ram_share": 0.0, "processes_sampled": 0, "sample_ns": cost["ns"],
                "processes": []}
    monkeypatch.setattr(resident, "sample", fake_sample)
    logged: List[Dict[str, Any]] = []
    session = Session(header())
    reporter = reporting.IntervalReporter(as_json=True, add_record=lambda rec: (logged.append(rec), session.apply(rec)))
    for second in range(1, 6):
        reporter.interval(session, second * S)
    assert [r["ts"] // S for r in logged] == [1, 3, 5]
    cost["ns"] = S // 1000  # 1 ms: every interval again
    for second in range(6, 9):
        reporter.interval(session, second * S)
    assert [r["ts"] // S for r in logged] == [1, 3, 5, 7, 8]
    capsys.readouterr()
