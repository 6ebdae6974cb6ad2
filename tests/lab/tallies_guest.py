"""Runs INSIDE a lab guest: the kernel's own aggregates (mpxtrace/tallies.py) against what the
workload knows it did.

Two workers, followed with -p, each map and unmap VM_NORESERVE memory of random sizes
(1 to 2,048 pages: buckets from 4 KiB to 8 MiB), and count what they did themselves: how many
mappings, their bytes, and the bit length of every size (the histogram's bucket).
  overload: a one-page stream buffer, the workers as fast as they go, so the stream overflows;
  paced:    the default buffer and a pause after every pair, so nothing is lost and every event
            the kernel counted is in the log, kind by kind.
Each phase stops the tracer (SIGINT) while the workers still live, so nothing else of theirs is
counted, and copies its log to /mnt/out for the host to replay.  One JSON document between markers
says what happened; the host test asserts.  Plain Python 3.9, no pytest.

    python3 tests/lab/tallies_guest.py
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from guest_tools import Mpxtrace, StartFailed  # noqa: E402

from guestout import print_report  # noqa: E402  (same directory; tests/ is not a package)

MARK = "=====MPXTRACE-TALLIES-JSON====="
OUT = Path("/mnt/out")
WORKERS = 2

WORKER = """
import json, random, sys, time
from mpxtrace import workload as w
seed, pairs, pause = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
rng = random.Random(seed)
RW = w.PROT_READ | w.PROT_WRITE
sizes = [rng.choice((rng.randint(1, 16), rng.randint(1, 2048))) for _ in range(pairs)]
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()
for pages in sizes:
    addr = w.mmap(0, pages, RW, w.MAP_NORESERVE)
    w.munmap(addr, pages)
    if pause:
        time.sleep(pause)
buckets = {}
for pages in sizes:
    k = (pages * w.PAGE).bit_length()
    buckets[k] = buckets.get(k, 0) + 1
print(json.dumps({"count": len(sizes), "bytes": sum(sizes) * w.PAGE,
                  "log2": sorted([k, n] for k, n in buckets.items())}), flush=True)
sys.stdin.readline()
"""


def _workers(seed: int, pairs: int, pause: float) -> List["subprocess.Popen[str]"]:
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(seed + i), str(pairs), str(pause)], cwd=str(ROOT),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, universal_newlines=True)
             for i in range(WORKERS)]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return procs


def phase(name: str, seed: int, pairs: int, pause: float, extra: List[str]) -> Dict[str, Any]:
    workers = _workers(seed, pairs, pause)
    log = Path(f"/tmp/tallies-{name}.ndjson")
    pid_args = [arg for proc in workers for arg in ("-p", str(proc.pid))]
    try:
        tracer = Mpxtrace(("VM_NORESERVE",), extra=("--log", str(log), *pid_args, *extra))
    except StartFailed as err:
        for proc in workers:
            proc.kill()
        return {"error": str(err)[-2000:]}
    started = time.monotonic()
    for proc in workers:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    truths = []
    for proc in workers:
        assert proc.stdout is not None
        truths.append(json.loads(proc.stdout.readline()))
    workload_s = time.monotonic() - started
    time.sleep(1.0)  # the tracer drains what the buffer still holds
    exit_code = tracer.stop()
    for proc in workers:
        assert proc.stdin is not None
        proc.stdin.write("exit\n")
        proc.stdin.flush()
        proc.wait(60)
    OUT.mkdir(exist_ok=True)
    shutil.copy(str(log), str(OUT / log.name))
    return {"truths": truths, "summary": tracer.record("summary"), "tracer_exit": exit_code,
            "stderr": tracer.stderr()[-3000:], "log": log.name, "workload_s": round(workload_s, 2),
            "hooks": tracer.hooks()}


def main() -> None:
    seed = int.from_bytes(os.urandom(4), "little")
    report: Dict[str, Any] = {"seed": seed, "kernel": os.uname().release}
    try:
        report["overload"] = phase("overload", seed, 20000, 0.0, ["--buffer-pages", "1"])
        report["paced"] = phase("paced", seed + 100, 1500, 0.002, [])
    except Exception as err:  # noqa: BLE001 - the host test shows it
        report["error"] = f"{type(err).__name__}: {err}"
    print_report(MARK, report)


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    main()
