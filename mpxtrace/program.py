"""Compile the kernel program for this kernel and attach it (BCC).

The C source lives in ``bpf/`` and is never edited by string replacement: everything that
varies between kernels arrives as ``-D`` definitions computed by ``kernel.hooks``.
"""
from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .events import RawEvent
from .flags import PAGE_SHIFT, VM_ACCOUNT, VM_LOCKED_MASK, TrackedFlags
from .kernel.features import TRACEFS_DIRS, KernelFeatures
from .kernel.hooks import HookPlan, plan_hooks, struct_offsets
from .kernel.mappedarray import BPF_F_MMAPABLE, MappedArray
from .kernel.proginfo import recursion_misses

__all__ = ["bpf_dir", "ProgramConfig", "LoadedProgram", "build_config", "load_program", "import_bcc", "BccMissing"]

# Bursts come from malloc arenas (MAP_NORESERVE heaps grown by mprotect) and compilers; the
# 6.12 lab lost 15 events with 256 KiB per CPU while another tracer's BCC compile ran beside it.
RINGBUF_PAGES = 1024  # 4 MiB: ~37000 events (104 bytes + an 8-byte header)
RINGBUF_RECORD = ctypes.sizeof(RawEvent) + 8  # bytes a record takes in the ring: the event and its header
# The program wakes the reader once per this many events per CPU, or per eighth of a small ring:
# a wakeup per event (an irq_work, and the tracer woken for one record) cost more than the event.
RINGBUF_WAKE_EVERY = 64
PERF_PAGES = 256  # per CPU: 1 MiB


class BccMissing(Exception):
    pass


def import_bcc() -> Any:
    """Debian's BCC bindings (package python3-bpfcc), never PyPI's unrelated `bcc`."""
    try:
        import bcc
    except ImportError:
        raise BccMissing(
            "the BCC Python bindings are not importable. Install Debian's python3-bpfcc "
            "(`apt-get install python3-bpfcc`) and run mpxtrace from a Python that sees "
            "/usr/lib/python3/dist-packages (scripts/setup makes such a venv). The PyPI package named "
            "`bcc` is unrelated: uninstall it if present.") from None
    if not hasattr(bcc, "BPF"):
        raise BccMissing(f"`import bcc` found {getattr(bcc, '__file__', '?')}, which is not BCC "
                         "(the PyPI package named `bcc` is unrelated): `pip uninstall bcc`, then install python3-bpfcc")
    return bcc


