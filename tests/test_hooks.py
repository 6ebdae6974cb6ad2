"""Hook planning: symbol fallbacks, argument positions from BTF, fentry vs kprobe per function."""
from __future__ import annotations

from typing import Dict

import pytest

from mpxtrace.kernel.hooks import PlanError, plan_hooks, struct_offsets

from fake_kernel import KERNEL_510, KERNEL_612, RINGBUF_SYMBOL, TRAMPOLINE_SYMBOL, VMG, features


def modes(plan) -> Dict[str, str]:  # type: ignore[no-untyped-def]
    return {a.symbol: a.mode for a in plan.attaches}


def test_auto_prefers_fentry_but_vma_merge_is_always_a_kprobe() -> None:
    plan = plan_hooks(features(KERNEL_510), "auto")
    m = modes(plan)
    assert m["mmap_region"] == "fentry" and m["vm_area_free"] == "fentry"
    assert m["vma_merge"] == "kprobe"
    assert m["copy_vma"] == "kprobe"  # struct vm_area_struct **vmap: refused by the 5.10 verifier
    assert plan.defines["FENTRY_mmap_region"] == "1" and plan.defines["NARGS_mmap_region"] == "6"
    assert plan.defines["KPROBE_HOOK_merge"] == "1" and "HOOK_VMG" not in plan.defines
    # only the hooks attached by kprobe have their kprobe programs compiled
    assert {k for k in plan.defines if k.startswith("KPROBE_HOOK_")} == {
        f"KPROBE_HOOK_{a.hook}" for a in plan.attaches if a.mode == "kprobe"}
    assert "KPROBE_HOOK_mmap" not in plan.defines and "KPROBE_HOOK_copy" in plan.defines


def test_notrace_function_is_not_kprobed_without_kprobe_on_notrace() -> None:
    f = features(KERNEL_510)
    f.ftrace_functions = f.ftrace_functions - {"perf_event_mmap"}  # type: ignore[operator]
    plan = plan_hooks(f, "kprobe")
    assert "perf_event_mmap" not in modes(plan)
    f.kprobe_on_notrace = True
    assert "perf_event_mmap" in modes(plan_hooks(f, "kprobe"))


def test_kprobe_mode_uses_no_fentry() -> None:
    plan = plan_hooks(features(KERNEL_510), "kprobe")
    assert set(modes(plan).values()) == {"kprobe"}
    assert not any(k.startswith("FENTRY_") for k in plan.defines)


def test_argument_positions_come_from_btf_names() -> None:
    shifted = dict(KERNEL_510, mmap_region=["mm", "file", "addr", "len", "vm_flags", "pgoff"])
    plan = plan_hooks(features(shifted, trampolines=False), "kprobe")
    assert (plan.defines["ARG_MMAP_ADDR"], plan.defines["ARG_MMAP_FLAGS"]) == ("3", "5")
    assert (plan.defines["ARG_MERGE_START"], plan.defines["ARG_MERGE_FLAGS"]) == ("3", "5")


def test_vma_merge_without_btf_after_the_vma_iterator_conversion() -> None:
    f = features(KERNEL_510, btf=False)
    f.kallsyms = f.kallsyms | {"do_vmi_munmap"}
    plan = plan_hooks(f, "auto")
    assert (plan.defines["ARG_MERGE_MM"], plan.defines["ARG_MERGE_FLAGS"]) == ("2", "6")


def test_612_uses_vmg_hooks_with_btf_offsets() -> None:
    plan = plan_hooks(features(KERNEL_612, fields=VMG), "auto")
    m = modes(plan)
    assert m["vma_merge_new_range"] == "fentry" and m["vma_modify"] == "fentry"
    assert plan.defines["OFF_VMG_FLAGS"] == "64" and plan.defines["HOOK_VMG"] == "1"
    assert plan.defines["ARG_SPLIT_VMA"] == "2"


def test_vmg_without_struct_in_btf_refuses_to_trace_blind_to_merges() -> None:
    """6.12+ without vma_merge_struct in BTF: no hook sees merges or mprotect/mlock/madvise, and
    tracing on would be silently wrong (7.2 once lost its vmg hook to a renamed field)."""
    with pytest.raises(PlanError, match="vmg: struct vma_merge_struct not found in BTF"):
        plan_hooks(features(KERNEL_612), "auto")


def test_vmg_finds_the_changed_vma_under_its_newer_name_middle() -> None:
    layout = dict(VMG["vma_merge_struct"])
    layout["middle"] = layout.pop("vma")
    plan = plan_hooks(features(KERNEL_612, fields={"vma_merge_struct": layout}), "auto")
    assert plan.uses("vmg") and plan.defines["OFF_VMG_VMA"] == "40"


