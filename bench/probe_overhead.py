"""Benchmark (run inside a lab guest): what the probes cost a process that maps memory.

    python -m mpxtrace.lab --kernel 6.1 -- python3 bench/probe_overhead.py [ITERATIONS] [ROUNDS]

Times a loop of mmap+munmap pairs (4 pages) with no tracer, then with the tracer attached by
fentry and by kprobes, for memory without the traced flag (the common case the in-kernel
filter must keep cheap) and with it (every call becomes events).  Baseline rounds run
between the traced ones in the same boot, because run-to-run noise under emulation is larger
than the probe cost; it prints medians and ratios to the baseline, and asserts nothing.
"""
from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

MAP_NORESERVE = 0x4000


LOOP = """
import sys, time
from mpxtrace import workload as w
n, flag = int(sys.argv[1]), int(sys.argv[2])
start = time.perf_counter()
for _ in range(n):
    w.munmap(w.mmap(0, 4, 3, flag), 4)
print(time.perf_counter() - start)
"""


def loop(iterations: int, flag: int) -> float:
    """Seconds for the pairs, in a fresh process: one that never held flagged memory for `plain`."""
    out = subprocess.run([sys.executable, "-c", LOOP, str(iterations), str(flag)], check=True,
                         stdout=subprocess.PIPE, universal_newlines=True, cwd=str(Path(__file__).resolve().parents[1]))
    return float(out.stdout)


def start_tracer(attach: str) -> subprocess.Popen:  # type: ignore[type-arg]
    ready = Path(tempfile.mkdtemp()) / "ready"
    proc = subprocess.Popen([sys.executable, "-m", "mpxtrace", "trace", "--flag", "VM_NORESERVE", "--attach", attach,
                             "--ready-file", str(ready), "--json"], stdout=subprocess.DEVNULL)
    while not ready.exists():
        if proc.poll() is not None:
            raise SystemExit(f"tracer ({attach}) exited {proc.returncode}")
        time.sleep(0.1)
    return proc


def main() -> None:
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    results: Dict[str, List[float]] = {}
    for phase in ("none", "fentry", "none", "kprobe", "none"):
        tracer: Optional[subprocess.Popen] = start_tracer(phase) if phase != "none" else None  # type: ignore[type-arg]
        for _ in range(rounds):
            for label, flag in (("plain", 0), ("flagged", MAP_NORESERVE)):
                results.setdefault(f"{phase}/{label}", []).append(loop(iterations, flag))
        if tracer is not None:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(60)
    print(f"kernel {os.uname().release}; {iterations} mmap+munmap pairs per run, {rounds} runs per phase")
    print(f"{'configuration':<18} {'median s':>9} {'us/pair':>8} {'vs no tracer':>13}")
    for label in ("plain", "flagged"):
        base = statistics.median(results[f"none/{label}"])
        for phase in ("none", "fentry", "kprobe"):
            med = statistics.median(results[f"{phase}/{label}"])
            print(f"{phase + '/' + label:<18} {med:>9.3f} {med / iterations * 1e6:>8.1f} {med / base:>12.2f}x")


if __name__ == "__main__":
    main()
