"""Stand-in kernels for planner, doctor and CLI tests: KernelFeatures built from facts, no probing."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, FrozenSet, List, Optional

from mpxtrace.kernel.btf import FuncParam
from mpxtrace.kernel.features import KernelFeatures


class FakeBtf:
    def __init__(self, funcs: Dict[str, List[str]], by_value: FrozenSet[str] = frozenset(),
                 fields: Optional[Dict[str, Dict[str, int]]] = None) -> None:
        self.funcs = funcs
        self.by_value = by_value
        self.fields = fields or {}

    def func_params(self, name: str) -> Optional[List[FuncParam]]:
        if name not in self.funcs:
            return None
        return [FuncParam(p, name in self.by_value and i == 1, p in ("vmap", "need_rmap_locks"))
                for i, p in enumerate(self.funcs[name])]

    def field_offset(self, struct: str, field: str) -> Optional[int]:
        return self.fields.get(struct, {}).get(field)

    def has_struct(self, name: str) -> bool:
        return name in self.fields


KERNEL_510 = {
    "mmap_region": ["file", "addr", "len", "vm_flags", "pgoff", "uf"],
    "vma_merge": ["mm", "prev", "addr", "end", "vm_flags", "anon_vma", "file", "pgoff", "policy", "ctx"],
    "__split_vma": ["mm", "vma", "addr", "new_below"],
    "copy_vma": ["vmap", "addr", "len", "pgoff", "need_rmap_locks"],
    "vm_area_free": ["vma"], "exit_mmap": ["mm"], "anon_vma_fork": ["vma", "pvma"], "wake_up_new_task": ["p"],
    "dup_userfaultfd": ["vma", "fcs"],
    "perf_event_mmap": ["vma"],
    "munlock_vma_pages_range": ["vma", "start", "end"],
}
KERNEL_612 = dict(KERNEL_510, vma_merge_new_range=["vmg"], vma_modify=["vmg"],
                  __split_vma=["vmi", "vma", "addr", "new_below"])
del KERNEL_612["vma_merge"], KERNEL_612["munlock_vma_pages_range"]
VMG = {"vma_merge_struct": {"mm": 0, "vma": 40, "start": 48, "end": 56, "flags": 64}}
TRAMPOLINE_SYMBOL = "bpf_trampoline_link_prog"  # what BCC's support_kfunc() looks for
RINGBUF_SYMBOL = "bpf_ringbuf_reserve"


def features(funcs: Dict[str, List[str]], ftrace: bool = True, blacklist: FrozenSet[str] = frozenset(),
             btf: bool = True, by_value: FrozenSet[str] = frozenset(), fields: Optional[Dict[str, Dict[str, int]]] = None,
             trampolines: bool = True, ringbuf: bool = True, kprobe_events: bool = True,
             lockdown: str = "none", headers: Optional[Path] = None) -> KernelFeatures:
    syms = frozenset(funcs) | {"do_munmap"}
    syms |= {TRAMPOLINE_SYMBOL} if trampolines else set()
    syms |= {RINGBUF_SYMBOL} if ringbuf else set()
    return KernelFeatures(release="test", kallsyms=syms, kallsyms_readable=True,
                          ftrace_functions=syms if ftrace else None, kprobe_blacklist=blacklist,
                          kprobe_events=kprobe_events, lockdown=lockdown, headers_dir=headers,
                          btf=FakeBtf(funcs, by_value, fields) if btf else None)  # type: ignore[arg-type]
