"""Runs INSIDE a lab guest: the soak (issue 8 item 7).  Started by bench/soak.py.

    python3 bench/soak_guest.py [MINUTES]

`mpxtrace trace --flag VM_NORESERVE --flag VM_LOCKED` under stress-ng's mmap, mremap and
madvise stressors (plus a locked --vm stressor where available; --mlock aborts in a 2 GiB
guest) for MINUTES (default 10).  The tracer's RSS is sampled every 10 s; at the end come the
events applied, every lost event by source, and the processes the tracer still holds live
memory for although they have exited.  Prints the figures and one JSON document between
markers; asserts nothing.
"""
from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from guest_tools import Mpxtrace  # noqa: E402
from lab_guest import stress_command  # noqa: E402

MARK = "=====MPXTRACE-SOAK-JSON====="
SAMPLE_EVERY = 10.0
SNAPSHOT_EVERY = 60.0  # SIGUSR1: the tracer prints its live picture (processes, exited or not)


def snapshot_figures(rec: Dict[str, Any]) -> Dict[str, Any]:
    procs = rec.get("processes", [])
    gone = [p for p in procs if not Path(f"/proc/{p.get('pid')}").exists()]
    return {"processes": len(procs), "exited": len(gone),
            "exited_with_live_vmas": sum(1 for p in gone if p.get("live_vmas")),
            "live_vmas": sum(int(p.get("live_vmas") or 0) for p in procs),
            "lost_events": rec.get("lost_events")}


def main() -> None:
    minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    seconds = int(minutes * 60)
    tracer = Mpxtrace(("VM_NORESERVE", "VM_LOCKED"), "auto", ("--no-resident",))
    command = stress_command(seconds)
    t0 = time.monotonic()
    load = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, universal_newlines=True,
                            cwd="/tmp")
    samples: List[Tuple[float, int]] = []
    next_sample = t0
    next_snapshot = t0 + SNAPSHOT_EVERY
    snapshots: List[Dict[str, Any]] = []
    seen = 0
    while load.poll() is None:
        now = time.monotonic()
        fresh, seen = tracer.lines[seen:], seen + len(tracer.lines[seen:])
        for rec in (json.loads(line) for line in fresh if '"type":"snapshot"' in line):
            snapshots.append({"t": round(now - t0)} | snapshot_figures(rec))
            print(f"t={now - t0:6.0f} s  snapshot {snapshots[-1]}", flush=True)
        if now >= next_snapshot:
            tracer.proc.send_signal(signal.SIGUSR1)
            next_snapshot += SNAPSHOT_EVERY
        if now >= next_sample:
            rss = tracer.rss_kib()
            if rss is not None:
                samples.append((now - t0, rss))
                print(f"t={now - t0:6.0f} s  tracer RSS {rss / 1024:7.1f} MiB", flush=True)
            next_sample += SAMPLE_EVERY
        time.sleep(0.5)
    load_s = time.monotonic() - t0
    time.sleep(5.0)  # drain what the ring still holds; stress-ng's workers have all exited
    before_stop = len(tracer.records())
    tracer.proc.send_signal(signal.SIGUSR1)  # the live picture at the end, even if the summary fails
    time.sleep(5.0)
    final = [r for r in tracer.records()[before_stop:] if r.get("type") == "snapshot"]
    code = tracer.stop()
    summary = tracer.record("summary") or {}
    lost_records = [r for r in tracer.records() if r.get("type") == "lost_events"]
    stale = [p for p in summary.get("processes", [])
             if (p.get("live_vmas") or p.get("live_bytes")) and not Path(f"/proc/{p.get('pid')}").exists()]
    warm = [rss for t, rss in samples if t >= 60]  # the first minute is warm-up (BCC, first bursts)
    third = max(1, len(warm) // 3)
    result: Dict[str, Any] = {
        "kernel": os.uname().release, "command": " ".join(command), "minutes": minutes,
        "stress_exit": load.returncode, "stress_s": load_s,
        "stress_stderr": (load.stderr.read() if load.stderr else "")[-500:],
        "tracer_exit": code, "tracer_stderr": tracer.stderr()[-3000:],
        "snapshots": snapshots, "final_snapshot": snapshot_figures(final[-1]) if final else None,
        "events_applied": summary.get("events"), "lost_events": summary.get("lost_events"),
        "lost_by_source": summary.get("lost_by_source"), "lost_records": len(lost_records),
        "lost_in_records": sum(int(r.get("count", 0)) for r in lost_records),
        "peak_rss_mib": (tracer.peak_rss_kib or 0) / 1024,
        "rss_samples_mib": [[round(t), round(rss / 1024, 1)] for t, rss in samples],
        "rss_first_third_after_warmup_mib": statistics.median(warm[:third]) / 1024 if warm else None,
        "rss_last_third_mib": statistics.median(warm[-third:]) / 1024 if warm else None,
        "processes_in_summary": len(summary.get("processes", [])),
        "exited_but_live": [{k: p.get(k) for k in ("pid", "comm", "live_vmas", "live_bytes")} for p in stale],
        "anomalies": len(summary.get("anomalies", [])),
        "totals": summary.get("totals"),
    }
    print(f"soak {minutes:g} min on {result['kernel']}: {result['events_applied']} events applied, "
          f"{result['lost_events']} lost {result['lost_by_source']}; tracer RSS after warm-up "
          f"{result['rss_first_third_after_warmup_mib']} -> {result['rss_last_third_mib']} MiB (medians of the "
          f"first and last thirds), peak {result['peak_rss_mib']:.1f} MiB; {len(stale)} exited processes "
          f"still live in the model; tracer exit {code}")
    print(MARK)
    print(json.dumps(result))
    print(MARK)


if __name__ == "__main__":
    main()