def test_struct_by_value_or_not_ftraceable_falls_back_to_kprobe() -> None:
    plan = plan_hooks(features(KERNEL_510, by_value=frozenset({"dup_userfaultfd"})), "fentry")
    assert modes(plan)["dup_userfaultfd"] == "kprobe"


def test_fork_prefers_dup_userfaultfd_and_falls_back_to_anon_vma_fork() -> None:
    assert "dup_userfaultfd" in modes(plan_hooks(features(KERNEL_510), "auto"))
    funcs = dict(KERNEL_510)
    del funcs["dup_userfaultfd"]
    m = modes(plan_hooks(features(funcs), "auto"))
    assert m["anon_vma_fork"] == "fentry" and "dup_userfaultfd" not in m
    f = features(KERNEL_510, ftrace=False)
    f.kprobe_on_notrace = True
    plan = plan_hooks(f, "auto")
    assert set(modes(plan).values()) == {"kprobe"}


def test_missing_required_hook_is_an_error() -> None:
    funcs = dict(KERNEL_510)
    del funcs["vm_area_free"]
    with pytest.raises(PlanError, match="vm_area_free"):
        plan_hooks(features(funcs), "auto")


def test_blacklisted_optional_hook_is_missing_not_fatal() -> None:
    plan = plan_hooks(features(KERNEL_510, blacklist=frozenset({"perf_event_mmap"}), trampolines=False), "auto")
    assert "perf_event_mmap" not in modes(plan)
    assert any(h == "final_vma" for h, _ in plan.missing)


def test_fentry_mode_without_trampolines_is_refused() -> None:
    with pytest.raises(PlanError, match="--attach kprobe"):
        plan_hooks(features(KERNEL_510, trampolines=False), "fentry")


def test_fentry_needs_trampolines_and_btf() -> None:
    assert features(KERNEL_510).kfunc_supported
    assert not features(KERNEL_510, trampolines=False).kfunc_supported
    assert not features(KERNEL_510, btf=False).kfunc_supported
    assert TRAMPOLINE_SYMBOL in features(KERNEL_510, btf=False).kallsyms  # absent BTF alone refuses fentry


def test_ring_buffer_is_known_by_its_symbol_or_its_btf_struct() -> None:
    assert features(KERNEL_510).ringbuf_supported
    assert not features(KERNEL_510, ringbuf=False).ringbuf_supported
    assert features(KERNEL_510, ringbuf=False, fields={"bpf_ringbuf": {}}).ringbuf_supported
    assert RINGBUF_SYMBOL not in features(KERNEL_510, ringbuf=False).kallsyms


def test_auto_plans_kprobes_only_without_trampolines() -> None:
    assert "fentry" in modes(plan_hooks(features(KERNEL_510), "auto")).values()
    assert "fentry" not in modes(plan_hooks(features(KERNEL_510, trampolines=False), "auto")).values()


def test_mremap_syscall_tracepoints_are_used_when_the_kernel_has_them() -> None:
    import dataclasses
    without = plan_hooks(features(KERNEL_510), "auto")
    assert "HOOK_MREMAP_TP" not in without.defines and ("mremap" in dict(without.missing))
    with_tp = plan_hooks(dataclasses.replace(features(KERNEL_510), tracepoints=frozenset(
        {"syscalls:sys_enter_mremap", "syscalls:sys_exit_mremap"})), "auto")
    assert with_tp.defines["HOOK_MREMAP_TP"] == "1"
    assert {a.symbol for a in with_tp.attaches if a.mode == "tracepoint"} == {
        "syscalls:sys_enter_mremap", "syscalls:sys_exit_mremap"}


def test_confidentiality_lockdown_allows_neither_fentry_nor_kprobes() -> None:
    locked = features(KERNEL_510, lockdown="confidentiality")
    assert not locked.can_fentry("mmap_region") and not locked.can_kprobe("mmap_region")
    with pytest.raises(PlanError):
        plan_hooks(locked, "auto")


def test_vm_locked_frees_are_judged_by_flags_only_where_munmap_keeps_them() -> None:
    # munlock_vma_pages_range (5.10) clears VM_LOCKED before vm_area_free; later kernels keep it
    assert plan_hooks(features(KERNEL_510), "auto").defines.get("MUNLOCK_BEFORE_FREE") == "1"
    assert "MUNLOCK_BEFORE_FREE" not in plan_hooks(features(KERNEL_612, fields=VMG), "auto").defines


