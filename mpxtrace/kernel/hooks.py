"""Which kernel functions the tracer hooks on this kernel, how, and with which arguments.

Every hook lists the functions that have played its role across kernel generations, newest
first where they coexist.  The plan takes those present in kallsyms, reads argument
positions by name from BTF (falling back to the positions documented for the symbol), and
chooses fentry or kprobe per function: fentry needs ftrace, BTF, <= 6 arguments and no
struct passed by value (the lab measured vma_merge failing both ways on 5.10 and 6.1).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from .features import KernelFeatures

__all__ = ["HookSpec", "PlannedAttach", "HookPlan", "HOOKS", "plan_hooks", "PlanError", "struct_offsets",
           "OPTIONAL_FIELDS"]


class PlanError(Exception):
    """The tracer cannot run on this kernel; the message says why and what to do."""


@dataclass(frozen=True)
class HookSpec:
    key: str
    symbols: Tuple[str, ...]
    args: Dict[str, Tuple[str, int]]  # C define -> (BTF parameter name, documented position)
    entry: Optional[str]  # kprobe program
    exit: Optional[str]  # kretprobe program
    role: str
    required: bool = False
    every_symbol: bool = False  # attach to all present symbols, not only the first
    fentry_ok: bool = True
    define: Optional[str] = None  # -D set when the hook is in use


HOOKS: Tuple[HookSpec, ...] = (
    HookSpec("mmap", ("mmap_region",),
             {"ARG_MMAP_ADDR": ("addr", 2), "ARG_MMAP_LEN": ("len", 3), "ARG_MMAP_FLAGS": ("vm_flags", 4)},
             "kp_mmap_region", "kr_mmap_region",
             "new mappings: vm_flags is argument 4 on every kernel since 3.19", required=True),
    # vma_expand(), which merges new mappings on 6.1, came with 4dd1b84140c1 ("mm/mmap: use advanced
    # maple tree API for mmap_region()").
    HookSpec("final_vma", ("perf_event_mmap",), {"ARG_FINAL_VMA": ("vma", 1)}, "kp_final_vma", None,
             "the VMA a new mapping ended up in after merging, even when notrace code merged it "
             "(vma_expand on 6.1)"),
    # vma_merge has 10-11 arguments: never fentry.  Argument positions: (mm, prev, addr, end,
    # vm_flags, ...) up to 6.2; the vma-iterator conversion in 6.3 prepended vmi (9760ebffbf55
    # "mm: switch vma_merge(), split_vma(), and __split_vma to vma iterator").
    HookSpec("merge", ("vma_merge",),
             {"ARG_MERGE_MM": ("mm", 1), "ARG_MERGE_PREV": ("prev", 2), "ARG_MERGE_START": ("addr", 3),
              "ARG_MERGE_END": ("end", 4), "ARG_MERGE_FLAGS": ("vm_flags", 5)},
             "kp_vma_merge", "kr_merge",
             "merges and flag changes (mprotect, mlock, madvise, mremap) up to 6.11", fentry_ok=False),
    # 6.12 split vma_merge into vma_merge_new_range / vma_merge_existing_range (static) behind
    # vma_modify(), both taking a struct vma_merge_struct (2f1c6611b0a8 "mm: introduce
    # vma_merge_struct and abstract vma_merge(),vma_modify()"; cacded5e42b9 "mm: avoid using
    # vma_merge() for new VMAs").
    HookSpec("vmg", ("vma_merge_new_range", "vma_modify"), {}, "kp_vmg", "kr_merge",
             "merges and flag changes from 6.12 (struct vma_merge_struct)", every_symbol=True, define="HOOK_VMG"),
    HookSpec("split", ("__split_vma", "split_vma"), {"ARG_SPLIT_VMA": ("vma", 2), "ARG_SPLIT_ADDR": ("addr", 3)},
             "kp_split", None, "VMA splits (partial munmap, mprotect, mlock of a part)", required=True),
    HookSpec("copy", ("copy_vma",),
             {"ARG_COPY_VMAP": ("vmap", 1), "ARG_COPY_ADDR": ("addr", 2), "ARG_COPY_LEN": ("len", 3),
              "ARG_COPY_PGOFF": ("pgoff", 4)},
             "kp_copy_vma", "kr_copy_vma", "mremap moving a VMA"),
    HookSpec("free", ("vm_area_free",), {}, "kp_free", None,
             "every VMA's destruction: munmap, MAP_FIXED, mremap, exit, exec", required=True),
    HookSpec("exit", ("exit_mmap",), {}, "kp_exit_mmap", "kr_exit_mmap", "address-space teardown (exit, exec)"),
    # dup_userfaultfd() sees every VMA dup_mmap() copies; anon_vma_fork() skips VM_WIPEONFORK ones
    # (glibc 2.41's getrandom state on 6.11+ is such a VM_NORESERVE mapping: seen in the 6.12 lab;
    # 4ad10a5f5f78 "random: introduce generic vDSO getrandom() implementation" and its
    # MAP_DROPPABLE, 9651fcedf7b9 "mm: add MAP_DROPPABLE for designating always lazily freeable
    # mappings").
    HookSpec("fork", ("dup_userfaultfd", "anon_vma_fork"), {"ARG_FORK_VMA": ("vma", 1)}, "kp_fork_vma", None,
             "VMAs a child inherits at fork (dup_mmap)"),
    # perf_event_mmap() reports stack growth too, but Debian's 5.10 builds it notrace (the lab
    # measured kprobes refused there): the grown stack VMA is read when expand_downwards returns.
    # Always a kprobe: with an fexit program on it, 5.10's page-fault stack expansion failed
    # (SIGSEGV on the first touch below a MAP_GROWSDOWN mapping, seen in the lab).
    HookSpec("grow", ("expand_downwards",), {"ARG_GROW_VMA": ("vma", 1)}, "kp_grow", "kr_grow",
             "stack growth (expand_downwards), where perf_event_mmap cannot be probed", fentry_ok=False),
    HookSpec("new_task", ("wake_up_new_task",), {}, "kp_new_task", None, "the pid of a forked address space"),
    HookSpec("seed", ("task_statm",), {"ARG_SEED_MM": ("mm", 1)}, "kp_seed_mm", None,
             "the mm of each process seeded from smaps (read through /proc/PID/statm)"),
    # mremap() by kprobes on its syscall function (x86-64's wrapper takes the syscall's registers),
    # only where the kernel preempts in kernel mode: the syscalls:*_mremap tracepoints' programs
    # ran preemptible there and the kernel skipped them under load (7.2 in the lab,
    # bench/skip_sources.py: every other skipped run came from sys_exit_mremap).  Elsewhere the
    # tracepoints (below) serve every architecture.
    HookSpec("mremap_syscall", ("__x64_sys_mremap",), {}, "kp_mremap", "kr_mremap",
             "mremap() entry and exit where syscall tracepoints run preemptible", fentry_ok=False),
)


@dataclass(frozen=True)
class PlannedAttach:
    hook: str
    symbol: str
    mode: str  # "fentry" | "kprobe"
    nargs: Optional[int]


@dataclass
class HookPlan:
    attaches: List[PlannedAttach] = field(default_factory=list)
    defines: Dict[str, str] = field(default_factory=dict)
    missing: List[Tuple[str, str]] = field(default_factory=list)  # (hook, why)

    def uses(self, hook: str) -> bool:
        return any(a.hook == hook for a in self.attaches)


STRUCT_FIELDS: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "OFF_VMA_START": ("vm_area_struct", ("vm_start",)),
    "OFF_VMA_END": ("vm_area_struct", ("vm_end",)),
    "OFF_VMA_MM": ("vm_area_struct", ("vm_mm",)),
    # vm_flags sits in an anonymous union from 6.3 (bc292ab00f6c "mm: introduce vma->vm_flags
    # wrapper functions"); a kernel whose VMA holds only a vma_flags_t `flags` is looked up
    # too (its commit not found here)
    "OFF_VMA_FLAGS": ("vm_area_struct", ("vm_flags", "flags")),
    "OFF_VMA_PGOFF": ("vm_area_struct", ("vm_pgoff",)),
    "OFF_TASK_MM": ("task_struct", ("mm",)),
    "OFF_TASK_PID": ("task_struct", ("pid",)),
    "OFF_TASK_TGID": ("task_struct", ("tgid",)),
    "OFF_TASK_COMM": ("task_struct", ("comm",)),
}
# struct vma_merge_struct (mm/vma.h, 6.12+): its flags field is "flags" in 6.12 and "vm_flags"
# on later kernels (the renaming commit was not found: both names are looked up).
VMG_FIELDS: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "OFF_VMG_MM": ("vma_merge_struct", ("mm",)),
    "OFF_VMG_START": ("vma_merge_struct", ("start",)),
    "OFF_VMG_END": ("vma_merge_struct", ("end",)),
    "OFF_VMG_FLAGS": ("vma_merge_struct", ("vm_flags", "flags")),
    # the VMA being changed, for its old flags: `vma` in 6.12, `middle` since "mm: simplify vma
    # merge structure and expand comments" (2025; its mainline hash and release not confirmed)
    "OFF_VMG_VMA": ("vma_merge_struct", ("vma", "middle")),
}


def _offset(features: KernelFeatures, struct: str, names: Tuple[str, ...]) -> Optional[int]:
    if features.btf is None:
        return None
    for name in names:
        off = features.btf.field_offset(struct, name)
        if off is not None:
            return off
    return None


def _offsets(features: KernelFeatures, fields: Dict[str, Tuple[str, Tuple[str, ...]]]) -> Optional[Dict[str, str]]:
    """-D values for every field, or None when BTF lacks any of them."""
    out = {}
    for define, (struct, names) in fields.items():
        off = _offset(features, struct, names)
        if off is None:
            return None
        out[define] = str(off)
    return out


# Fields some kernels lack; the program does without them.  vm_next: the VMA list, up to 6.0
# (763ecb035029 "mm: remove the vma linked list"), tells which VMA a vma_merge() range is in.
OPTIONAL_FIELDS: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "OFF_VMA_NEXT": ("vm_area_struct", ("vm_next",)),
}


def struct_offsets(features: KernelFeatures) -> Optional[Dict[str, str]]:
    """Field offsets from BTF (then the program needs no heavy kernel headers), or None; the
    optional fields only where BTF has them."""
    out = _offsets(features, STRUCT_FIELDS)
    if out is not None:
        for define, (struct, names) in OPTIONAL_FIELDS.items():
            off = _offset(features, struct, names)
            if off is not None:
                out[define] = str(off)
    return out


def _arg_positions(spec: HookSpec, symbol: str, features: KernelFeatures) -> Dict[str, str]:
    params = features.btf.func_params(symbol) if features.btf else None
    names = [p.name for p in params] if params else []
    out = {}
    for define, (name, documented) in spec.args.items():
        position = names.index(name) + 1 if name in names else documented
        if spec.key == "merge" and name not in names and features.has_symbol("do_vmi_munmap"):
            position = documented + 1  # 6.3+ (9760ebffbf55): vma_merge(vmi, mm, prev, addr, end, vm_flags, ...)
        out[define] = str(position)
    return out


def plan_hooks(features: KernelFeatures, attach: str) -> HookPlan:
    """Choose symbols and modes.  `attach` is auto | fentry | kprobe."""
    if attach == "fentry" and not features.kfunc_supported:
        raise PlanError("--attach fentry: this kernel/BCC cannot attach fentry programs "
                        "(needs BTF and BPF trampolines, 5.5+); use --attach kprobe or auto")
    # auto: kprobes where the kernel preempts in kernel mode.  A kprobe program runs with
    # preemption off, so the kernel never skips it for another task; an fentry/fexit program runs
    # preemptible and is skipped on a CPU where a preempted task is inside it (7.2 in the lab:
    # dozens of runs per boot, each a lost event and, for an fexit, a frame left behind).
    want_fentry = features.kfunc_supported and (
        attach == "fentry" or (attach == "auto" and not features.preempts_in_kernel))
    plan = HookPlan()
    for spec in HOOKS:
        if spec.key == "mremap_syscall" and not (features.preempts_in_kernel and
                                                 any(features.has_symbol(s) for s in spec.symbols)):
            continue  # the tracepoints below serve
        present = [s for s in spec.symbols if features.has_symbol(s)]
        if spec.key == "vmg":
            offs = _offsets(features, VMG_FIELDS) if present else None
            if present and offs is None:
                plan.missing.append((spec.key, "struct vma_merge_struct not found in BTF"))
                continue
            if offs:
                plan.defines.update(offs)
        if not present:
            if spec.required:
                raise PlanError(f"none of {', '.join(spec.symbols)} is in /proc/kallsyms: cannot follow "
                                f"{spec.role}. Run `mpxtrace doctor` for details.")
            plan.missing.append((spec.key, f"no {' / '.join(spec.symbols)} on this kernel"))
            continue
        chosen = present if spec.every_symbol else present[:1]
        for symbol in chosen:
            positions = _arg_positions(spec, symbol, features)
            params = features.btf.func_params(symbol) if features.btf else None
            if want_fentry and spec.fentry_ok and features.can_fentry(symbol):
                plan.attaches.append(PlannedAttach(spec.key, symbol, "fentry", len(params or [])))
                plan.defines[f"FENTRY_{symbol}"] = "1"
                plan.defines[f"NARGS_{symbol}"] = str(len(params or []))
            elif features.can_kprobe(symbol):
                plan.attaches.append(PlannedAttach(spec.key, symbol, "kprobe", len(params) if params else None))
                plan.defines[f"KPROBE_HOOK_{spec.key}"] = "1"  # its kprobe programs are compiled
            else:
                why = f"{symbol} cannot be probed (kprobe blacklist, lockdown or no kprobe support)"
                if spec.required:
                    raise PlanError(why)
                plan.missing.append((spec.key, why))
                continue
            plan.defines.update(positions)
        if spec.define and plan.uses(spec.key):
            plan.defines[spec.define] = "1"
    if not (plan.uses("merge") or plan.uses("vmg")):
        # without them every mprotect/mlock/madvise and merge goes unseen: never trace half-blind
        why = "; ".join(f"{key}: {reason}" for key, reason in plan.missing if key in ("merge", "vmg"))
        raise PlanError(f"cannot follow merges and flag changes (vma_merge, or vma_merge_new_range/vma_modify "
                        f"with struct vma_merge_struct): {why or 'none found'}. Run `mpxtrace doctor` for details.")
    # munmap clears VM_LOCKED before vm_area_free where munlock_vma_pages_range() exists (up to
    # a213e5cf71cb, "mm/munlock: delete munlock_vma_pages_all(), allow oomreap"): only there
    # must every free in an address space holding locked memory be looked at.
    if features.has_symbol("munlock_vma_pages_range"):
        plan.defines["MUNLOCK_BEFORE_FREE"] = "1"
    # mremap() as the caller sees it (tracepoints on every kernel): the moved length and
    # MREMAP_DONTUNMAP for copy_vma, and growth in place, which no one function shows
    if plan.uses("mremap_syscall"):
        pass
    elif all(features.has_tracepoint("syscalls", f"sys_{side}_mremap") for side in ("enter", "exit")):
        plan.attaches.append(PlannedAttach("mremap", "syscalls:sys_enter_mremap", "tracepoint", None))
        plan.attaches.append(PlannedAttach("mremap", "syscalls:sys_exit_mremap", "tracepoint", None))
        plan.defines["HOOK_MREMAP_TP"] = "1"
    else:
        plan.missing.append(("mremap", "no syscalls:sys_{enter,exit}_mremap tracepoints "
                                       "(CONFIG_FTRACE_SYSCALLS): mremap growth in place is not followed"))
    # the kprobe wrappers are always compiled: give every argument macro a value
    for spec in HOOKS:
        for define, (_, documented) in spec.args.items():
            plan.defines.setdefault(define, str(documented))
    return plan
