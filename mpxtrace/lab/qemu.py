"""Start QEMU for a lab run, with a hard time limit it cannot escape."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
import time
from typing import Callable, List, Optional, Sequence, Tuple

QEMU = "qemu-system-x86_64"


def kvm_usable(cpuinfo: Optional[str] = None) -> bool:
    """KVM only with real VT-x/AMD-V: the nested /dev/kvm seen on CI cannot run a stock
    kernel (MSR and emulation failures), and then QEMU pauses instead of exiting."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    return bool(flags & {"vmx", "svm"}) and os.access("/dev/kvm", os.R_OK | os.W_OK)


def accel_args() -> List[str]:
    choice = os.environ.get("MPXTRACE_LAB_ACCEL", "auto")
    if choice == "kvm" or (choice == "auto" and kvm_usable()):
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg"]


def _drive(path: Path, ident: str, *, snapshot: bool = False) -> List[str]:
    escaped = str(path).replace(",", ",,")  # QEMU option syntax
    opts = f"file={escaped},if=none,id={ident},format=raw" + (",snapshot=on" if snapshot else "")
    return ["-drive", opts, "-device", f"nvme,serial={ident},drive={ident}"]


def kernel_cmdline(root_partuuid: str, init: str) -> str:
    # panic=-1 + -no-reboot: a panic ends QEMU at once (with status 0, so the caller
    # trusts only the guest's exit marker).
    return (f"console=ttyS0 root=PARTUUID={root_partuuid} rootwait rw init={init} "
            "panic=-1")


def qemu_argv(vmlinuz: Path, rootfs: Path, root_partuuid: str, init: str,
              disks: Sequence[Tuple[str, Path]], *, memory: str = "2G", cpus: int = 2) -> List[str]:
    argv = [QEMU, "-nographic", "-no-reboot", "-nic", "none", "-m", memory, "-smp", str(cpus),
            *accel_args(), "-kernel", str(vmlinuz), "-append", kernel_cmdline(root_partuuid, init)]
    # snapshot=on: guest writes to its root fs go to a temp overlay, so the cached
    # image is never modified and several runs can share it.
    argv += _drive(rootfs, "mpxroot", snapshot=True)
    for ident, path in disks:
        argv += _drive(path, ident)
    return argv


def run_qemu(argv: Sequence[str], console_log: Path, stderr_log: Path, timeout: float,
             on_tick: Optional[Callable[[], None]] = None) -> Tuple[int, bool]:
    """Run argv under `timeout`: serial console to console_log, QEMU's own messages to
    stderr_log (kept apart so they never mix into the guest's output).
    Returns (status, timed_out)."""
    wrapped = ["timeout", "--kill-after=10", f"{max(1.0, timeout):.0f}s", *argv]
    with open(console_log, "wb") as log, open(stderr_log, "wb") as err:
        proc = subprocess.Popen(wrapped, stdin=subprocess.DEVNULL, stdout=log, stderr=err)
        deadline = time.monotonic() + timeout + 30
        try:
            while True:  # on_tick lets the caller follow the console live
                try:
                    status = proc.wait(timeout=0.2)
                    break
                except subprocess.TimeoutExpired:
                    if on_tick is not None:
                        on_tick()
                    if time.monotonic() > deadline:
                        status = 124
                        break
            if on_tick is not None:
                on_tick()
        finally:
            if proc.poll() is None:
                # `timeout` made itself a process-group leader with QEMU inside: kill the group.
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.kill()
                proc.wait()
    return status, status in (124, 137)