def test_vmg_hooks_read_the_changed_vma_old_flags() -> None:
    plan = plan_hooks(features(KERNEL_612, fields=VMG), "auto")
    assert plan.defines["OFF_VMG_VMA"] == "40"


def test_auto_uses_kprobes_where_the_kernel_preempts_in_kernel_mode() -> None:
    """fentry/fexit programs run preemptible and the kernel skips them for other tasks on that
    CPU (7.2, lazy preemption): auto avoids them there; --attach fentry still gets them."""
    f = features(KERNEL_612, fields=VMG)
    assert "fentry" in set(modes(plan_hooks(f, "auto")).values())
    f.preempts_in_kernel = True
    assert set(modes(plan_hooks(f, "auto")).values()) <= {"kprobe", "tracepoint"}
    assert "fentry" in set(modes(plan_hooks(f, "fentry")).values())


def test_preemption_mode_is_read_from_the_scheduler_then_the_build_config(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import mpxtrace.kernel.features as feat
    for text, config, expected in [("none voluntary full (lazy)\n", {}, True),
                                   ("none (voluntary) full lazy\n", {"CONFIG_PREEMPT": "y"}, False),
                                   (None, {"CONFIG_PREEMPT_DYNAMIC": "y", "CONFIG_PREEMPT": "y"}, None),
                                   (None, {"CONFIG_PREEMPT_VOLUNTARY": "y"}, False),
                                   (None, {"CONFIG_PREEMPT": "y"}, True),
                                   (None, {}, None)]:
        monkeypatch.setattr(feat, "_read", lambda path, text=text: text)
        assert feat._preempts_in_kernel(config) is expected, (text, config)


def test_where_the_kernel_preempts_in_kernel_mode_mremap_is_followed_by_kprobes_on_its_syscall() -> None:
    """The syscall tracepoints' programs run preemptible there and the kernel skipped them under
    load (bench/skip_sources.py on 7.2): kprobes run with preemption off."""
    import dataclasses
    tracepoints = frozenset({"syscalls:sys_enter_mremap", "syscalls:sys_exit_mremap"})
    kernel = dict(KERNEL_510, __x64_sys_mremap=["regs"])
    calm = dataclasses.replace(features(kernel), tracepoints=tracepoints, preempts_in_kernel=False)
    preempting = dataclasses.replace(calm, preempts_in_kernel=True)
    assert not plan_hooks(calm, "auto").uses("mremap_syscall") and plan_hooks(calm, "auto").defines["HOOK_MREMAP_TP"]
    for attach in ("auto", "fentry", "kprobe"):
        plan = plan_hooks(preempting, attach)
        assert [(a.symbol, a.mode) for a in plan.attaches if a.hook in ("mremap", "mremap_syscall")] == [
            ("__x64_sys_mremap", "kprobe")]
        assert plan.defines["KPROBE_HOOK_mremap_syscall"] == "1" and "HOOK_MREMAP_TP" not in plan.defines
    # an architecture without that function keeps the tracepoints
    other = dataclasses.replace(features(KERNEL_510), tracepoints=tracepoints, preempts_in_kernel=True)
    assert plan_hooks(other, "auto").defines["HOOK_MREMAP_TP"] == "1"
    assert "mremap_syscall" not in dict(plan_hooks(other, "auto").missing)  # nothing is missing there


def test_vma_merge_reads_prev_and_the_vma_list_where_btf_has_it() -> None:
    """5.10's vma_merge() names the VMA before its range (prev); with vm_next the kernel program
    tells which VMA the range is in, so a change touching no flagged memory stays quiet.  6.1
    dropped the list (763ecb035029): the offset is then left out, not guessed."""
    vma = {"vm_start": 0, "vm_end": 8, "vm_mm": 64, "vm_flags": 80, "vm_pgoff": 120}
    task = {"mm": 2000, "pid": 2400, "tgid": 2404, "comm": 3000}
    listed = {"vm_area_struct": dict(vma, vm_next=16), "task_struct": task}
    plan = plan_hooks(features(KERNEL_510, fields=listed), "auto")
    assert plan.defines["ARG_MERGE_PREV"] == "2"
    offsets = struct_offsets(features(KERNEL_510, fields=listed))
    assert offsets is not None and offsets["OFF_VMA_NEXT"] == "16"
    unlisted = struct_offsets(features(KERNEL_510, fields={"vm_area_struct": vma, "task_struct": task}))
    assert unlisted is not None and "OFF_VMA_NEXT" not in unlisted and unlisted["OFF_VMA_FLAGS"] == "80"
    assert struct_offsets(features(KERNEL_510, btf=False)) is None
