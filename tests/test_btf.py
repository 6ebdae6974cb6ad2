"""The BTF reader against a blob built here, and against the running kernel's own BTF."""
from __future__ import annotations

import struct
from pathlib import Path
from typing import List

import pytest

from mpxtrace.kernel.btf import Btf, BtfError, load_vmlinux_btf


def blob() -> bytes:
    strings = b"\0int\0vm_area_struct\0vm_start\0u\0vm_flags\0mmap_region\0addr\0vma\0pair\0a\0b\0by_val\0p\0"
    def off(name: str) -> int:
        return strings.index(b"\0" + name.encode() + b"\0") + 1
    types: List[bytes] = []
    def t(name_off: int, kind: int, vlen: int, size_or_type: int, extra: bytes = b"", kflag: int = 0) -> None:
        types.append(struct.pack("<III", name_off, (kflag << 31) | (kind << 24) | vlen, size_or_type) + extra)
    t(off("int"), 1, 0, 8, struct.pack("<I", 64))                    # 1 int
    t(0, 5, 1, 8, struct.pack("<III", off("vm_flags"), 1, 0))          # 2 anonymous union { vm_flags }
    t(off("vm_area_struct"), 4, 2, 40,                                 # 3 struct vm_area_struct
      struct.pack("<III", off("vm_start"), 1, 0) + struct.pack("<III", 0, 2, 256))
    t(0, 2, 0, 3)                                                      # 4 pointer to 3
    t(0, 10, 0, 3)                                                     # 5 const struct vm_area_struct
    t(0, 13, 2, 1, struct.pack("<II", off("addr"), 1) + struct.pack("<II", off("vma"), 4))  # 6 proto
    t(off("mmap_region"), 12, 0, 6)                                    # 7 func
    t(0, 13, 1, 1, struct.pack("<II", off("p"), 5))                    # 8 proto: struct by value (via const)
    t(off("by_val"), 12, 0, 8)                                         # 9 func
    body = b"".join(types)
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(body), len(body), len(strings))
    return header + body + strings


def test_synthetic_blob() -> None:
    btf = Btf(blob())
    params = btf.func_params("mmap_region")
    assert [(p.name, p.by_value_aggregate) for p in params or []] == [("addr", False), ("vma", False)]
    assert [(p.name, p.by_value_aggregate) for p in btf.func_params("by_val") or []] == [("p", True)]
    assert btf.field_offset("vm_area_struct", "vm_start") == 0
    assert btf.field_offset("vm_area_struct", "vm_flags") == 32  # inside the anonymous union at bit 256
    assert btf.field_offset("vm_area_struct", "nope") is None and btf.func_params("nope") is None


def test_rejects_garbage() -> None:
    with pytest.raises(BtfError):
        Btf(b"\0" * 64)


@pytest.mark.skipif(not Path("/sys/kernel/btf/vmlinux").exists(), reason="kernel without BTF")
def test_running_kernel_btf_agrees_with_kallsyms() -> None:
    btf = load_vmlinux_btf()
    assert btf is not None
    syms = {line.split()[2] for line in open("/proc/kallsyms") if line.split()[1] in "tT"}
    for func in ("vm_area_free", "exit_mmap", "do_munmap"):
        if func in syms:
            assert btf.func_params(func) is not None
    params = btf.func_params("mmap_region")
    if params:  # vm_flags is argument 4 on every kernel (kernel-reference.md)
        assert [p.name for p in params][:4] == ["file", "addr", "len", "vm_flags"]
    assert btf.field_offset("vm_area_struct", "vm_start") == 0
    assert btf.field_offset("vm_area_struct", "vm_end") == 8
