"""Benchmark (run inside a lab guest): how long the tracer takes to be ready.

    python -m mpxtrace.lab --kernel 6.1 -- python3 bench/startup.py [RUNS]

Starts `mpxtrace trace` with structure offsets from BTF (the default: only small uapi headers
are compiled) and from the kernel headers (offsetof over linux/mm_types.h and linux/sched.h,
the path for kernels without BTF), alternately, and prints the probe and compile+load+attach
seconds the tracer reports, with the ratio of the medians.  Asserts nothing.
"""
from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
from typing import Dict, List


def one(offsets: str) -> Dict[str, float]:
    proc = subprocess.Popen([sys.executable, "-m", "mpxtrace", "trace", "--flag", "VM_NORESERVE", "--json",
                             "--offsets", offsets, "--no-seed"], stdout=subprocess.PIPE, universal_newlines=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        rec = json.loads(line)
        if rec.get("type") == "attached":
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
            return dict(rec["startup_s"])
    raise SystemExit(f"tracer exited {proc.wait()} before attaching")


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    results: Dict[str, List[Dict[str, float]]] = {"btf": [], "headers": []}
    for _ in range(runs):
        for offsets in results:
            results[offsets].append(one(offsets))
    import os
    print(f"kernel {os.uname().release}; {runs} starts each, alternating")
    med = {k: statistics.median(r["compile_load_attach"] for r in v) for k, v in results.items()}
    for offsets, rows in results.items():
        print(f"offsets={offsets:<8} probe {statistics.median(r['probe'] for r in rows):5.2f} s   "
              f"compile+load+attach {med[offsets]:5.2f} s")
    print(f"headers / btf compile+load+attach: {med['headers'] / med['btf']:.2f}x")


if __name__ == "__main__":
    main()
