"""Measure (run inside a lab guest): which of our programs the kernel skips under a load.

    python -m mpxtrace.lab --kernel 7.2 -- python3 bench/skip_sources.py [auto|kprobe|fentry] [SECONDS]

Loads the kernel program as `trace --flag VM_NORESERVE` does (a 2-page ring, drained), runs
stress-ng's mmap, mremap and madvise stressors for SECONDS, and prints each program's
recursion_misses (runs the kernel skipped: 5.12+) as JSON.  A skipped run is a loss nobody can
attribute to an address space (lostspaces.py), so it keeps every picture provisional; this says
which hook it hit.  Asserts nothing.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from mpxtrace.flags import resolve_flags
from mpxtrace.kernel.features import probe_kernel
from mpxtrace.kernel.proginfo import recursion_misses
from mpxtrace.tracer import TraceOptions, Tracer


def main() -> None:
    attach = sys.argv[1] if len(sys.argv) > 1 else "auto"
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 20.0
    tracer = Tracer(TraceOptions(resolve_flags(["VM_NORESERVE"], None), attach=attach, buffer_pages=2, seed=False,
                                 resync=False), probe_kernel())
    tracer.start()
    program = tracer._program
    assert program is not None
    load = subprocess.Popen(["stress-ng", "--mmap", "2", "--mremap", "2", "--madvise", "1", "--timeout",
                             f"{int(seconds)}s", "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd="/tmp")
    end = time.monotonic() + seconds + 5
    while load.poll() is None and time.monotonic() < end:
        program.poll(100)
        tracer._pending.clear()
    load.wait()
    misses = {(name.decode() if isinstance(name, bytes) else str(name)): recursion_misses(func.fd)
              for name, func in program.bpf.funcs.items()}
    print(json.dumps({"kernel": os.uname().release, "attach": attach, "seconds": seconds,
                      "plan": [[a.hook, a.symbol, a.mode] for a in program.config.plan.attaches],
                      "recursion_misses": {k: v for k, v in sorted(misses.items()) if v},
                      "counters": program.counters()}))
    program.close()


if __name__ == "__main__":
    main()
