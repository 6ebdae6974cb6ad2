"""Probe (run inside a lab guest; asserts nothing): does `trace --flag VM_MERGEABLE` follow KSM's
whole-process switch, prctl(PR_SET_MEMORY_MERGE) (Linux 6.4+, d7597f59d1d3 "mm: add new api to
enable ksm per process")?  That call sets or clears VM_MERGEABLE on every VMA of the process
in place, and from then on new anonymous mappings are born with it; madvise(MADV_MERGEABLE), on
one range, is the path the random campaigns check.

    python -m mpxtrace.lab --kernel 7.2 -- python3 bench/probe_merge_any.py

A child maps three regions, advises one MADV_MERGEABLE, then switches merge-any on, maps a
fourth, switches it off; after each step the tracer's picture of the child is compared with its
smaps (`mg`), and `--verify 2` runs beside it (its drift records say what it saw).  Prints one
line per step and the tracer's drift records.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "lab"))
from overload_guest import kernel_picture, snapshot, tracer_picture  # noqa: E402  (puts bench/ and ROOT on the path)
from guest_tools import Mpxtrace  # noqa: E402

CHILD = """
import ctypes, sys
from mpxtrace import workload as w
libc = ctypes.CDLL("libc.so.6", use_errno=True)
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
PR_SET_MEMORY_MERGE, MADV_MERGEABLE = 67, 12
RW, PRIVATE = w.PROT_READ | w.PROT_WRITE, 0
def step(name):
    print(name, flush=True)
    sys.stdin.readline()
regions = [w.mmap(0, 16, RW, PRIVATE) for _ in range(3)]
step("mapped")
print("madvise", libc.madvise(regions[0], 16 * w.PAGE, MADV_MERGEABLE), ctypes.get_errno(), flush=True)
step("advised")
print("prctl on", libc.prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0), ctypes.get_errno(), flush=True)
step("merge-any on")
regions.append(w.mmap(0, 16, RW, PRIVATE))
step("mapped under merge-any")
print("prctl off", libc.prctl(PR_SET_MEMORY_MERGE, 0, 0, 0, 0), ctypes.get_errno(), flush=True)
step("merge-any off")
"""


def main() -> None:
    tracer = Mpxtrace(("VM_MERGEABLE",), "auto", ("--no-resident", "--verify", "2"))
    child = subprocess.Popen([sys.executable, "-c", CHILD], cwd=str(ROOT), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, universal_newlines=True)
    assert child.stdin is not None and child.stdout is not None
    try:
        for line in child.stdout:
            line = line.strip()
            if line.startswith(("madvise", "prctl")):
                print(f"  {line} (return, errno)", flush=True)
                continue
            time.sleep(1.0)  # the step's events reach the tracer
            mine = tracer_picture(snapshot(tracer)).get(child.pid, [])
            kernel = kernel_picture(tracer.proc.pid, "mg").get(child.pid, [])
            print(f"{line}: smaps {len(kernel)} VM_MERGEABLE VMAs, tracer {len(mine)}; "
                  f"{'equal' if mine == kernel else 'DIFFERENT'}", flush=True)
            child.stdin.write("\n")
            child.stdin.flush()
        child.wait(30)
        time.sleep(5.0)  # two --verify passes
    finally:
        tracer.stop()
    drift = [r for r in tracer.records() if r.get("type") == "drift"]
    print(f"kernel {os.uname().release}: drift records {len(drift)}; first: {drift[:3]}")


if __name__ == "__main__":
    main()
