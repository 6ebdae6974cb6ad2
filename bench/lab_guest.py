"""Runs INSIDE a lab guest: every lab figure of the benchmark suite, in one boot.

    python -m mpxtrace.lab --kernel 6.1 -- python3 bench/lab_guest.py [--quick]

(bench/suite.py boots each lab kernel with this and collects the JSON it prints between
markers.)  Sections, in this order so the slow ones share one compiled program cache:
  overhead  bench/probe_overhead.py: added cost per mmap+munmap, mpxtrace vs bpftrace
  startup   command to attached, mpxtrace (auto, kprobe) vs bpftrace (fentry, kprobe)
  drain     events/s through decode -> model -> log while a burst is drained
  stress    stress-ng for 20 s under trace --flag VM_NORESERVE, then VM_LOCKED: events
            applied, lost by source, tracer peak RSS
Asserts nothing; a section that cannot run says why in "skipped".
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
import probe_overhead  # noqa: E402
from guest_tools import ROOT, Mpxtrace, StartFailed, have, tool_version  # noqa: E402

MARK = "=====MPXTRACE-BENCH-JSON====="

BURST = """
import sys
from mpxtrace import workload as w
for _ in range(int(sys.argv[1])):
    w.munmap(w.mmap(0, 1, 3, w.MAP_NORESERVE), 1)
"""


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    except OSError:
        return 0


def drain(pairs: int) -> Dict[str, Any]:
    """A burst of `pairs` flagged mmap+munmap (2 events each) into a buffer large enough to hold
    it; the rate is log lines over the time the log kept growing (first to last growth)."""
    log = Path(f"/tmp/drain-{os.getpid()}.ndjson")
    tracer = Mpxtrace(("VM_NORESERVE",), "auto", ("--log", str(log), "--buffer-pages", "4096", "--no-seed",
                                                  "--no-resident"))
    before = _lines(log)
    t0 = time.monotonic()
    burst = subprocess.Popen([sys.executable, "-c", BURST, str(pairs)], cwd=str(ROOT))
    samples = [(t0, before)]
    burst_done = None
    quiet_since = None
    while True:
        time.sleep(0.1)
        now, count = time.monotonic(), _lines(log)
        if burst_done is None and burst.poll() is not None:
            burst_done = now
        if count != samples[-1][1]:
            samples.append((now, count))
            quiet_since = None
        elif burst_done is not None:
            quiet_since = quiet_since or now
            if now - quiet_since > 15.0:  # the log writes in chunks: 15 s without growth = drained
                break
        if now - t0 > 600:
            break
    tracer.stop()
    summary = tracer.record("summary") or {}
    growth = [s for s in samples if s[1] > before]
    first, last = (growth[0], growth[-1]) if len(growth) >= 2 else (None, None)
    rate = (last[1] - first[1]) / (last[0] - first[0]) if first and last and last[0] > first[0] else None
    log.unlink(missing_ok=True)
    return {"pairs": pairs, "burst_s": (burst_done or t0) - t0, "log_lines": samples[-1][1] - before,
            "events_applied": summary.get("events"), "lost_events": summary.get("lost_events"),
            "lost_by_source": summary.get("lost_by_source"),
            "drained_s": last[0] - t0 if last else None, "events_per_s": rate,
            "events_per_s_from_burst_start": (last[1] - before) / (last[0] - t0) if last else None}


def stress_command(seconds: int) -> List[str]:
    """stress-ng's mmap/mremap/madvise stressors (--mlock aborts in a 2 GiB guest), plus a
    locked --vm stressor where this stress-ng has --vm-locked, so VM_LOCKED has work too."""
    help_text = subprocess.run(["stress-ng", "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True).stdout
    argv = ["stress-ng", "--mmap", "2", "--mremap", "2", "--madvise", "1"]
    if "--vm-locked" in help_text:
        argv += ["--vm", "1", "--vm-bytes", "32M", "--vm-locked"]
    return argv + ["--timeout", f"{seconds}s", "--quiet"]


def stress(seconds: int) -> Dict[str, Any]:
    out: Dict[str, Any] = {"command": " ".join(stress_command(seconds)), "seconds": seconds}
    for flag in ("VM_NORESERVE", "VM_LOCKED"):
        tracer = Mpxtrace((flag,), "auto", ("--no-resident",))
        rss: List[int] = []
        t0 = time.monotonic()
        load = subprocess.Popen(stress_command(seconds), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                universal_newlines=True, cwd="/tmp")  # stress-ng needs a writable cwd
        while load.poll() is None:
            sample = tracer.rss_kib()
            if sample:
                rss.append(sample)
            time.sleep(0.5)
        load_s = time.monotonic() - t0
        time.sleep(2.0)  # let the tracer drain what the ring still holds
        code = tracer.stop()
        summary = tracer.record("summary") or {}
        out[flag] = {"tracer_exit": code, "stress_exit": load.returncode, "stress_s": load_s,
                     "stress_stderr": (load.stderr.read() if load.stderr else "")[-500:],
                     "events_applied": summary.get("events"), "lost_events": summary.get("lost_events"),
                     "lost_by_source": summary.get("lost_by_source"),
                     "peak_rss_mib": (tracer.peak_rss_kib or 0) / 1024,
                     "rss_median_mib": statistics.median(rss) / 1024 if rss else None}
    return out


def startup(result: Dict[str, Any]) -> Dict[str, Any]:
    """Command to attached, from the starts the overhead section timed (interleaved with it)."""
    starts = result.get("start_seconds", {})
    out: Dict[str, Any] = {k: {"median_s": statistics.median(v), "runs_s": v} for k, v in starts.items()}
    for mpx, peer in (("mpx-auto", "bpftrace-fentry"), ("mpx-kprobe", "bpftrace-kprobe")):
        if mpx in out and peer in out:
            out[f"{mpx}/{peer}"] = out[mpx]["median_s"] / out[peer]["median_s"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller runs (a smoke test, not for README)")
    parser.add_argument("--sections", default="overhead,drain,stress")
    args = parser.parse_args()
    sections = args.sections.split(",")
    result: Dict[str, Any] = {
        "kernel": os.uname().release, "python": platform.python_version(),
        "bpftrace": tool_version(["bpftrace", "--version"]) if have("bpftrace") else None,
        "stress_ng": tool_version(["stress-ng", "--version"]) if have("stress-ng") else None,
        "skipped": {}, "cpus": os.cpu_count(),
    }
    try:
        import bcc  # noqa: F401
        result["bcc"] = getattr(bcc, "__version__", None)
    except ImportError:
        result["bcc"] = None
    t0 = time.monotonic()
    if "overhead" in sections:
        iterations, rounds, repeat = (5000, 2, 1) if args.quick else (20000, 3, 2)
        overhead = probe_overhead.measure(iterations, rounds, repeat)
        result["overhead"] = overhead
        result["startup"] = startup(overhead)
        probe_overhead.print_table(overhead)
    if "drain" in sections:
        try:
            result["drain"] = drain(5000 if args.quick else 20000)
        except StartFailed as err:
            result["skipped"]["drain"] = str(err)[-800:]
    if "stress" in sections:
        if have("stress-ng"):
            try:
                result["stress"] = stress(5 if args.quick else 20)
            except StartFailed as err:
                result["skipped"]["stress"] = str(err)[-800:]
        else:
            result["skipped"]["stress"] = "stress-ng is not installed in this guest"
    result["guest_seconds"] = time.monotonic() - t0
    with open("/proc/loadavg") as fh:
        result["guest_loadavg"] = fh.read().split()[:3]
    print(MARK)
    print(json.dumps(result))
    print(MARK)


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    main()
