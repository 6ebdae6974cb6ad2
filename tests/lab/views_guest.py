"""Runs INSIDE a lab guest: a real trace served to Prometheus and scraped over HTTP, with
interval records (histograms, resident bytes) and a log for the capture views.

The flag is VM_LOCKED: on the 6.12 guest (Python 3.13) the workload's interpreter held
VM_NORESERVE memory of its own besides ours, so exact figures need a flag only we set.  The workload locks 64 pages with mlock2(MLOCK_ONFAULT) and
touches 16 of them (so 64 KiB resident), then maps and frees 8 MAP_LOCKED pages twice (lifetimes).  Everything lands in /mnt/out (copied back to
the host); one JSON document between markers says what happened.  Plain Python, no pytest.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from typing import Any, Dict, List

from guestout import print_report  # same directory: the script's own

MARK = "=====MPXTRACE-VIEWS-JSON====="
OUT = "/mnt/out"
PORT = 9464
LOCK_ON_FAULT = """
import ctypes
from mpxtrace import workload as w
def lock_on_fault(pages):
    addr = w.mmap(0, pages, w.PROT_READ | w.PROT_WRITE, 0)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mlock2(ctypes.c_void_p(addr), ctypes.c_size_t(pages * 4096), 1) != 0:  # MLOCK_ONFAULT
        raise OSError(ctypes.get_errno(), "mlock2")
    return addr
"""
WORKLOAD = LOCK_ON_FAULT + """
import sys, time
big = lock_on_fault(64)
w.touch(big, 16)
for _ in range(2):
    small = w.mmap(0, 8, w.PROT_READ | w.PROT_WRITE, w.MAP_LOCKED)
    time.sleep(0.3)
    w.munmap(small, 8)
print("ready", flush=True)
sys.stdin.readline()
"""


CHURN = LOCK_ON_FAULT + """
import time
held = lock_on_fault(256)
w.touch(held, 100)
pages = 1
while True:
    addr = w.mmap(0, pages, w.PROT_READ | w.PROT_WRITE, w.MAP_LOCKED)
    w.touch(addr, 1)
    time.sleep(0.05 * (pages % 7))
    w.munmap(addr, pages)
    pages = pages * 2 if pages < 512 else 1
"""


def _records(path: str) -> List[Dict[str, Any]]:
    out = []
    with open(path) as fh:
        for line in fh:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def _wait_for(path: str, rtype: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(r.get("type") == rtype for r in _records(path)):
            return
        time.sleep(0.2)
    raise TimeoutError(f"no {rtype} record in {path} within {timeout}s")


def loopback_up() -> None:
    """The guest boots with `lo` down; metrics are served on 127.0.0.1."""
    from pyroute2 import IPRoute
    with IPRoute() as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")


def _wait_for_sample(path: str, pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p["pid"] == pid and "resident_bytes" in p for r in _records(path) if r.get("type") == "interval"
               for p in r["processes"]):
            return
        time.sleep(0.2)
    raise TimeoutError(f"no interval with a resident sample of pid {pid} within {timeout}s")


def _wait_for_intervals(path: str, more: int, timeout: float) -> None:
    def count() -> int:
        return sum(1 for r in _records(path) if r.get("type") == "interval")
    target = count() + more
    deadline = time.monotonic() + timeout
    while count() < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {more} intervals within {timeout}s")
        time.sleep(0.2)


def main() -> None:
    result: Dict[str, Any] = {}
    loopback_up()
    stream = os.path.join(OUT, "trace.ndjson")
    with open(stream, "w") as out, open(os.path.join(OUT, "trace.stderr"), "w") as err:
        tracer = subprocess.Popen([sys.executable, "-m", "mpxtrace", "trace", "--flag", "VM_LOCKED", "--json",
                                   "--log", os.path.join(OUT, "run.ndjson"), "--prometheus", str(PORT), "1"],
                                  stdout=out, stderr=err)
    workload = None
    try:
        _wait_for(stream, "attached", 300)
        workload = subprocess.Popen([sys.executable, "-c", WORKLOAD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    universal_newlines=True)
        assert workload.stdout is not None and workload.stdin is not None
        assert workload.stdout.readline().strip() == "ready"
        result["workload_pid"] = workload.pid
        _wait_for_sample(stream, workload.pid, 120)  # an interval with its resident sample
        _wait_for_intervals(stream, 2, 60)  # and two more, after every event of the workload's start
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{PORT}/metrics", timeout=30).read().decode()
        with open(os.path.join(OUT, "metrics.txt"), "w") as fh:
            fh.write(metrics)
        workload.stdin.write("\n")
        workload.stdin.flush()
        result["workload_exit"] = workload.wait(60)
        time.sleep(1.5)
        tracer.send_signal(signal.SIGINT)
        result["tracer_exit"] = tracer.wait(120)
    except Exception as exc:  # noqa: BLE001 - reported to the host test
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        for proc in (tracer, workload):
            if proc is not None and proc.poll() is None:
                proc.kill()
    # the plain interval output, as a user on a pipe sees it, beside a workload mapping and freeing
    ready = "/tmp/plain-ready"
    plain = subprocess.Popen([sys.executable, "-m", "mpxtrace", "trace", "--flag", "VM_LOCKED", "--no-live",
                              "--ready-file", ready, "--log", os.path.join(OUT, "churn.ndjson"), "--duration", "8", "1"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, universal_newlines=True)
    deadline = time.monotonic() + 300
    while not os.path.exists(ready) and plain.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    churn = subprocess.Popen([sys.executable, "-c", CHURN])
    text, _ = plain.communicate(timeout=300)
    churn.kill()
    churn.wait()
    with open(os.path.join(OUT, "plain.txt"), "w") as fh:
        fh.write(text)
    result["plain_exit"] = plain.returncode
    print_report(MARK, result)


if __name__ == "__main__":
    main()
