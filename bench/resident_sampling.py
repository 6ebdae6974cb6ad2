"""Cost of sampling resident memory per process: what `trace` pays every interval per process
holding flagged memory.  Prints microseconds per process and ratios against reading
/proc/PID/status (the cheapest per-process read) measured in the same run; asserts nothing.

    .venv/bin/python bench/resident_sampling.py [PROCESSES] [MAPPINGS_PER_PROCESS] [ROUNDS]

Each child maps MAPPINGS 64 KiB MAP_NORESERVE areas (touching half of each) so its smaps has
that many extra VMAs to walk.  pyroute2's TaskStats is measured too: it answers per task, not
per VMA (accumulated RSS integrals and high-water marks), so it cannot say what the flagged
VMAs hold; its `ac_comm` comes NUL-padded.
"""
from __future__ import annotations

import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mpxtrace import workload  # noqa: E402
from mpxtrace.resident import sample_process  # noqa: E402


def _child(mappings: int, ready_w: int) -> None:
    for _ in range(mappings):
        addr = workload.mmap(0, 16, workload.PROT_READ | workload.PROT_WRITE, workload.MAP_NORESERVE)
        workload.touch(addr, 8)
        workload.mmap(0, 1, workload.PROT_READ, 0)  # a neighbour with other flags keeps VMAs apart
    os.write(ready_w, b"x")
    signal.pause()


def _time(pids: List[int], read: Callable[[int], object], rounds: int) -> float:
    """Median over rounds of microseconds per process."""
    per_round = []
    for _ in range(rounds):
        started = time.perf_counter()
        for pid in pids:
            read(pid)
        per_round.append((time.perf_counter() - started) / len(pids) * 1e6)
    return statistics.median(per_round)


def main() -> None:
    processes = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    mappings = int(sys.argv[2]) if len(sys.argv) > 2 else 100
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    ready_r, ready_w = os.pipe()
    pids = []
    for _ in range(processes):
        pid = os.fork()
        if pid == 0:
            _child(mappings, ready_w)
            os._exit(0)
        pids.append(pid)
    for _ in pids:
        os.read(ready_r, 1)
    try:
        results = {
            "/proc/PID/status (baseline)": _time(pids, lambda p: Path(f"/proc/{p}/status").read_text(), rounds),
            "/proc/PID/smaps_rollup": _time(pids, lambda p: Path(f"/proc/{p}/smaps_rollup").read_text(), rounds),
            "resident.sample_process (smaps)": _time(pids, lambda p: sample_process(p, ["nr"]), rounds),
        }
        try:
            from pyroute2 import TaskStats
            taskstats = TaskStats()
            taskstats.bind()
            results["pyroute2 TaskStats.get_pid_stat"] = _time(pids, taskstats.get_pid_stat, rounds)
            taskstats.close()
        except Exception as err:  # netlink taskstats needs root and the genetlink family
            print(f"pyroute2 TaskStats unavailable: {err}")
        base = results["/proc/PID/status (baseline)"]
        print(f"{processes} processes, {mappings} flagged VMAs each (+ as many others), median of {rounds} rounds")
        for name, micros in results.items():
            print(f"  {name:<36} {micros:9.1f} us/process  {micros / base:6.2f}x baseline")
        per_interval = results["resident.sample_process (smaps)"] * processes / 1000
        print(f"  one interval's sampling of {processes} processes: {per_interval:.1f} ms")
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
