"""Benchmark (run inside a lab guest): which BPF programs fire per mmap+munmap, and their time.

    python -m mpxtrace.lab --kernel 6.1 -- python3 bench/probe_costs.py [ITERATIONS] [CHUNKS]

With the kernel's BPF statistics on (kernel.bpf_stats_enabled: run_cnt and run_time_ns per
program), runs the loop of bench/probe_overhead.py (plain, MAP_NORESERVE, MAP_LOCKED) under
each tracer in turn and prints, per program of that tracer, the runs and nanoseconds per
mmap+munmap pair: the median over CHUNKS loops of ITERATIONS pairs (default 5), because under
emulation one preempted or interrupted run can add microseconds per pair to a whole loop.  This says where the hot path's cost is (which hooks fire, how long each
program runs); the stopwatch figures are bench/probe_overhead.py's.  Asserts nothing.
"""
from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path
import statistics
from typing import Any, Dict, List, Set, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from guest_tools import StartFailed  # noqa: E402
from probe_overhead import PHASES, WORKLOADS, _start, loop  # noqa: E402

MARK = "=====MPXTRACE-PROBECOSTS-JSON====="
_SYS_BPF = 321  # x86_64
_PROG_GET_NEXT_ID, _PROG_GET_FD_BY_ID, _OBJ_GET_INFO_BY_FD = 11, 13, 15
_libc = ctypes.CDLL(None, use_errno=True)
STATS = Path("/proc/sys/kernel/bpf_stats_enabled")


def _bpf(cmd: int, attr: Any) -> int:
    return int(_libc.syscall(_SYS_BPF, cmd, attr, ctypes.sizeof(attr)))


def program_ids() -> Set[int]:
    ids: Set[int] = set()
    start = 0
    attr = ctypes.create_string_buffer(128)
    while True:
        ctypes.memset(attr, 0, 128)
        ctypes.c_uint32.from_buffer(attr, 0).value = start
        if _bpf(_PROG_GET_NEXT_ID, attr) != 0:
            return ids
        start = ctypes.c_uint32.from_buffer(attr, 4).value
        ids.add(start)


def program_stats(ids: Set[int]) -> Dict[int, Tuple[str, int, int]]:
    """id -> (name, run_cnt, run_time_ns) from struct bpf_prog_info."""
    out = {}
    for prog_id in ids:
        attr = ctypes.create_string_buffer(128)
        ctypes.c_uint32.from_buffer(attr, 0).value = prog_id
        fd = _bpf(_PROG_GET_FD_BY_ID, attr)
        if fd < 0:
            continue
        try:
            info = ctypes.create_string_buffer(256)
            attr = ctypes.create_string_buffer(128)
            ctypes.c_uint32.from_buffer(attr, 0).value = fd
            ctypes.c_uint32.from_buffer(attr, 4).value = 256
            ctypes.c_uint64.from_buffer(attr, 8).value = ctypes.addressof(info)
            if _bpf(_OBJ_GET_INFO_BY_FD, attr) == 0:
                name = info.raw[64:80].split(b"\0", 1)[0].decode(errors="replace")
                out[prog_id] = (name, ctypes.c_uint64.from_buffer(info, 200).value,
                                ctypes.c_uint64.from_buffer(info, 192).value)
        finally:
            os.close(fd)
    return out


def _chunk(ours: Set[int], iterations: int, flag: int) -> Dict[str, Tuple[float, float]]:
    """One loop: program (name#id) -> (runs, ns) per pair."""
    start = program_stats(ours)
    loop(iterations, flag)
    end = program_stats(ours)
    return {f"{end[i][0]}#{i}": ((end[i][1] - start[i][1]) / iterations, (end[i][2] - start[i][2]) / iterations)
            for i in end if i in start}


def main() -> None:
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    chunks = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    STATS.write_text("1\n")
    result: Dict[str, Any] = {"kernel": os.uname().release, "iterations": iterations, "chunks": chunks,
                              "statistic": "median over chunks", "phases": {}, "skipped": {}}
    for phase in PHASES:
        before = program_ids()
        try:
            tracer = _start(phase)
        except (StartFailed, OSError) as err:
            result["skipped"][phase] = str(err)[-500:]
            continue
        ours = program_ids() - before
        rows: Dict[str, List[Dict[str, Any]]] = {}
        for name, flag in WORKLOADS.items():
            runs = [_chunk(ours, iterations, flag) for _ in range(chunks)]
            keys = set().union(*runs)
            rows[name] = sorted(({"program": key.split("#")[0],
                                  "runs_per_pair": statistics.median(r.get(key, (0.0, 0.0))[0] for r in runs),
                                  "ns_per_pair": statistics.median(r.get(key, (0.0, 0.0))[1] for r in runs)}
                                 for key in keys if any(r.get(key, (0.0, 0.0))[0] > 0 for r in runs)),
                                key=lambda r: -r["ns_per_pair"])
        tracer.stop()
        result["phases"][phase] = rows
        for name, progs in rows.items():
            total = sum(p["ns_per_pair"] for p in progs)
            fired = ", ".join(f"{p['program']} {p['runs_per_pair']:.2f}x {p['ns_per_pair']:.0f} ns" for p in progs)
            print(f"{phase:<16} {name:<9} {total:7.0f} ns/pair in BPF: {fired}")
    STATS.write_text("0\n")
    print(MARK)
    print(json.dumps(result))
    print(MARK)


if __name__ == "__main__":
    main()
