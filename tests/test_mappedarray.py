"""Counters read from an mmap-able BPF array, without map syscalls (kernel/mappedarray.py).

These create real BPF maps: creating an array needs root and a kernel with bpf(2), which this
project's hosts and CI have (lockdown forbids tracing, not maps)."""
from __future__ import annotations

import ctypes
import os
from types import SimpleNamespace
from typing import Iterator

import pytest

from mpxtrace.kernel.bpfsyscall import BPF_MAP_LOOKUP_ELEM, BPF_MAP_UPDATE_ELEM, MapElemAttr, sys_bpf
from mpxtrace.kernel.mappedarray import BPF_F_MMAPABLE, MappedArray, create_array, mmapable_arrays_supported
from mpxtrace.program import LoadedProgram
from tests.fake_kernel import KERNEL_510, features

ENTRIES = 5


def _update(fd: int, index: int, value: int) -> None:
    key, val = ctypes.c_uint32(index), ctypes.c_uint64(value)
    assert sys_bpf(BPF_MAP_UPDATE_ELEM, MapElemAttr(fd, 0, ctypes.addressof(key), ctypes.addressof(val), 0)) == 0


def _lookup(fd: int, index: int) -> int:
    key, val = ctypes.c_uint32(index), ctypes.c_uint64(0)
    assert sys_bpf(BPF_MAP_LOOKUP_ELEM, MapElemAttr(fd, 0, ctypes.addressof(key), ctypes.addressof(val), 0)) == 0
    return int(val.value)


def mmapable_array(entries: int) -> Iterator[int]:
    """A real BPF_F_MMAPABLE array of u64 `entries` for a fixture: its fd, closed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("creating a BPF map needs root (run the suite as root, as CI does)")
    fd = create_array(entries, flags=BPF_F_MMAPABLE)
    assert fd >= 0, f"bpf(BPF_MAP_CREATE, BPF_F_MMAPABLE) failed: errno {-fd}"
    yield fd
    os.close(fd)


@pytest.fixture
def mmapable_fd() -> Iterator[int]:
    yield from mmapable_array(ENTRIES)


def test_the_running_kernel_is_probed_for_mmapable_arrays(mmapable_fd: int) -> None:
    assert mmapable_arrays_supported()


def test_values_written_through_the_map_are_read_from_memory(mmapable_fd: int) -> None:
    array = MappedArray(mmapable_fd, ENTRIES)
    assert array.values() == [0] * ENTRIES
    _update(mmapable_fd, 1, 7)
    _update(mmapable_fd, 4, 2**63 + 5)
    assert array.values() == [0, 7, 0, 0, 2**63 + 5]  # the same mapping sees later writes
    assert array.values(descending=True) == array.values()  # read in the other order, same list
    array.close()


def test_a_value_stored_through_memory_is_what_a_map_lookup_sees(mmapable_fd: int) -> None:
    array = MappedArray(mmapable_fd, ENTRIES, writable=True)
    _update(mmapable_fd, 3, 99)
    array.store(3, 0)
    array.store(0, 12345)
    assert _lookup(mmapable_fd, 3) == 0 and _lookup(mmapable_fd, 0) == 12345
    array.close()


def test_an_array_created_without_the_flag_cannot_be_mapped() -> None:
    if os.geteuid() != 0:
        pytest.skip("creating a BPF map needs root (run the suite as root, as CI does)")
    fd = create_array(ENTRIES)
    assert fd >= 0
    try:
        with pytest.raises(OSError):
            MappedArray(fd, ENTRIES)
    finally:
        os.close(fd)


class _NoLookups(dict):  # type: ignore[type-arg]
    """A BCC table whose element lookups (map syscalls) fail the test."""

    def __init__(self, fd: int, entries: int = ENTRIES) -> None:
        super().__init__()
        self.map_fd = fd
        self.entries = entries

    def __len__(self) -> int:
        return self.entries

    def Key(self, i: int) -> int:  # noqa: N802 - BCC's name
        raise AssertionError("the array was read by map syscalls")


def test_the_loaded_program_reads_mmapable_counters_without_syscalls(mmapable_fd: int) -> None:
    _update(mmapable_fd, 2, 11)
    config = SimpleNamespace(arrays_mapped=True)
    program = LoadedProgram(SimpleNamespace(__getitem__=None), config)  # type: ignore[arg-type]
    program.bpf = {"counters": _NoLookups(mmapable_fd)}
    assert program.counters() == [0, 0, 11, 0, 0]
    _update(mmapable_fd, 0, 3)
    assert program.counters() == [3, 0, 11, 0, 0]


def test_the_program_asks_for_mmapable_counters_only_where_the_kernel_has_them() -> None:
    from mpxtrace.flags import resolve_flags
    from mpxtrace.program import build_config
    feats = features(KERNEL_510)
    tracked = resolve_flags(["nr"], None)
    feats.mmapable_arrays = False
    assert build_config(tracked, feats, "kprobe", "ring", ()).defines["MAPPED_ARRAY_FLAGS"] == "0"
    feats.mmapable_arrays = True
    assert build_config(tracked, feats, "kprobe", "ring", ()).defines["MAPPED_ARRAY_FLAGS"] == str(BPF_F_MMAPABLE)
