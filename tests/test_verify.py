"""trace --verify: differences between the model and smaps, confirmed on a second look."""
from __future__ import annotations

from typing import Dict, List

import pytest

from mpxtrace import verify
from mpxtrace.model import Model

from helpers import MASK, ev


def model_with(*ranges: tuple) -> Model:
    m = Model(MASK)
    for i, (start, end) in enumerate(ranges):
        m.apply(ev("map", i + 1, start, end))
    return m


def test_model_vmas_are_keyed_by_pid_of_live_spaces_only() -> None:
    m = model_with((0x1000, 0x3000), (0x8000, 0x9000))
    assert verify.model_vmas(m) == {100: {(0x1000, 0x3000), (0x8000, 0x9000)}}
    m.apply(ev("mm_exit", 9))
    assert verify.model_vmas(m) == {}


def test_differences_name_each_vma_and_its_side() -> None:
    mine = {1: {(0x1000, 0x2000), (0x5000, 0x6000)}, 2: {(0x1000, 0x2000)}}
    kernel = {1: {(0x1000, 0x2000), (0x5000, 0x7000)}, 3: {(0x4000, 0x5000)}}
    assert verify.differences(mine, kernel) == {
        (1, 0x5000, 0x6000, False), (1, 0x5000, 0x7000, True), (2, 0x1000, 0x2000, False), (3, 0x4000, 0x5000, True)}


def test_drift_is_reported_only_when_it_persists(monkeypatch: pytest.MonkeyPatch) -> None:
    m = model_with((0x1000, 0x3000))
    reads: List[Dict[int, set]] = [
        {100: {(0x1000, 0x4000)}},  # first look: the process grew and the event is not applied yet
        {100: {(0x1000, 0x3000)}},  # second look: caught up
    ]
    monkeypatch.setattr(verify, "kernel_vmas", lambda mnemonics, skip: reads.pop(0))
    assert verify.drift_records(m, ["lo"], (), lambda: 7, lambda: None) == []

    reads[:] = [{100: {(0x1000, 0x4000)}}, {100: {(0x1000, 0x4000)}}]
    drift = verify.drift_records(m, ["lo"], (), lambda: 7, lambda: None)
    assert drift == [
        {"type": "drift", "ts": 7, "pid": 100, "vma": [0x1000, 0x3000], "expected": "present", "seen": "absent"},
        {"type": "drift", "ts": 7, "pid": 100, "vma": [0x1000, 0x4000], "expected": "absent", "seen": "present"}]


def test_nothing_to_report_reads_smaps_once(monkeypatch: pytest.MonkeyPatch) -> None:
    m = model_with((0x1000, 0x3000))
    calls = []
    monkeypatch.setattr(verify, "kernel_vmas", lambda mnemonics, skip: calls.append(1) or {100: {(0x1000, 0x3000)}})
    assert verify.drift_records(m, ["lo"], (), lambda: 7, lambda: None) == []
    assert len(calls) == 1
