"""Runs INSIDE a lab guest: a real trace ended by SIGINT, then by SIGTERM (issue 8 item 4).

For each signal: count mpxtrace's kprobes (tracefs kprobe_events lines naming _bcc_<pid>)
and the kernel's BPF programs (BPF_PROG_GET_NEXT_ID) before, while attached and after;
trace flagged memory a workload maps, signal the tracer, and keep its exit status, stdout
and log (copied to /mnt/out for the host to replay).  One JSON document between markers says
what happened; the host test asserts.  Plain Python 3.9, no pytest.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

from guestout import print_report  # same directory: the script's own

MARK = "=====MPXTRACE-FAULTS-JSON====="
OUT = Path("/mnt/out")
KPROBE_EVENTS = Path("/sys/kernel/tracing/kprobe_events")
WORKLOAD = """
import sys
from mpxtrace import workload as w
held = w.mmap(0, 16, w.PROT_READ | w.PROT_WRITE, w.MAP_NORESERVE)
for _ in range(50):
    w.munmap(w.mmap(0, 4, w.PROT_READ, w.MAP_NORESERVE), 4)
print("mapped", flush=True)
sys.stdin.readline()
"""

_SYS_BPF = 321  # x86_64
_BPF_PROG_GET_NEXT_ID = 11
_libc = ctypes.CDLL(None, use_errno=True)


def bpf_program_ids() -> List[int]:
    """Every BPF program loaded in the kernel (what bpftool prog list walks); bpftool is not installed."""
    ids: List[int] = []
    start = 0
    attr = ctypes.create_string_buffer(128)
    while True:
        ctypes.memset(attr, 0, 128)
        ctypes.c_uint32.from_buffer(attr, 0).value = start
        if _libc.syscall(_SYS_BPF, _BPF_PROG_GET_NEXT_ID, attr, 128) != 0:
            return ids  # ENOENT: no more
        start = ctypes.c_uint32.from_buffer(attr, 4).value
        ids.append(start)


def our_kprobes(pid: int) -> List[str]:
    return [line for line in KPROBE_EVENTS.read_text().splitlines() if f"_bcc_{pid}" in line]


def settle(check: Any, timeout: float = 10.0) -> Any:
    """Programs are freed after their last reference goes (RCU): look again for a while."""
    deadline = time.monotonic() + timeout
    value = check()
    while value and time.monotonic() < deadline:
        time.sleep(0.2)
        value = check()
    return value


def one(sig: signal.Signals, attach: str) -> Dict[str, Any]:
    name = f"{sig.name}-{attach}"
    log, ready = Path(f"/tmp/{name}.ndjson"), Path(f"/tmp/{name}.ready")
    programs_before = set(bpf_program_ids())
    tracer = subprocess.Popen([sys.executable, "-m", "mpxtrace", "trace", "--flag", "VM_NORESERVE", "--attach", attach,
                               "--log", str(log), "--ready-file", str(ready), "--no-live"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    deadline = time.monotonic() + 300
    while not ready.exists() and tracer.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    out: Dict[str, Any] = {"signal": sig.name, "attach": attach, "tracer_pid": tracer.pid}
    if not ready.exists():
        tracer.kill()
        stdout, stderr = tracer.communicate()
        return out | {"error": f"tracer never attached (exit {tracer.returncode})", "stderr": stderr[-2000:]}
    out["kprobes_attached"] = len(our_kprobes(tracer.pid))
    out["programs_attached"] = len(set(bpf_program_ids()) - programs_before)
    work = subprocess.Popen([sys.executable, "-c", WORKLOAD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            universal_newlines=True)
    assert work.stdout is not None and work.stdin is not None
    out["workload"] = work.stdout.readline().strip()
    time.sleep(1.0)  # the tracer polls; let it see the maps before the signal
    tracer.send_signal(sig)
    try:
        stdout, stderr = tracer.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        tracer.kill()
        stdout, stderr = tracer.communicate()
        out["hung"] = True
    work.stdin.write("\n")
    work.stdin.close()
    work.wait(30)
    out |= {"exit": tracer.returncode, "stdout": stdout[-3000:], "stderr": stderr[-3000:],
            "kprobes_left": settle(lambda: our_kprobes(tracer.pid)),
            "programs_left": sorted(settle(lambda: set(bpf_program_ids()) - programs_before))}
    if log.exists():
        shutil.copyfile(log, OUT / log.name)
        out["log"] = log.name
    return out


def main() -> None:
    runs = [one(signal.SIGINT, "auto"), one(signal.SIGTERM, "auto"), one(signal.SIGINT, "kprobe")]
    print_report(MARK, {"kernel": os.uname().release, "runs": runs})


if __name__ == "__main__":
    main()
