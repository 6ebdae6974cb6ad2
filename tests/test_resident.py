"""Resident bytes of flagged VMAs, sampled from /proc/PID/smaps, against pages this test touches."""
from __future__ import annotations

import os

from mpxtrace import workload
from mpxtrace.resident import mem_total_bytes, sample, sample_process
from mpxtrace.stats import Session

from helpers import header

PAGE = 4096


def test_resident_bytes_are_the_pages_touched() -> None:
    addr = workload.mmap(0, 8, workload.PROT_READ | workload.PROT_WRITE, workload.MAP_NORESERVE)
    try:
        ranges = [(addr, addr + 8 * PAGE)]
        untouched = sample_process(os.getpid(), [], ranges)
        workload.touch(addr, 3)
        touched = sample_process(os.getpid(), [], ranges)
        by_flag = sample_process(os.getpid(), ["nr"])
    finally:
        workload.munmap(addr, 8)
    assert untouched is not None and touched is not None and by_flag is not None
    assert untouched["resident_bytes"] == 0 and untouched["smaps_flagged_bytes"] == 8 * PAGE
    assert touched["resident_bytes"] == 3 * PAGE
    assert 0 < touched["rss_share"] <= 1 and touched["rss_share"] == round(3 * PAGE / touched["rss_bytes"], 6)
    assert touched["vsize_share"] == round(8 * PAGE / touched["vsize_bytes"], 6)
    assert by_flag["resident_bytes"] >= 3 * PAGE  # every `nr` VMA of this process, ours included


def test_sample_covers_live_processes_holding_flagged_memory() -> None:
    pid = os.getpid()
    addr = workload.mmap(0, 4, workload.PROT_READ | workload.PROT_WRITE, workload.MAP_NORESERVE)
    try:
        workload.touch(addr, 2)
        session = Session(dict(header(), mnemonics=[]))  # no mnemonic: the model's ranges pick the VMAs
        session.apply({"type": "seed", "ts": 1, "pid": pid, "comm": "pytest", "start": addr,
                       "end": addr + 4 * PAGE, "flags": 0x2000})
        session.apply({"type": "seed", "ts": 1, "pid": 0x3FFFFFFF, "comm": "gone", "start": addr,
                       "end": addr + PAGE, "flags": 0x2000})  # no such process: skipped
        rec = sample(session, 5)
    finally:
        workload.munmap(addr, 4)
    assert rec["type"] == "resident" and rec["ts"] == 5 and rec["processes_sampled"] == 1
    (proc,) = rec["processes"]
    assert proc["pid"] == pid and proc["resident_bytes"] == 2 * PAGE and proc["mm"] is None
    assert rec["flagged_resident_bytes"] == 2 * PAGE
    assert rec["mem_total_bytes"] == mem_total_bytes() > 0
    assert rec["ram_share"] == round(2 * PAGE / rec["mem_total_bytes"], 6)
