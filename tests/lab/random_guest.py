"""Runs INSIDE a lab guest: the randomized differential test.  The tracer follows random VMA
lifecycles (mpxtrace.randomwork) and, at every checkpoint, its per-VMA picture of each live
actor (the snapshot's ``vmas``) is compared with that process's /proc/PID/smaps.

    python3 tests/lab/random_guest.py '{"jobs": [{"flag": "VM_LOCKED", "seed": 7}, ...], "count": 100}'
    python3 tests/lab/random_guest.py @jobs.json

A job is {"flag", "seed"} (operations drawn from the seed) or {"flag", "ops": [...]} or
{"flag", "ops_file": PATH} (an explicit list, e.g. a shrunk one), with an optional "name".
Jobs of one flag share one tracer (starting one costs 10-25 s under emulation), run one after
another, or "parallel": N at a time (each compares only its own processes, which are idle at
its checkpoints whatever the others do); "fresh_tracer": true starts one per job.  Prints one JSON document between markers;
tests/lab/test_lab_random.py and mpxtrace.lab.campaign read it.  Plain Python (no pytest).
"""
from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e_guest import Lines  # noqa: E402  (same directory; tests/ is not a package)
from guestout import print_report  # noqa: E402  (same directory; tests/ is not a package)

MARK = "=====MPXTRACE-RANDOM-JSON====="
# smaps VmFlags mnemonic of each flag mpxtrace.randomops draws runs for (tests/test_randomwork.py
# holds this to mpxtrace.flags)
MNEMONIC = {"VM_NORESERVE": "nr", "VM_LOCKED": "lo", "VM_HUGEPAGE": "hg", "VM_DONTCOPY": "dc", "VM_WIPEONFORK": "wf",
            "VM_MERGEABLE": "mg"}
MAX_DIFFS = 40  # per job: the first ones say what went wrong; the rest repeat it
Vma = Tuple[int, int]


def smaps_flagged(pid: int, mnemonic: str) -> Dict[Vma, str]:
    """Every VMA of pid whose VmFlags carry the mnemonic -> a description (perms, name, flags)."""
    try:
        text = open(f"/proc/{pid}/smaps").read()
    except OSError:
        return {}
    found: Dict[Vma, str] = {}
    head: Optional[Tuple[Vma, str]] = None
    for line in text.splitlines():
        first = line.split(" ", 1)[0]
        if "-" in first and all(c in "0123456789abcdef-" for c in first):
            parts = line.split()
            lo, hi = first.split("-")
            head = ((int(lo, 16), int(hi, 16)), " ".join([parts[1]] + parts[5:6]))
        elif line.startswith("VmFlags:") and head is not None:
            flags = line.split()[1:]
            if mnemonic in flags:
                found[head[0]] = f"{head[1]} [{' '.join(flags)}]"
    return found


def traced_vmas(snapshot: Dict[str, Any], pid: int) -> List[Vma]:
    """The tracer's flagged VMAs of every live address space it attributes to pid."""
    out: List[Vma] = []
    for proc in snapshot["processes"]:
        if proc["pid"] == pid and not proc["exited"]:
            out.extend((int(a, 16), int(b, 16)) for a, b in proc.get("vmas", []))
    return sorted(out)


def compare(truth: Dict[Vma, str], traced: List[Vma]) -> Tuple[List[List[Any]], List[List[Any]]]:
    """VMAs only in smaps (with smaps' description) and only in the tracer (multiset: a VMA the
    tracer holds twice is one too many)."""
    left = collections.Counter(traced)
    only_smaps = []
    for vma in sorted(truth):
        if left[vma]:
            left[vma] -= 1
        else:
            only_smaps.append([hex(vma[0]), hex(vma[1]), truth[vma]])
    only_tracer = [[hex(a), hex(b)] for (a, b), n in sorted(left.items()) for _ in range(n)]
    return only_smaps, only_tracer


