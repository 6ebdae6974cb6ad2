"""Runs INSIDE a lab guest: programs we did not write, traced for a flag only madvise() sets.

`mpxtrace trace --flag VM_HUGEPAGE` while glibc's allocator asks for transparent huge pages
(GLIBC_TUNABLES=glibc.malloc.hugetlb=1, glibc 2.35+, which needs THP in "madvise" mode: set
here) in a program that allocates and frees from two threads (the brk heap grown, trimmed and
madvised, mmap-ed chunks, a thread's heap mapping), while stress-ng's vm stressor maps, madvises
(MADV_HUGEPAGE), fills and unmaps its memory and its madvise stressor gives random advice
(MADV_HUGEPAGE and MADV_NOHUGEPAGE among it) to file and anonymous mappings.  At each
checkpoint the load is stopped (SIGSTOP to its process group) and every process's VM_HUGEPAGE
VMAs in the tracer's picture are compared with /proc/PID/smaps (`hg`), VMA by VMA, until they
match or the overload test's CONVERGE_S passes.  Then the tracer is stopped and its log copied
to /mnt/out for the host to replay.  One JSON document between markers says what happened; the
host test (tests/lab/test_lab_hugepage.py) asserts.  Plain Python 3.9, no pytest.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from overload_guest import checkpoint, keep_log, stop_load, stop_tracer  # noqa: E402  (it puts bench/ on the path)
from guest_tools import Mpxtrace  # noqa: E402
from mpxtrace.smaps import scan  # noqa: E402
from guestout import print_report  # noqa: E402

MARK = "=====MPXTRACE-HUGEPAGE-JSON====="
FLAG, MNEMONIC = "VM_HUGEPAGE", "hg"
THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
TUNABLES = "glibc.malloc.hugetlb=1"
LOAD_S = 6.0
CHECKPOINTS = 2
LOG = Path("/tmp/hugepage.ndjson")

# glibc's malloc and free, called from two threads (so two arenas: the main one, grown by brk,
# and a thread's, a heap mapping grown by mprotect), 256 KiB to 8 MiB at a time: the first
# chunks by mmap (above glibc's threshold), then, once freeing one has raised the threshold, from
# the heaps; glibc madvises every such area of 2 MiB or more.  The memory is never touched: the
# VMAs are the point, and the guest has 2 GiB.
ALLOCATOR = """
import ctypes, random, sys, threading
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.restype, libc.free.argtypes = None, [ctypes.c_void_p]
def churn(seed):
    rng = random.Random(seed)
    held = []
    while True:
        if len(held) < 4 or (rng.random() < 0.5 and len(held) < 32):
            block = libc.malloc(rng.randint(1 << 18, 8 << 20))
            if block:
                held.append(block)
        else:
            libc.free(held.pop(rng.randrange(len(held))))
workers = [threading.Thread(target=churn, args=(int(sys.argv[1]) + i,), daemon=True) for i in range(2)]
for w in workers:
    w.start()
for w in workers:
    w.join()
"""


def thp_mode() -> Optional[str]:
    try:
        text = THP.read_text()
    except OSError:
        return None
    chosen = [w.strip("[]") for w in text.split() if w.startswith("[")]
    return chosen[0] if chosen else None


def glibc_version() -> str:
    found = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None
    return found or "unknown"


def main() -> None:
    report: Dict[str, Any] = {"kernel": os.uname().release, "flag": FLAG, "glibc": glibc_version(),
                              "thp_before": thp_mode(), "checkpoints": []}
    if report["thp_before"] is not None and report["thp_before"] != "madvise":
        THP.write_text("madvise")
    report["thp"] = thp_mode()
    if LOG.exists():
        LOG.unlink()
    tracer = Mpxtrace((FLAG,), "auto", ("--no-resident", "--log", str(LOG)))
    env = dict(os.environ, GLIBC_TUNABLES=TUNABLES)
    load = subprocess.Popen(["stress-ng", "--madvise", "1", "--vm", "1", "--vm-bytes", "16M",
                             "--vm-madvise", "hugepage", "--timeout", "600s", "--quiet"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/tmp",
                            preexec_fn=os.setpgrp)  # its own process group: stopped and resumed as one
    allocators: List["subprocess.Popen[str]"] = [
        subprocess.Popen([sys.executable, "-c", ALLOCATOR, str(seed)], env=env, cwd="/tmp",
                         preexec_fn=lambda: os.setpgid(0, load.pid)) for seed in (10,)]
    try:
        for i in range(CHECKPOINTS):
            if i:
                os.killpg(load.pid, signal.SIGCONT)
            time.sleep(LOAD_S)
            result = checkpoint(tracer, load, MNEMONIC)
            print(f"checkpoint {i}: {result}", flush=True)
            report["checkpoints"].append(result)
        report["allocators_flagged"] = [_flagged_vmas(p.pid) for p in allocators]
    except Exception as err:  # noqa: BLE001 - reported to the host, which fails the test
        report["error"] = repr(err)
    finally:
        stop_load(load, allocators)
        if report["thp_before"] not in (None, report["thp"]):
            THP.write_text(report["thp_before"])
    stop_tracer(tracer, report)
    keep_log(LOG, report)
    print_report(MARK, report)


def _flagged_vmas(pid: int) -> int:
    """VM_HUGEPAGE VMAs in this (stopped) process's smaps: did glibc's tunable take effect?"""
    try:
        return sum(len(proc.vmas) for proc in scan([MNEMONIC], pids=[pid]))
    except OSError:
        return -1

if __name__ == "__main__":
    main()
