"""Benchmark (run inside a lab guest): what the probes cost a process that maps memory.

    python -m mpxtrace.lab --kernel 6.1 -- python3 bench/probe_overhead.py [ITERATIONS] [ROUNDS] [REPEAT]

Times a loop of mmap+munmap pairs (4 pages) in a fresh process, for memory without the traced
flags (the common case the in-kernel filter must keep cheap) and with them (MAP_NORESERVE ->
VM_NORESERVE, MAP_LOCKED -> VM_LOCKED), under:
  none            no tracer
  mpx-auto        mpxtrace trace (fentry where the kernel allows, the default)
  mpx-kprobe      mpxtrace trace --attach kprobe
  bpftrace-fentry bpftrace on mmap_region and vm_area_free, fentry/kfunc
  bpftrace-kprobe the same probes as kprobes (arg3; vm_flags through a cast)
Every tracer follows the same mask (VM_NORESERVE|VM_LOCKED); bpftrace counts and sums the
flagged calls into kernel maps.  Untraced phases run between the traced ones and the whole
cycle is repeated, in the same boot, because run-to-run noise under emulation is larger
than the probe cost.  The figure is the added cost per pair (median traced - median
untraced) and its ratio to bpftrace's; it asserts nothing.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from guest_tools import (ROOT, VM_LOCKED, VM_NORESERVE, Bpftrace, Mpxtrace, StartFailed,  # noqa: E402
                         have, start_bpftrace)

MAP_LOCKED, MAP_NORESERVE = 0x2000, 0x4000
WORKLOADS = {"plain": 0, "noreserve": MAP_NORESERVE, "locked": MAP_LOCKED}
MASK = VM_NORESERVE | VM_LOCKED
FLAGS = ("VM_NORESERVE", "VM_LOCKED")
PHASES = ("mpx-auto", "mpx-kprobe", "bpftrace-fentry", "bpftrace-kprobe")

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
                         stdout=subprocess.PIPE, universal_newlines=True, cwd=str(ROOT))
    return float(out.stdout)


def _start(phase: str) -> Any:
    if phase == "mpx-auto":
        return Mpxtrace(FLAGS, "auto")
    if phase == "mpx-kprobe":
        return Mpxtrace(FLAGS, "kprobe")
    return start_bpftrace(phase.split("-", 1)[1], MASK)


def _spread(values: List[float]) -> Dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def measure(iterations: int = 20000, rounds: int = 3, repeat: int = 2) -> Dict[str, Any]:
    """Interleaved runs in this boot; returns per-phase/workload seconds, start times and ratios."""
    runs: Dict[str, List[float]] = {}
    starts: Dict[str, List[float]] = {}
    hooks: Dict[str, List[str]] = {}
    skipped: Dict[str, str] = {}
    phases = [p for p in PHASES if have("bpftrace") or not p.startswith("bpftrace")]
    if not have("bpftrace"):
        skipped["bpftrace"] = "bpftrace is not installed in this guest"

    def run_rounds(phase: str) -> None:
        for _ in range(rounds):
            for name, flag in WORKLOADS.items():
                runs.setdefault(f"{phase}/{name}", []).append(loop(iterations, flag))

    run_rounds("none")
    for _ in range(repeat):
        for phase in phases:
            if phase in skipped:
                continue
            try:
                tracer = _start(phase)
            except StartFailed as err:
                skipped[phase] = str(err)[-800:]
                continue
            starts.setdefault(phase, []).append(tracer.start_seconds)
            if isinstance(tracer, Mpxtrace):
                hooks[phase] = tracer.hooks()
            elif isinstance(tracer, Bpftrace):
                hooks[phase] = [line.split("{")[0].strip() for line in tracer.script.splitlines()[1:] if "{" in line
                                and not line.startswith("BEGIN")]
            run_rounds(phase)
            tracer.stop()
            run_rounds("none")
    return summarise(runs, iterations) | {"iterations": iterations, "rounds": rounds, "repeat": repeat,
                                          "start_seconds": starts, "hooks": hooks, "skipped": skipped}


def summarise(runs: Dict[str, List[float]], iterations: int) -> Dict[str, Any]:
    table: Dict[str, Any] = {}
    for key, values in runs.items():
        phase, name = key.split("/")
        base = statistics.median(runs[f"none/{name}"])
        med = statistics.median(values)
        table[key] = _spread(values) | {
            "us_per_pair": med / iterations * 1e6,
            "added_us_per_pair": (med - base) / iterations * 1e6,
            "vs_untraced": med / base,
        }
    ratios: Dict[str, Optional[float]] = {}
    for mpx, peer in (("mpx-auto", "bpftrace-fentry"), ("mpx-kprobe", "bpftrace-kprobe")):
        for name in WORKLOADS:
            a, b = table.get(f"{mpx}/{name}"), table.get(f"{peer}/{name}")
            if a and b:
                # Added costs near the noise floor make this ratio unstable: read it with the spreads.
                ratios[f"{mpx}/{peer}/{name}"] = (a["added_us_per_pair"] / b["added_us_per_pair"]
                                                  if b["added_us_per_pair"] > 0 else None)
    return {"runs": table, "mpx_added_over_bpftrace_added": ratios}


def print_table(result: Dict[str, Any]) -> None:
    print(f"kernel {os.uname().release}; {result['iterations']} mmap+munmap pairs per run, "
          f"{result['rounds']} runs per phase, cycle repeated {result['repeat']}x")
    print(f"{'configuration':<26} {'median s':>9} {'min..max s':>15} {'us/pair':>8} {'added us':>9} {'vs none':>8}")
    for key, row in sorted(result["runs"].items()):
        print(f"{key:<26} {row['median']:>9.3f} {row['min']:>7.3f}..{row['max']:<7.3f} {row['us_per_pair']:>8.1f} "
              f"{row['added_us_per_pair']:>9.2f} {row['vs_untraced']:>7.2f}x")
    for key, ratio in result["mpx_added_over_bpftrace_added"].items():
        print(f"added cost {key}: {'n/a' if ratio is None else f'{ratio:.2f}x'}")
    for phase, why in result["skipped"].items():
        print(f"skipped {phase}: {why}")


def main() -> None:
    args = [int(a) for a in sys.argv[1:4]]
    print_table(measure(*args))


if __name__ == "__main__":
    main()
