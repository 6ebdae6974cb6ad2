"""What the running kernel offers a tracer: symbols, ftrace, kprobes, BTF, buffers, lockdown.

Each probe reads the kernel's own interfaces (kallsyms, tracefs, securityfs, sysfs, the
build config) and reports what it saw; the capabilities the tracer plans with (fentry, the
ring buffer) are derived from those facts here.  Nothing compares version numbers.
"""
from __future__ import annotations

import gzip
import os
import platform
import re
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import AbstractSet, Dict, FrozenSet, Optional, Tuple

from .btf import BtfView, load_vmlinux_btf
from .mappedarray import mmapable_arrays_supported

__all__ = ["KernelFeatures", "probe_kernel", "mount_pseudo_filesystems", "kernel_config"]

TRACEFS_DIRS = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))


def mount_pseudo_filesystems() -> None:
    """Mount tracefs/debugfs/securityfs where they are missing, as bcc tools expect (root only).

    This changes the host: only commands run for real call it (never a probe, never a test).
    """
    for fstype, target in (("securityfs", "/sys/kernel/security"), ("debugfs", "/sys/kernel/debug"),
                           ("tracefs", "/sys/kernel/tracing")):
        if os.path.isdir(target) and not os.listdir(target):
            try:
                subprocess.run(["mount", "-t", fstype, fstype, target], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, check=False)
            except OSError:  # no mount(8): the probes report what is missing
                pass


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


@dataclass
class KernelFeatures:
    release: str
    kallsyms: AbstractSet[str]  # a frozenset, or the per-boot cache's answers (kernel/factcache.py)
    kallsyms_readable: bool
    ftrace_functions: Optional[AbstractSet[str]]  # None when available_filter_functions is unreadable
    kprobe_blacklist: FrozenSet[str]
    kprobe_events: bool  # tracefs kprobe_events exists (CONFIG_KPROBE_EVENTS)
    lockdown: Optional[str]
    btf: Optional[BtfView] = field(repr=False, default=None)  # a parsed Btf, or factcache.KnownBtf's answers
    headers_dir: Optional[Path] = None
    # CONFIG_KPROBE_EVENTS_ON_NOTRACE: without it a kprobe on a function ftrace cannot trace
    # is refused with EINVAL (perf_event_mmap on Debian 5.10, seen in the lab); the check came
    # with 45408c4f9250 ("tracing: kprobes: Prohibit probing on notrace function")
    kprobe_on_notrace: bool = False
    # "category:name" of the tracepoints in the categories the tracer uses (tracefs events/)
    tracepoints: FrozenSet[str] = frozenset()
    # The kernel preempts tasks in kernel mode (preemption "full" or "lazy"; None: unknown).
    # fentry/fexit programs run preemptible (migrate_disable only), and the kernel skips a run of
    # one on a CPU where a preempted task is still inside it: measured on 7.2 (lazy) in the lab.
    preempts_in_kernel: Optional[bool] = None
    # BPF arrays can be mmap()ed (5.5+): the tracer reads its counters without map syscalls
    mmapable_arrays: bool = False

    def has_symbol(self, name: str) -> bool:
        return name in self.kallsyms

    @property
    def kfunc_supported(self) -> bool:
        """fentry/fexit can attach: BPF trampolines and BTF, as BCC's BPF.support_kfunc() checks."""
        return self.btf is not None and self.has_symbol("bpf_trampoline_link_prog")

    @property
    def ringbuf_supported(self) -> bool:
        """The BPF ring buffer exists (5.8+: 457f44363a88 "bpf: Implement BPF ring buffer and
        verifier support for it"); otherwise events go through per-CPU perf buffers."""
        return self.has_symbol("bpf_ringbuf_reserve") or bool(self.btf and self.btf.has_struct("bpf_ringbuf"))

    def has_tracepoint(self, category: str, name: str) -> bool:
        """A tracepoint exists (syscall ones need CONFIG_FTRACE_SYSCALLS)."""
        return f"{category}:{name}" in self.tracepoints

    def can_kprobe(self, name: str) -> bool:
        if not self.kprobe_events or name not in self.kallsyms or name in self.kprobe_blacklist:
            return False
        if self.ftrace_functions is not None and name not in self.ftrace_functions and not self.kprobe_on_notrace:
            return False
        return self.lockdown != "confidentiality"

    def can_fentry(self, name: str) -> bool:
        """Traceable by ftrace and its BTF signature fits a trampoline (<= 6 args, none by value)."""
        if self.btf is None or self.ftrace_functions is None or name not in self.ftrace_functions:
            return False
        if self.lockdown == "confidentiality":  # BPF may not read kernel memory: no tracing program loads
            return False
        params = self.btf.func_params(name)
        return params is not None and len(params) <= 6 and not any(
            p.by_value_aggregate or p.non_struct_pointer for p in params)