class TracerSession:
    """One tracer process for a flag; snapshots on demand."""

    def __init__(self, flag: str, tag: str) -> None:
        self.flag = flag
        err_dir = "/mnt/out" if os.path.isdir("/mnt/out") else "/tmp"  # kept on the host with --out
        self.log = f"{err_dir}/random-{tag}.ndjson"
        self.err = open(f"{err_dir}/tracer-random-{tag}.stderr", "w")
        started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-m", "mpxtrace", "trace", "--flag", flag, "--json",
                                      "--log", self.log, "--verify", "3"], stdout=subprocess.PIPE, stderr=self.err,
                                     universal_newlines=True)
        self.out = Lines(self.proc.stdout)
        self.lock = threading.Lock()
        self.attached = self.out.next_json("attached", 300)
        self.startup_s = round(time.monotonic() - started, 2)

    def snapshot(self) -> Dict[str, Any]:
        with self.lock:  # jobs run side by side: each waits for the snapshot it asked for
            if self.proc.poll() is not None:
                raise RuntimeError(f"the tracer exited with status {self.proc.returncode}")
            self.proc.send_signal(signal.SIGUSR1)
            return self.out.next_json("snapshot", 120)

    def finish(self) -> Dict[str, Any]:
        self.proc.send_signal(signal.SIGINT)
        summary = self.out.next_json("summary", 120)
        return {"tracer_exit": self.proc.wait(120), "events": summary["events"],
                "lost_events": summary["lost_events"], "lost_by_source": summary.get("lost_by_source", {}),
                "anomalies": summary["anomalies"], "complete": summary.get("complete"),
                "drift": summary.get("drift")}

    def stderr_tail(self) -> str:
        self.err.flush()
        try:
            return open(self.err.name).read()[-3000:]
        except OSError:
            return ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()


RESYNC_WAIT_S = 60.0


def settled_snapshot(tracer: TracerSession, pids: List[int], result: Dict[str, Any]) -> Dict[str, Any]:
    """The tracer's snapshot once none of `pids` is provisional.  After a loss the kernel imposed
    (program_skipped on 7.2) the tracer marks a process `resync_pending` until resync has re-read
    it: the comparison waits for that repair (the workload is paused here) and stays strict."""
    deadline = time.monotonic() + RESYNC_WAIT_S
    while True:
        snap = tracer.snapshot()
        pending = [p["pid"] for p in snap["processes"] if p["pid"] in pids and p.get("resync_pending")]
        if not pending or time.monotonic() > deadline:
            if pending:
                result["still_pending"] = result.get("still_pending", 0) + 1
            return snap
        result["resync_waits"] = result.get("resync_waits", 0) + 1
        time.sleep(0.5)


