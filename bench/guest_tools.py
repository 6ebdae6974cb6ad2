"""Runs INSIDE a lab guest: start and stop the tracers the lab benchmarks compare.

`Mpxtrace` is `python3 -m mpxtrace trace --json` as a child; `Bpftrace` is bpftrace with the
two probes issue 9 compares against (mmap_region and vm_area_free, filtered on the same
vm_flags mask).  Both time "from command to attached" the same way: from fork to the first
line saying the probes are live (mpxtrace's `attached` record, bpftrace's BEGIN, which runs
after every probe is attached).  Plain Python 3.9, no pytest.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parents[1]
VM_LOCKED, VM_NORESERVE = 0x00002000, 0x00200000
ATTACH_TIMEOUT = 240.0  # BCC compiles for 20 s and more under TCG on a loaded host


class StartFailed(RuntimeError):
    pass


def _pump(stream: Any, lines: List[str], ready: threading.Event, is_ready: Any) -> None:
    for line in stream:
        lines.append(line)
        if not ready.is_set() and is_ready(line):
            ready.set()
    ready.set()  # EOF: the waiter looks at poll() to tell a failure


class _Child:
    """A tracer child whose stdout is read by a thread; stop() returns its peak RSS."""

    def __init__(self, argv: List[str], is_ready: Any, cwd: Path = ROOT) -> None:
        self.argv = argv
        self.lines: List[str] = []
        self._ready = threading.Event()
        self._err_path = Path(f"/tmp/bench-child-{os.getpid()}-{time.monotonic_ns()}.err")
        self._err = open(self._err_path, "w")
        started = time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self._err, cwd=str(cwd),
                                     universal_newlines=True, bufsize=1)
        self._thread = threading.Thread(target=_pump, args=(self.proc.stdout, self.lines, self._ready, is_ready),
                                        daemon=True)
        self._thread.start()
        if not self._ready.wait(ATTACH_TIMEOUT) or self.proc.poll() is not None:
            self.proc.kill()
            self.proc.wait()
            raise StartFailed(f"{argv[:6]}... did not attach: {self.stderr()[-1500:]}")
        self.start_seconds = time.monotonic() - started
        self.exit_code: Optional[int] = None
        self.peak_rss_kib: Optional[int] = None

    def stderr(self) -> str:
        if not self._err.closed:
            self._err.flush()
        return self._err_path.read_text(errors="replace")

    def rss_kib(self) -> Optional[int]:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 300) -> int:
        self.proc.send_signal(sig)
        deadline = time.monotonic() + timeout
        while True:  # wait4 gives this child's own peak RSS (ru_maxrss, KiB)
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                self.proc.kill()
                pid, status, usage = os.wait4(self.proc.pid, 0)
                break
            time.sleep(0.05)
        self.proc.returncode = os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode") \
            else (os.WEXITSTATUS(status) if os.WIFEXITED(status) else -os.WTERMSIG(status))
        self._thread.join(10)
        self._err.close()
        self.exit_code = self.proc.returncode
        self.peak_rss_kib = usage.ru_maxrss
        return self.exit_code


class Mpxtrace(_Child):
    def __init__(self, flags: Tuple[str, ...], attach: str = "auto", extra: Tuple[str, ...] = (),
                 cwd: Path = ROOT) -> None:
        """`cwd`: the source tree whose mpxtrace runs (python -m imports from there first)."""
        argv = [sys.executable, "-m", "mpxtrace", "trace", "--json", "--attach", attach, *extra]
        for flag in flags:
            argv += ["--flag", flag]
        super().__init__(argv, lambda line: '"type": "attached"' in line or '"type":"attached"' in line, cwd)
        self.attached = self.record("attached") or {}

    def records(self) -> List[Dict[str, Any]]:
        out = []
        for line in list(self.lines):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def record(self, rtype: str) -> Optional[Dict[str, Any]]:
        found = [r for r in self.records() if r.get("type") == rtype]
        return found[-1] if found else None

    def hooks(self) -> List[str]:
        return [f"{a.get('symbol')}({a.get('mode')})" for a in self.attached.get("attach", [])]


# bpftrace's syntax moved between the suites' versions (0.11 .. 0.27): kfunc became fentry,
# args->x became args.x.  Each form is tried in order; the first that attaches is used.
_FENTRY_FORMS = (("fentry", "args."), ("kfunc", "args->"), ("kfunc", "args."))
_BEGIN = 'BEGIN { printf("ready\\n"); }\n'


def bpftrace_scripts(mode: str, mask: int) -> List[str]:
    """Candidate scripts: count and sum flagged maps, count flagged frees (aggregated in kernel maps)."""
    if mode == "fentry":
        return [_BEGIN +
                f"{kind}:mmap_region /({a}vm_flags & {mask:#x}) != 0/ {{ @maps = count(); @bytes = sum({a}len); }}\n"
                f"{kind}:vm_area_free /({a}vma->vm_flags & {mask:#x}) != 0/ {{ @frees = count(); }}\n"
                for kind, a in _FENTRY_FORMS]
    body = (f"kprobe:mmap_region /(arg3 & {mask:#x}) != 0/ {{ @maps = count(); @bytes = sum(arg2); }}\n"
            f"kprobe:vm_area_free /(((struct vm_area_struct *)arg0)->vm_flags & {mask:#x}) != 0/ "
            f"{{ @frees = count(); }}\n")
    # With BTF the cast resolves by itself; older bpftrace needs the kernel header.
    return [_BEGIN + body, "#include <linux/mm_types.h>\n" + _BEGIN + body]


class Bpftrace(_Child):
    def __init__(self, script: str) -> None:
        self.script = script
        super().__init__(["bpftrace", "-e", script], lambda line: line.strip() == "ready")


def start_bpftrace(mode: str, mask: int) -> Bpftrace:
    """The first script form this bpftrace accepts for `mode` (fentry or kprobe)."""
    errors = []
    for script in bpftrace_scripts(mode, mask):
        try:
            return Bpftrace(script)
        except StartFailed as err:
            errors.append(str(err)[-400:])
    raise StartFailed(f"bpftrace {mode}: no script form attached:\n" + "\n".join(errors))


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


def tool_version(argv: List[str]) -> Optional[str]:
    try:
        out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                             timeout=30, cwd="/tmp").stdout  # stress-ng 0.12 wants a writable cwd
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.strip().splitlines()[0] if out.strip() else None
