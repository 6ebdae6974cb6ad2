"""The demo: the tracer beside the lifecycle workload, here or in a lab VM.

``run_here`` starts ``mpxtrace <args>``, waits until it has attached, runs the workload
(slowly, so the interval reports show each step), then ends the tracer with SIGINT so it
prints its summary.  ``run_in_lab`` does the same inside a guest booted on a real kernel, for
hosts that cannot trace themselves.  ``python -m mpxtrace.demo -- <args>`` is the guest side.
"""
from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Optional, Sequence

__all__ = ["run_here", "run_in_lab", "DEFAULT_ARGS"]

DEFAULT_ARGS = ["trace", "--flag", "VM_NORESERVE", "1"]
ATTACH_TIMEOUT = 300.0  # BCC compiles for ~3-25 s under emulation


def run_here(args: Sequence[str], workload: bool = True, delay: float = 1.0) -> int:
    mpxtrace = [sys.executable, "-m", "mpxtrace"]
    if not workload or not args or args[0] != "trace":
        return subprocess.call(mpxtrace + list(args))
    with tempfile.TemporaryDirectory(prefix="mpxtrace-demo-") as tmp:
        ready = Path(tmp) / "ready"
        tracer = subprocess.Popen(mpxtrace + list(args[:1]) + ["--ready-file", str(ready)] + list(args[1:]))
        deadline = time.monotonic() + ATTACH_TIMEOUT
        while not ready.exists():
            if tracer.poll() is not None:
                return tracer.returncode  # it explained why it could not trace
            if time.monotonic() > deadline:
                tracer.kill()
                print("mpxtrace demo: the tracer did not attach in time", file=sys.stderr)
                return 1
            time.sleep(0.1)
        create = "locked" if any(a in ("VM_LOCKED", "lo", "locked") for a in args) else "noreserve"
        print(f"mpxtrace demo: tracer attached; running the workload (mmap with MAP_{create.upper()})",
              file=sys.stderr, flush=True)
        subprocess.call([sys.executable, "-m", "mpxtrace.workload", "--flag", create, "--delay", str(delay)])
        time.sleep(delay)
        if tracer.poll() is None:
            tracer.send_signal(signal.SIGINT)
        try:
            return tracer.wait(60)
        except subprocess.TimeoutExpired:
            tracer.kill()
            return 1


def _echo(line: str) -> None:
    sys.stdout.write(line)
    sys.stdout.flush()


def run_in_lab(kernel: str, args: Sequence[str], workload: bool = True, timeout: float = 900.0) -> int:
    from .lab import LabError, run_in_guest
    project = Path(__file__).resolve().parent.parent
    command = ["python3", "-m", "mpxtrace.demo"] + ([] if workload else ["--no-workload"]) + ["--"] + list(args)
    print(f"mpxtrace lab: booting Debian's {kernel} kernel under QEMU to run: mpxtrace {' '.join(args)}",
          file=sys.stderr, flush=True)
    try:
        result = run_in_guest(kernel, command, project_dir=project, timeout=timeout, echo=_echo)
    except LabError as err:
        print(f"mpxtrace lab: {err}", file=sys.stderr)
        return 125
    if result.exit_code is None:
        print(f"mpxtrace lab: {result.error}", file=sys.stderr)
        return 125
    return result.exit_code


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpxtrace.demo")
    parser.add_argument("--no-workload", action="store_true")
    parser.add_argument("args", nargs=argparse.REMAINDER)
    opts = parser.parse_args(argv)
    args = opts.args[1:] if opts.args[:1] == ["--"] else opts.args
    # the mpxtrace command run_here starts mounts what it needs (doctor.examine_host)
    return run_here(args or DEFAULT_ARGS, workload=not opts.no_workload)


if __name__ == "__main__":
    sys.exit(main())
