"""The ring buffer wakes the tracer once per RINGBUF_WAKE_EVERY events per CPU, not per event
(bpf/mpxtrace.bpf.c submit()), so the tracer must read what arrived without a wakeup after each
poll; a small ring wakes it often enough to be drained before it fills."""
from __future__ import annotations

from types import SimpleNamespace
from typing import List

import pytest

from mpxtrace.flags import resolve_flags
from mpxtrace.program import RINGBUF_WAKE_EVERY, LoadedProgram, build_config
from tests.fake_kernel import KERNEL_612, VMG, features


@pytest.mark.parametrize("pages, every", [(None, RINGBUF_WAKE_EVERY), (1024, RINGBUF_WAKE_EVERY), (2, 9), (1, 4)])
def test_the_wakeup_period_fits_the_ring(pages: object, every: int) -> None:
    config = build_config(resolve_flags(["nr"], None), features(KERNEL_612, fields=VMG), "fentry", "ring", (),
                          buffer_pages=pages)  # type: ignore[arg-type]
    assert config.defines["RINGBUF_WAKE_EVERY"] == str(every)
    # an eighth of the ring at most: 1 page holds 36 records of 112 bytes
    assert every * 8 <= max(8, (pages or 1024) * 4096 // 112)  # type: ignore[operator]


def test_a_perf_buffer_has_no_wakeup_period() -> None:
    config = build_config(resolve_flags(["nr"], None), features(KERNEL_612, fields=VMG, ringbuf=False), "fentry",
                          "auto", ())
    assert config.buffer == "perf" and "RINGBUF_WAKE_EVERY" not in config.defines


class _Ring:
    def __init__(self) -> None:
        self.calls: List[str] = []

    def ring_buffer_poll(self, timeout: int) -> None:
        self.calls.append(f"poll {timeout}")

    def ring_buffer_consume(self) -> None:
        self.calls.append("consume")


def test_each_poll_also_reads_what_came_without_a_wakeup() -> None:
    ring = _Ring()
    program = LoadedProgram(ring, SimpleNamespace(buffer="ring"))  # type: ignore[arg-type]
    program.poll(100)
    program.poll(0)
    assert ring.calls == ["poll 100", "consume", "poll 0", "consume"]