def bpf_dir() -> Path:
    """bpf/ beside the package in a checkout, or mpxtrace/_bpf inside an installed wheel."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "bpf", here / "_bpf"):
        if (candidate / "mpxtrace.bpf.c").is_file():
            return candidate
    raise FileNotFoundError("mpxtrace.bpf.c not found beside the package: reinstall mpxtrace")


@dataclass
class ProgramConfig:
    tracked: TrackedFlags
    plan: HookPlan
    buffer: str  # "ring" | "perf"
    pids: Sequence[int]
    defines: Dict[str, str] = field(default_factory=dict)
    buffer_pages: Optional[int] = None  # None: RINGBUF_PAGES / PERF_PAGES

    @property
    def arrays_mapped(self) -> bool:
        """The counters and seed_mm arrays are BPF_F_MMAPABLE: read and written as memory."""
        return self.defines.get("MAPPED_ARRAY_FLAGS", "0") != "0"

    def cflags(self) -> List[str]:
        flags = [f"-I{bpf_dir()}", "-Wno-macro-redefined"]
        for key, value in sorted(self.defines.items()):
            flags.append(f"-D{key}={value}")
        return flags


def build_config(tracked: TrackedFlags, features: KernelFeatures, attach: str, buffer: str,
                 pids: Sequence[int], offsets: str = "auto", buffer_pages: Optional[int] = None) -> ProgramConfig:
    """The -D definitions for this kernel; capabilities (fentry, ring buffer) come from `features`."""
    plan = plan_hooks(features, attach)
    if buffer == "auto":
        buffer = "ring" if features.ringbuf_supported else "perf"
    elif buffer == "ring" and not features.ringbuf_supported:
        from .kernel.hooks import PlanError
        raise PlanError("--buffer ring: this kernel has no BPF ring buffer (5.8+); use --buffer perf or auto")
    btf_offsets = struct_offsets(features) if offsets in ("auto", "btf") else None
    if offsets == "btf" and btf_offsets is None:
        from .kernel.hooks import PlanError
        raise PlanError("--offsets btf: this kernel has no usable BTF; use --offsets headers")
    defines = dict(plan.defines)
    defines["TRACK_MASK"] = f"{tracked.mask:#x}ULL"
    defines["TRACER_TGID"] = str(os.getpid())
    # flag values the kernel program needs besides the tracked ones: Python owns them
    defines["PAGE_SHIFT_"] = str(PAGE_SHIFT)
    defines["VM_LOCKED_MASK_"] = f"{VM_LOCKED_MASK:#x}ULL"
    defines["VM_ACCOUNT_"] = f"{VM_ACCOUNT:#x}ULL"
    # arrays the front end reads or writes, mmap-able: no map syscalls (kernel/mappedarray.py)
    defines["MAPPED_ARRAY_FLAGS"] = str(BPF_F_MMAPABLE if features.mmapable_arrays else 0)
    if features.mmapable_arrays:
        # losses counted by address space (lostspaces.py): 4096 values, read only as memory
        defines["LOSS_BY_SPACE"] = "1"
    if buffer == "ring":
        defines["USE_RINGBUF"] = "1"
        defines["RINGBUF_PAGES"] = str(buffer_pages or RINGBUF_PAGES)
        ring_records = (buffer_pages or RINGBUF_PAGES) * (1 << PAGE_SHIFT) // RINGBUF_RECORD
        defines["RINGBUF_WAKE_EVERY"] = str(max(1, min(RINGBUF_WAKE_EVERY, ring_records // 8)))
    if pids:
        defines["PID_FILTER"] = "1"
    if btf_offsets:
        defines["USE_BTF_OFFSETS"] = "1"
        defines.update(btf_offsets)
    return ProgramConfig(tracked, plan, buffer, list(pids), defines, buffer_pages)


@dataclass
class LoadedProgram:
    bpf: Any
    config: ProgramConfig
    _mapped_arrays: Dict[str, MappedArray] = field(default_factory=dict, repr=False)  # read-only: counters, tallies
    _mapped_seed_mm: Optional[MappedArray] = field(default=None, repr=False)

    def mm_of(self, pid: int) -> Optional[int]:
        """The mm_struct of `pid`, learnt by reading its /proc/PID/statm under the seed hook."""
        if not self.config.plan.uses("seed"):
            return None
        if self._mapped_seed_mm is None and self.config.arrays_mapped:
            self._mapped_seed_mm = MappedArray(int(self.bpf["seed_mm"].map_fd), 1, writable=True)
        mapped = self._mapped_seed_mm
        table = self.bpf["seed_mm"]
        if mapped is not None:
            mapped.store(0, 0)  # no map syscall: resync runs after losses, under load (mappedarray.py)
        else:
            table[table.Key(0)] = table.Leaf(0)
        try:
            with open(f"/proc/{pid}/statm") as fh:
                fh.read()
        except OSError:
            return None
        mm = mapped.values()[0] if mapped is not None else int(table[table.Key(0)].value)
        return mm or None

    def probe_misses(self) -> int:
        """Hits our kprobes and kretprobes missed (tracefs kprobe_profile: name, hits, misses):
        a kretprobe out of instances (maxactive) or a probe hit while one already runs."""
        tag = f"_bcc_{os.getpid()}"
        for base in TRACEFS_DIRS:
            try:
                text = (base / "kprobe_profile").read_text()
            except OSError:
                continue
            return sum(int(parts[2]) for parts in (line.split() for line in text.splitlines())
                       if len(parts) == 3 and parts[0].endswith(tag) and parts[2].isdigit())
        return 0

    def programs_skipped(self) -> int:
        """Runs of our programs the kernel skipped because the same program was already running on
        that CPU (bpf_prog_info.recursion_misses, 5.12+): on kernels that preempt in kernel mode, a
        task preempted inside an fentry/fexit program makes the others on its CPU skip it."""
        total = 0
        for func in list(getattr(self.bpf, "funcs", {}).values()):
            fd = getattr(func, "fd", None)
            if isinstance(fd, int) and fd >= 0:
                total += recursion_misses(fd) or 0
        return total

    def counters(self) -> List[int]:
        """enum mpxtrace_counter: events lost in the kernel, by cause."""
        return self._array_values("counters")

    def tallies(self) -> List[int]:
        """enum mpxtrace_tally: what the program emitted, aggregated in the kernel (tallies.py).
        Read from the last index to the first: the program adds to an unmap's size bucket before
        its lifetime (a higher index), so a lifetime read is never one whose unmap was not."""
        return self._array_values("tallies", descending=True)

    def lost_slots(self) -> Tuple[int, ...]:
        """Events the stream refused, by address-space slot (lostspaces.py); () where not kept."""
        if "LOSS_BY_SPACE" not in self.config.defines:
            return ()
        return tuple(self._array_values("lost_spaces"))

    def _array_values(self, name: str, descending: bool = False) -> List[int]:
        mapped = self._mapped_arrays.get(name)
        if mapped is None and self.config.arrays_mapped:
            table = self.bpf[name]
            mapped = self._mapped_arrays[name] = MappedArray(int(table.map_fd), len(table))
        if mapped is not None:
            return mapped.values(descending)
        table = self.bpf[name]  # each lookup holds the CPU's bpf_prog_active (mappedarray.py)
        order = range(len(table) - 1, -1, -1) if descending else range(len(table))
        values = dict((i, int(table[table.Key(i)].value)) for i in order)
        return [values[i] for i in range(len(table))]

    def open_buffer(self, on_event: Callable[[Any], int], on_lost: Callable[[int], None]) -> None:
        """`on_event` returns 0, or a negative number to end the current ring-buffer poll early."""
        table = self.bpf["events"]
        if self.config.buffer == "ring":
            table.open_ring_buffer(lambda _ctx, data, _size: on_event(data))
        else:
            table.open_perf_buffer(lambda _cpu, data, _size: on_event(data), page_cnt=self.config.buffer_pages or PERF_PAGES,
                                  lost_cb=on_lost)

    def poll(self, timeout_ms: int) -> None:
        if self.config.buffer == "ring":
            # woken once per RINGBUF_WAKE_EVERY events: after the wait, read what came without a wakeup
            self.bpf.ring_buffer_poll(timeout_ms)
            self.bpf.ring_buffer_consume()
        else:
            self.bpf.perf_buffer_poll(timeout=timeout_ms)

    def close(self) -> None:
        for mapped in [*self._mapped_arrays.values(), self._mapped_seed_mm]:
            if mapped is not None:
                mapped.close()
        self._mapped_arrays.clear()
        self._mapped_seed_mm = None
        try:
            self.bpf.cleanup()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


def source_text() -> str:
    return (bpf_dir() / "mpxtrace.bpf.c").read_text()


def load_program(config: ProgramConfig) -> LoadedProgram:
    """Compile, load and attach.  fentry programs attach themselves when BCC loads them."""
    bcc = import_bcc()
    bpf = bcc.BPF(text=source_text(), cflags=config.cflags())
    from .kernel.hooks import HOOKS
    specs = {s.key: s for s in HOOKS}
    try:
        for planned in config.plan.attaches:
            if planned.mode != "kprobe":
                continue
            spec = specs[planned.hook]
            if spec.entry:
                bpf.attach_kprobe(event=planned.symbol, fn_name=spec.entry)
            if spec.exit:
                bpf.attach_kretprobe(event=planned.symbol, fn_name=spec.exit, maxactive=64)
        if config.pids:
            table = bpf["pids"]
            for pid in config.pids:
                table[table.Key(pid)] = table.Leaf(1)
    except Exception:
        bpf.cleanup()
        raise
    return LoadedProgram(bpf, config)
