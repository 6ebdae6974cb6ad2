"""Hook planning: symbol fallbacks, argument positions from BTF, fentry vs kprobe per function."""
from __future__ import annotations

from typing import Dict, FrozenSet, List, Optional

import pytest

from mpxtrace.kernel.btf import FuncParam
from mpxtrace.kernel.features import KernelFeatures
from mpxtrace.kernel.hooks import PlanError, plan_hooks


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
}
KERNEL_612 = dict(KERNEL_510, vma_merge_new_range=["vmg"], vma_modify=["vmg"],
                  __split_vma=["vmi", "vma", "addr", "new_below"])
del KERNEL_612["vma_merge"]
VMG = {"vma_merge_struct": {"mm": 0, "start": 48, "end": 56, "flags": 64}}


def features(funcs: Dict[str, List[str]], ftrace: bool = True, blacklist: FrozenSet[str] = frozenset(),
             btf: bool = True, by_value: FrozenSet[str] = frozenset(), fields: Optional[dict] = None) -> KernelFeatures:
    syms = frozenset(funcs) | {"do_munmap"}
    return KernelFeatures(release="test", kallsyms=syms, kallsyms_readable=True,
                          ftrace_functions=syms if ftrace else None, kprobe_blacklist=blacklist,
                          kprobes_enabled=True, kprobe_events=True, lockdown="none",
                          btf=FakeBtf(funcs, by_value, fields) if btf else None)  # type: ignore[arg-type]


def modes(plan) -> Dict[str, str]:  # type: ignore[no-untyped-def]
    return {a.symbol: a.mode for a in plan.attaches}


def test_auto_prefers_fentry_but_vma_merge_is_always_a_kprobe() -> None:
    plan = plan_hooks(features(KERNEL_510), "auto", kfunc_supported=True)
    m = modes(plan)
    assert m["mmap_region"] == "fentry" and m["vm_area_free"] == "fentry"
    assert m["vma_merge"] == "kprobe"
    assert m["copy_vma"] == "kprobe"  # struct vm_area_struct **vmap: refused by the 5.10 verifier
    assert plan.defines["FENTRY_mmap_region"] == "1" and plan.defines["NARGS_mmap_region"] == "6"
    assert plan.defines["HOOK_VMA_MERGE"] == "1" and "HOOK_VMG" not in plan.defines


def test_notrace_function_is_not_kprobed_without_kprobe_on_notrace() -> None:
    f = features(KERNEL_510)
    f.ftrace_functions = f.ftrace_functions - {"perf_event_mmap"}  # type: ignore[operator]
    plan = plan_hooks(f, "kprobe", kfunc_supported=True)
    assert "perf_event_mmap" not in modes(plan)
    f.kprobe_on_notrace = True
    assert "perf_event_mmap" in modes(plan_hooks(f, "kprobe", kfunc_supported=True))


def test_kprobe_mode_uses_no_fentry() -> None:
    plan = plan_hooks(features(KERNEL_510), "kprobe", kfunc_supported=True)
    assert set(modes(plan).values()) == {"kprobe"}
    assert not any(k.startswith("FENTRY_") for k in plan.defines)


def test_argument_positions_come_from_btf_names() -> None:
    shifted = dict(KERNEL_510, mmap_region=["mm", "file", "addr", "len", "vm_flags", "pgoff"])
    plan = plan_hooks(features(shifted), "kprobe", kfunc_supported=False)
    assert (plan.defines["ARG_MMAP_ADDR"], plan.defines["ARG_MMAP_FLAGS"]) == ("3", "5")
    assert (plan.defines["ARG_MERGE_START"], plan.defines["ARG_MERGE_FLAGS"]) == ("3", "5")


def test_vma_merge_without_btf_after_the_vma_iterator_conversion() -> None:
    f = features(KERNEL_510, btf=False)
    f.kallsyms = f.kallsyms | {"do_vmi_munmap"}
    plan = plan_hooks(f, "auto", kfunc_supported=False)
    assert (plan.defines["ARG_MERGE_MM"], plan.defines["ARG_MERGE_FLAGS"]) == ("2", "6")


def test_612_uses_vmg_hooks_with_btf_offsets() -> None:
    plan = plan_hooks(features(KERNEL_612, fields=VMG), "auto", kfunc_supported=True)
    m = modes(plan)
    assert m["vma_merge_new_range"] == "fentry" and m["vma_modify"] == "fentry"
    assert plan.defines["OFF_VMG_FLAGS"] == "64" and plan.defines["HOOK_VMG"] == "1"
    assert plan.defines["ARG_SPLIT_VMA"] == "2"


def test_vmg_without_struct_in_btf_is_reported_missing() -> None:
    plan = plan_hooks(features(KERNEL_612), "auto", kfunc_supported=True)
    assert ("vmg", "struct vma_merge_struct not found in BTF") in plan.missing
    assert "HOOK_VMG" not in plan.defines


def test_struct_by_value_or_not_ftraceable_falls_back_to_kprobe() -> None:
    plan = plan_hooks(features(KERNEL_510, by_value=frozenset({"dup_userfaultfd"})), "fentry", kfunc_supported=True)
    assert modes(plan)["dup_userfaultfd"] == "kprobe"


def test_fork_prefers_dup_userfaultfd_and_falls_back_to_anon_vma_fork() -> None:
    assert "dup_userfaultfd" in modes(plan_hooks(features(KERNEL_510), "auto", kfunc_supported=True))
    funcs = dict(KERNEL_510)
    del funcs["dup_userfaultfd"]
    m = modes(plan_hooks(features(funcs), "auto", kfunc_supported=True))
    assert m["anon_vma_fork"] == "fentry" and "dup_userfaultfd" not in m
    f = features(KERNEL_510, ftrace=False)
    f.kprobe_on_notrace = True
    plan = plan_hooks(f, "auto", kfunc_supported=True)
    assert set(modes(plan).values()) == {"kprobe"}


def test_missing_required_hook_is_an_error() -> None:
    funcs = dict(KERNEL_510)
    del funcs["vm_area_free"]
    with pytest.raises(PlanError, match="vm_area_free"):
        plan_hooks(features(funcs), "auto", kfunc_supported=True)


def test_blacklisted_optional_hook_is_missing_not_fatal() -> None:
    plan = plan_hooks(features(KERNEL_510, blacklist=frozenset({"perf_event_mmap"})), "auto", False)
    assert "perf_event_mmap" not in modes(plan)
    assert any(h == "final_vma" for h, _ in plan.missing)


def test_fentry_mode_without_trampolines_is_refused() -> None:
    with pytest.raises(PlanError, match="--attach kprobe"):
        plan_hooks(features(KERNEL_510), "fentry", kfunc_supported=False)
