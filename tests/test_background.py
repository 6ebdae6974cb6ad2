"""Jobs whose /proc reads run beside the trace loop (background.py): resync passes and --verify."""
from __future__ import annotations

import threading
from typing import Generator, List

import pytest

from mpxtrace.background import Background, run_here


def two_reads(log: List[str]) -> Generator[str, int, int]:
    """Asks for two reads, deciding in between; returns their sum."""
    try:
        log.append("decide 1")
        first = yield "a"
        log.append(f"decide 2 after {first}")
        second = yield "b"
        return first + second
    finally:
        log.append("closed")


def test_run_here_makes_each_read_in_turn_and_returns_the_outcome() -> None:
    log: List[str] = []
    assert run_here(two_reads(log), {"a": 1, "b": 2}.__getitem__) == 3
    assert log == ["decide 1", "decide 2 after 1", "closed"]


def test_reads_run_on_a_worker_while_the_caller_goes_on() -> None:
    gate = threading.Event()
    readers: List[str] = []

    def read(request: str) -> int:
        readers.append(threading.current_thread().name)
        gate.wait(5)
        return {"a": 1, "b": 2}[request]
    log: List[str] = []
    job = Background(two_reads(log), read, "test-read")
    assert job.start() is False and log == ["decide 1"]  # the first read is under way
    assert job.poll() is False and job.poll() is False  # not done: the job waits, the caller does not
    gate.set()
    while not job.poll():
        threading.Event().wait(0.001)
    assert job.ended and job.outcome == 3
    assert readers == ["test-read", "test-read"] and threading.current_thread().name not in readers
    assert log == ["decide 1", "decide 2 after 1", "closed"]  # decisions were made by the polling thread


def test_a_job_that_needs_no_read_ends_when_started() -> None:
    def nothing_to_read() -> Generator[str, int, int]:
        return 7
        yield "never"  # makes this a generator
    job = Background(nothing_to_read(), lambda request: 0, "test-read")
    assert job.start() is True and job.ended and job.outcome == 7


def test_a_failed_read_is_raised_by_poll_and_ends_the_job() -> None:
    def read(request: str) -> int:
        raise PermissionError("smaps")
    log: List[str] = []
    job = Background(two_reads(log), read, "test-read")
    job.start()
    with pytest.raises(PermissionError):
        while not job.poll():
            threading.Event().wait(0.001)
    assert job.ended and log == ["decide 1", "closed"]


def test_an_abandoned_job_stops_and_its_read_in_flight_is_ignored() -> None:
    gate = threading.Event()
    log: List[str] = []
    job = Background(two_reads(log), lambda request: gate.wait(5) and 1, "test-read")
    job.start()
    job.abandon()
    assert job.ended and log == ["decide 1", "closed"]
    gate.set()
    assert job.poll() is True and job.outcome is None and log == ["decide 1", "closed"]