def _kallsyms() -> Tuple[FrozenSet[str], bool]:
    names = set()
    readable = False
    try:
        with open("/proc/kallsyms") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) >= 3 and parts[1] in "tTwW":
                    if parts[0].strip("0"):
                        readable = True
                    names.add(parts[2])
    except OSError:
        pass
    return frozenset(names), readable


def _ftrace_functions() -> Optional[FrozenSet[str]]:
    for base in TRACEFS_DIRS:
        text = _read(base / "available_filter_functions")
        if text is not None:
            return frozenset(line.split()[0] for line in text.splitlines() if line.strip())
    return None


def _blacklist() -> FrozenSet[str]:
    text = _read(Path("/sys/kernel/debug/kprobes/blacklist")) or ""
    return frozenset(line.split()[-1] for line in text.splitlines() if line.strip())


def _lockdown() -> Optional[str]:
    text = _read(Path("/sys/kernel/security/lockdown"))
    if not text:
        return None
    for word in text.split():
        if word.startswith("["):
            return word.strip("[]")
    return None


def kernel_config(release: str) -> Dict[str, str]:
    """The running kernel's build config (CONFIG_x -> value), from /boot or /proc/config.gz."""
    for path in (Path(f"/boot/config-{release}"), Path("/proc/config.gz")):
        try:
            raw = gzip.open(path, "rt").read() if path.suffix == ".gz" else path.read_text()
        except OSError:
            continue
        return dict(re.findall(r"^(CONFIG_\w+)=(.*)$", raw, re.M))
    return {}


@lru_cache(maxsize=1)
def probe_kernel() -> KernelFeatures:
    from .factcache import Sources, heavy_facts  # lazy: factcache reads hooks, which imports this module
    release = platform.release()
    # kallsyms, ftrace's functions and BTF are slow to read and fixed for a boot: cached per boot
    heavy = heavy_facts(release, Sources(_kallsyms, _ftrace_functions, load_vmlinux_btf))
    kprobe_events = any((base / "kprobe_events").exists() for base in TRACEFS_DIRS)
    headers = Path(f"/lib/modules/{release}/build")
    config = kernel_config(release)
    return KernelFeatures(
        release=release,
        kallsyms=heavy.kallsyms,
        kallsyms_readable=heavy.kallsyms_readable,
        ftrace_functions=heavy.ftrace_functions,
        kprobe_blacklist=_blacklist(),
        kprobe_events=kprobe_events,
        lockdown=_lockdown(),
        btf=heavy.btf,
        headers_dir=headers if (headers / "include").is_dir() else None,
        kprobe_on_notrace=config.get("CONFIG_KPROBE_EVENTS_ON_NOTRACE") == "y",
        tracepoints=_tracepoints(("syscalls",)),
        preempts_in_kernel=_preempts_in_kernel(config),
        mmapable_arrays=mmapable_arrays_supported(),
    )


def _preempts_in_kernel(config: Dict[str, str]) -> Optional[bool]:
    """From the scheduler's current preemption mode (debugfs sched/preempt, PREEMPT_DYNAMIC:
    "none voluntary full (lazy)", the current one in parentheses), else the build config."""
    text = _read(Path("/sys/kernel/debug/sched/preempt"))
    current = re.search(r"\((\w+)\)", text or "")
    if current:
        return current.group(1) in ("full", "lazy", "rt")
    if not config:
        return None
    if config.get("CONFIG_PREEMPT_DYNAMIC") == "y":
        return None  # the mode is chosen at boot (preempt=): unknown without debugfs
    return any(config.get(k) == "y" for k in ("CONFIG_PREEMPT", "CONFIG_PREEMPT_LAZY", "CONFIG_PREEMPT_RT"))


def _tracepoints(categories: Tuple[str, ...]) -> FrozenSet[str]:
    for base in TRACEFS_DIRS:
        try:
            return frozenset(f"{cat}:{entry.name}" for cat in categories
                             for entry in (base / "events" / cat).iterdir() if entry.is_dir())
        except OSError:
            continue
    return frozenset()
