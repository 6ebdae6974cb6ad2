"""Kernel lab: boot real Debian kernels under QEMU with BCC inside and run a command there.

The host kernel cannot be traced (no kprobes, lockdown), so live tests run in a
guest: ``run_in_guest("6.1", ["python3", "-m", "pytest", ...], project_dir=...)``.
"""
from __future__ import annotations

from .errors import LabError
from .kernels import DEFAULT_KERNEL, KERNELS, KernelSpec, get_kernel
from .vm import GuestResult, run_in_guest

__all__ = ["DEFAULT_KERNEL", "GuestResult", "KERNELS", "KernelSpec", "LabError", "get_kernel",
           "run_in_guest"]
