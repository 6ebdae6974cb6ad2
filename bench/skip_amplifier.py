"""Measure (run inside a lab guest): does a map syscall on a CPU make our programs skip?

    python -m mpxtrace.lab --kernel 7.2 -- python3 bench/skip_amplifier.py [kprobe,fentry] [SECONDS]

Every bpf(2) map lookup from user space holds the CPU's bpf_prog_active; a kprobe program firing
on that CPU meanwhile is skipped (its recursion_misses).  Where the kernel preempts in kernel mode,
a task preempted inside the lookup holds it for a whole time slice.  For each attach mode this
traces VM_NORESERVE under two mmap/munmap loaders, alternately without and with two processes
looping BPF_MAP_LOOKUP_ELEM on a map of their own, and prints the tracer's losses by source.
Asserts nothing.  (This is why the tracer reads its counters from an mmap-ed array.)
"""
from __future__ import annotations

import ctypes
import json
import mmap
import os
import signal
import subprocess
import sys
import time
from typing import Dict, List, Optional

from mpxtrace.kernel.bpfsyscall import BPF_MAP_LOOKUP_ELEM, MapElemAttr, sys_bpf
from mpxtrace.kernel.mappedarray import create_array

MAP_NORESERVE = 0x4000


def lookup_forever() -> None:
    fd = create_array(1)
    assert fd >= 0, f"BPF_MAP_CREATE: errno {-fd}"
    key, value = ctypes.c_uint32(0), ctypes.c_uint64(0)
    attr = MapElemAttr(fd, 0, ctypes.addressof(key), ctypes.addressof(value), 0)
    while True:
        sys_bpf(BPF_MAP_LOOKUP_ELEM, attr)


def mmap_loop(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        mmap.mmap(-1, 65536, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE).close()


def fork(fn: object, *args: object) -> int:
    pid = os.fork()
    if pid == 0:
        try:
            fn(*args)  # type: ignore[operator]
        finally:
            os._exit(0)
    return pid


def one_run(attach: str, lookers: int, seconds: float) -> Dict[str, object]:
    amplifiers = [fork(lookup_forever) for _ in range(lookers)]
    tracer = subprocess.Popen([sys.executable, "-m", "mpxtrace", "trace", "--flag", "VM_NORESERVE", "--json",
                               "--attach", attach, "--no-resident"], stdout=subprocess.PIPE, universal_newlines=True)
    assert tracer.stdout is not None
    for line in tracer.stdout:
        if '"attached"' in line:
            break
    for pid in [fork(mmap_loop, seconds) for _ in range(2)]:
        os.waitpid(pid, 0)
    for pid in amplifiers:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    tracer.send_signal(signal.SIGINT)
    summary: Optional[Dict[str, object]] = None
    for line in tracer.stdout:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("type") == "summary":
            summary = rec
    tracer.wait()
    assert summary is not None, "the tracer ended without a summary"
    return {"attach": attach, "map_lookup_loops": lookers, "events": summary["events"],
            "lost_by_source": summary["lost_by_source"]}


def main() -> None:
    modes: List[str] = (sys.argv[1] if len(sys.argv) > 1 else "kprobe,fentry").split(",")
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
    print(f"kernel {os.uname().release}; {seconds:.0f} s of mmap/munmap per run", flush=True)
    for attach in modes:
        for lookers in (0, 2, 0, 2):
            print(json.dumps(one_run(attach, lookers, seconds)), flush=True)


if __name__ == "__main__":
    main()