def run_job(tracer: TracerSession, job: Dict[str, Any], count: int) -> Dict[str, Any]:
    flag = job["flag"]
    cmd = [sys.executable, "-m", "mpxtrace.randomwork", "--flag", flag, "--count", str(count), "--pause"]
    if "seed" in job:
        cmd += ["--seed", str(job["seed"])]
    elif "ops_file" in job:
        cmd += ["--ops", "@" + job["ops_file"]]
    else:
        cmd += ["--ops", json.dumps(job["ops"])]
    result: Dict[str, Any] = {"flag": flag, "seed": job.get("seed"), "name": job.get("name"), "checks": 0,
                              "diffs": [], "diff_count": 0, "pids": []}
    started = time.monotonic()
    lost0 = tracer.snapshot()["lost_events"]
    wl = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, universal_newlines=True)
    assert wl.stdout is not None and wl.stdin is not None
    pids: List[int] = []
    try:
        for line in wl.stdout:
            words = line.split()
            if words[:1] == ["OPS"]:
                result["digest"], result["ops"] = words[1], int(words[2])
            elif words[:1] == ["RESULTS"]:
                result["results"] = json.loads(line[len("RESULTS "):])
            elif words[:1] == ["FAILED"]:
                result["failed"] = line[len("FAILED "):].strip()
            elif words[:1] == ["CHECK"]:
                index, check_pids = int(words[1]), [int(p) for p in words[2].split(",") if p]
                actor_of = dict(zip(check_pids, (int(a) for a in words[3].split(","))))
                pids.extend(p for p in check_pids if p not in pids)
                truth = {pid: smaps_flagged(pid, MNEMONIC[flag]) for pid in check_pids}
                snap = settled_snapshot(tracer, check_pids, result)
                result["checks"] += 1
                result["flagged_seen"] = result.get("flagged_seen", 0) + sum(len(t) for t in truth.values())
                for pid in check_pids:
                    only_smaps, only_tracer = compare(truth[pid], traced_vmas(snap, pid))
                    if only_smaps or only_tracer:
                        result["diff_count"] += 1
                        if len(result["diffs"]) < MAX_DIFFS:
                            result["diffs"].append({"op_index": index, "pid": pid, "actor": actor_of[pid],
                                                    "only_smaps": only_smaps, "only_tracer": only_tracer})
                wl.stdin.write("\n")
                wl.stdin.flush()
        result["exit"] = wl.wait(120)
        time.sleep(0.3)  # the last exits' teardown events
        final = tracer.snapshot()
        left = [[p["pid"], p.get("vmas", [])] for p in final["processes"]
                if p["pid"] in pids and not p["exited"] and p.get("vmas")]
        if left:  # every actor has exited: nothing of theirs may still be live
            result["diff_count"] += 1
            result["diffs"].append({"op_index": "exit", "left_live": left})
        result["lost_events"] = final["lost_events"] - lost0
    except Exception as exc:  # noqa: BLE001 - reported to the host, which fails on it
        result["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        if wl.poll() is None:
            wl.kill()
    result["pids"] = pids
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def add_oplist(result: Dict[str, Any], count: int) -> None:
    """A failing seed's operation list, for the campaign to shrink."""
    failing = result["diff_count"] or result.get("lost_events") or result.get("anomalies") or "failed" in result
    if failing and result.get("seed") is not None:
        listing = subprocess.run([sys.executable, "-m", "mpxtrace.randomwork", "--flag", result["flag"], "--count",
                                  str(count), "--seed", str(result["seed"]), "--print-ops"],
                                 stdout=subprocess.PIPE, universal_newlines=True)
        result["oplist"] = json.loads(listing.stdout)


def run_group(flag: str, jobs: List[Dict[str, Any]], count: int, tag: str, parallel: int = 1) -> Dict[str, Any]:
    group: Dict[str, Any] = {"flag": flag, "jobs": []}
    tracer = None
    try:
        tracer = TracerSession(flag, tag)
        group["startup_s"] = tracer.startup_s
        group["attach"] = tracer.attached.get("attach")
        with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
            group["jobs"] = list(pool.map(lambda job: run_job(tracer, job, count), jobs))  # type: ignore[arg-type]
        group.update(tracer.finish())
        by_pid = {pid: j for j in group["jobs"] for pid in j["pids"]}
        for anomaly in group["anomalies"]:
            job = by_pid.get(anomaly.get("pid"))
            if job is not None:
                job.setdefault("anomalies", []).append(anomaly)
        for job in group["jobs"]:
            add_oplist(job, count)
    except Exception as exc:  # noqa: BLE001 - reported to the host
        group["error"] = f"{type(exc).__name__}: {exc}"
        if tracer is not None:
            group["stderr_tail"] = tracer.stderr_tail()
    finally:
        if tracer is not None:
            tracer.kill()
    return group


def main() -> int:
    arg = sys.argv[1]
    spec = json.loads(open(arg[1:]).read() if arg.startswith("@") else arg)
    count = int(spec.get("count", 100))
    report: Dict[str, Any] = {"kernel": os.uname().release, "python": sys.version.split()[0], "groups": []}
    started = time.monotonic()
    order: List[str] = []
    by_flag: Dict[str, List[Dict[str, Any]]] = {}
    for job in spec["jobs"]:
        if job["flag"] not in by_flag:
            order.append(job["flag"])
        by_flag.setdefault(job["flag"], []).append(job)
    for flag in order:
        if spec.get("fresh_tracer"):
            for i, job in enumerate(by_flag[flag]):
                report["groups"].append(run_group(flag, [job], count, f"{flag}-{i}"))
        else:
            report["groups"].append(run_group(flag, by_flag[flag], count, flag, int(spec.get("parallel", 1))))
    report["seconds"] = round(time.monotonic() - started, 1)
    print_report(MARK, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
