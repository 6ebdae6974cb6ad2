"""``mpxtrace doctor``: what this machine allows, and the fix for each thing that is missing.

The same checks decide, before the slow BCC compile, whether ``trace`` can run at all, so a
host that cannot trace gets one precise explanation instead of a BCC traceback.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from typing import Dict, List, Optional

from .flags import resolve_mpx
from .kernel import features as kernel_probe
from .kernel.features import KernelFeatures
from .kernel.hooks import HOOKS, PlanError, plan_hooks

__all__ = ["Check", "Host", "examine_host", "run_checks", "blocking_problems"]


@dataclass
class Check:
    name: str
    ok: Optional[bool]  # None: informational
    detail: str
    fix: str = ""

    def to_json(self) -> Dict[str, object]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix}


def _bcc_check() -> Check:
    try:
        from .program import import_bcc
        bcc = import_bcc()
        version = getattr(bcc, "__version__", "?")
        return Check("bcc", True, f"BCC {version} from {os.path.dirname(bcc.__file__)}")
    except Exception as err:  # noqa: BLE001 - any import failure is the user's problem to fix
        return Check("bcc", False, str(err), "apt-get install python3-bpfcc; run from scripts/setup's venv")


def run_checks(features: KernelFeatures) -> List[Check]:
    checks: List[Check] = []
    checks.append(Check("kernel", None, f"{platform.system()} {features.release} {platform.machine()}"))
    checks.append(Check("root", os.geteuid() == 0, "running as root" if os.geteuid() == 0 else "not root",
                        "run mpxtrace as root (sudo)"))
    lockdown = features.lockdown
    checks.append(Check(
        # kprobes and BPF reads of kernel memory are "confidentiality" reasons; "integrity" allows them
        "lockdown", lockdown != "confidentiality", f"lockdown={lockdown or 'unknown (securityfs not mounted)'}",
        "kernel lockdown=confidentiality forbids kprobes, fentry and reading kernel memory from BPF: boot without "
        "lockdown (or with lockdown=integrity and Secure Boot off), or use `mpxtrace lab` to trace in a VM"
        if lockdown == "confidentiality" else ""))
    checks.append(Check("kprobes", features.kprobe_events and lockdown != "confidentiality",
                        "kprobe_events present" if features.kprobe_events else "no kprobe_events in tracefs (CONFIG_KPROBE_EVENTS unset, or tracefs not mounted)",
                        "" if features.kprobe_events else "use a kernel built with CONFIG_KPROBES and CONFIG_KPROBE_EVENTS, "
                        "or `mpxtrace lab` to run in a VM"))
    checks.append(Check("btf", features.btf is not None,
                        "/sys/kernel/btf/vmlinux readable" if features.btf else "no /sys/kernel/btf/vmlinux",
                        "" if features.btf else "a kernel with CONFIG_DEBUG_INFO_BTF enables fentry and header-free offsets"))
    fentry, ring = features.kfunc_supported, features.ringbuf_supported
    checks.append(Check("fentry", fentry, "BPF trampolines available" if fentry else "no BPF trampolines",
                        "" if fentry else "kprobes will be used (needs 5.5+ with BTF for fentry)"))
    checks.append(Check("ring_buffer", ring, "BPF ring buffer available" if ring else "perf buffer only",
                        "" if ring else "fine: the perf buffer is used (ring buffer needs 5.8+)"))
    checks.append(Check("ftrace", features.ftrace_functions is not None,
                        f"{len(features.ftrace_functions)} traceable functions" if features.ftrace_functions is not None
                        else "available_filter_functions unreadable",
                        "" if features.ftrace_functions is not None else "mount tracefs on /sys/kernel/tracing (mpxtrace tries)"))
    checks.append(Check("kallsyms", features.kallsyms_readable and bool(features.kallsyms),
                        f"{len(features.kallsyms)} text symbols" + ("" if features.kallsyms_readable else " (addresses hidden)"),
                        "" if features.kallsyms_readable else "run as root; kptr_restrict hides addresses otherwise"))
    headers = features.headers_dir
    checks.append(Check("kernel_headers", headers is not None,
                        str(headers) if headers else f"/lib/modules/{features.release}/build missing",
                        "" if headers else f"apt-get install linux-headers-{features.release} (BCC compiles against them; "
                        "this is BCC's 'Unable to find kernel headers')"))
    mpx = resolve_mpx(headers or None)
    checks.append(Check("mpx", mpx.available, f"VM_MPX={mpx.value:#x}: {mpx.evidence}; CPU MPX: {'yes' if mpx.hardware else 'no'}",
                        "" if mpx.available else "no MPX here: trace a stand-in flag, e.g. --flag VM_LOCKED or --flag VM_NORESERVE"))
    checks.append(_bcc_check())
    for spec in HOOKS:
        present = [s for s in spec.symbols if features.has_symbol(s)]
        detail = ", ".join(
            f"{s} ({'fentry' if features.can_fentry(s) and spec.fentry_ok else 'kprobe' if features.can_kprobe(s) else 'not probeable'})"
            for s in present) or "absent"
        checks.append(Check(f"hook:{spec.key}", bool(present) if spec.required else None, f"{detail} — {spec.role}",
                            "" if present or not spec.required else "this kernel lacks a required hook point"))
    try:
        plan = plan_hooks(features, "auto")
        checks.append(Check("plan", True, "will attach: " + ", ".join(f"{a.symbol}={a.mode}" for a in plan.attaches)
                            + ("; missing: " + ", ".join(h for h, _ in plan.missing) if plan.missing else "")))
    except PlanError as err:
        checks.append(Check("plan", False, str(err), "see the failed checks above"))
    return checks


def blocking_problems(checks: List[Check]) -> List[Check]:
    """Checks that stop `trace` from running here."""
    blocking = {"root", "lockdown", "kprobes", "kernel_headers", "bcc", "plan"}
    return [c for c in checks if c.name in blocking and c.ok is False]


@dataclass
class Host:
    """This machine as the kernel-facing commands see it at start-up."""

    features: KernelFeatures
    checks: List[Check]
    probe_seconds: float

    @property
    def problems(self) -> List[Check]:
        return blocking_problems(self.checks)


def examine_host() -> Host:
    """The start-up every kernel-facing command shares: as root, mount the pseudo filesystems
    BCC expects (the one place mpxtrace changes the host), then probe the kernel and check it."""
    if os.geteuid() == 0:
        kernel_probe.mount_pseudo_filesystems()
    started = time.monotonic()
    features = kernel_probe.probe_kernel()
    probe_seconds = time.monotonic() - started
    return Host(features, run_checks(features), probe_seconds)
