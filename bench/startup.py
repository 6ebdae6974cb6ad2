"""Benchmark (run inside a lab guest): from command to attached, mpxtrace against bpftrace.

    python -m mpxtrace.lab --kernel 6.1 -- python3 bench/startup.py [RUNS] [--headers]

Each round starts, in this order: mpxtrace with an empty kernel-facts cache (a first start in
this boot), mpxtrace again (the cache written by the first), bpftrace with fentry probes and
bpftrace with kprobes (bench/guest_tools.py: mmap_region and vm_area_free, the same flag
filter).  Wall time is fork to the first line saying the probes are live, for every tool.
mpxtrace's own `startup_s` splits its time into kernel probing and compile+load+attach (BCC);
the rest is Python start, imports and seeding from /proc.  With --headers, a fifth start uses
structure offsets from the kernel headers instead of BTF.  Prints medians; asserts nothing.
"""
from __future__ import annotations

import os
import shutil
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from guest_tools import VM_NORESERVE, Mpxtrace, StartFailed, have, start_bpftrace  # noqa: E402

CACHE_DIR = Path("/var/cache/mpxtrace")  # mpxtrace.kernel.factcache.CACHE_DIR (not imported: plain guest Python)


def mpxtrace(extra: Tuple[str, ...] = ()) -> Dict[str, float]:
    tracer = Mpxtrace(("VM_NORESERVE",), "auto", extra)
    tracer.stop()
    split = tracer.attached.get("startup_s", {})
    probe, cla = float(split.get("probe", 0.0)), float(split.get("compile_load_attach", 0.0))
    return {"wall": tracer.start_seconds, "probe": probe, "compile_load_attach": cla,
            "rest": tracer.start_seconds - probe - cla}


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    runs = int(args[0]) if args else 3
    rows: Dict[str, List[Dict[str, float]]] = {"mpxtrace first start": [], "mpxtrace cached": []}
    if "--headers" in sys.argv:
        rows["mpxtrace cached, header offsets"] = []
    peers: Dict[str, List[float]] = {"bpftrace fentry": [], "bpftrace kprobe": []}
    for _ in range(runs):
        shutil.rmtree(CACHE_DIR, ignore_errors=True)
        rows["mpxtrace first start"].append(mpxtrace())
        rows["mpxtrace cached"].append(mpxtrace())
        if "mpxtrace cached, header offsets" in rows:
            rows["mpxtrace cached, header offsets"].append(mpxtrace(("--offsets", "headers")))
        if have("bpftrace"):
            for mode in ("fentry", "kprobe"):
                try:
                    peer = start_bpftrace(mode, VM_NORESERVE)
                except StartFailed as err:
                    print(f"bpftrace {mode}: {str(err)[-300:]}")
                    continue
                peer.stop()
                peers[f"bpftrace {mode}"].append(peer.start_seconds)
    print(f"kernel {os.uname().release}; {runs} rounds, starts interleaved; median seconds, command to attached")
    for name, got in rows.items():
        med = {k: statistics.median(r[k] for r in got) for k in got[0]}
        print(f"{name:<32} {med['wall']:6.2f} s  (probe {med['probe']:5.2f}, compile+load+attach "
              f"{med['compile_load_attach']:5.2f}, Python start+imports+seed {med['rest']:5.2f}); "
              f"runs {', '.join('%.1f' % r['wall'] for r in got)}")
    for name, times in peers.items():
        if times:
            print(f"{name:<32} {statistics.median(times):6.2f} s  runs {', '.join(f'{t:.1f}' for t in times)}")
    best_peer = [statistics.median(t) for t in peers.values() if t]
    if best_peer:
        for name, got in rows.items():
            print(f"{name} / fastest bpftrace: {statistics.median(r['wall'] for r in got) / min(best_peer):.2f}x")


if __name__ == "__main__":
    main()
