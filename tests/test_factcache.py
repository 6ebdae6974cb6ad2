"""The per-boot cache of the slow kernel facts (kernel/factcache.py), on fake kernels and a
temporary cache directory: what is remembered, when it is thrown away, what it refuses."""
from __future__ import annotations

import os
import re
import stat
from dataclasses import replace
from pathlib import Path
from typing import Dict, FrozenSet, List, Optional, Tuple

import pytest

from mpxtrace.kernel import factcache
from mpxtrace.kernel.factcache import HeavyFacts, KnownNames, Sources, default_questions, heavy_facts
from mpxtrace.kernel.features import KernelFeatures
from mpxtrace.kernel.hooks import plan_hooks, struct_offsets

from fake_kernel import KERNEL_510, KERNEL_612, VMG, FakeBtf

FIELDS = dict(VMG, vm_area_struct={"vm_start": 0, "vm_end": 8, "vm_mm": 16, "vm_flags": 32, "vm_pgoff": 120},
              task_struct={"mm": 900, "pid": 1000, "tgid": 1004, "comm": 1500}, bpf_ringbuf={})


class FakeKernel:
    """A kernel whose slow facts count how often they are read."""

    def __init__(self, tmp: Path, funcs: Dict[str, List[str]], boot_id: str = "boot-1", modules: str = "") -> None:
        self.funcs = funcs
        self.reads: List[str] = []
        self.proc = tmp / "proc"
        (self.proc / "sys/kernel/random").mkdir(parents=True, exist_ok=True)
        self.set_boot(boot_id, modules)

    def set_boot(self, boot_id: str, modules: str = "") -> None:
        (self.proc / "sys/kernel/random/boot_id").write_text(boot_id + "\n")
        (self.proc / "modules").write_text(modules)

    def symbols(self) -> FrozenSet[str]:
        return frozenset(self.funcs) | {"bpf_trampoline_link_prog", "bpf_ringbuf_reserve", "unrelated_fn"}

    def sources(self) -> Sources:
        def kallsyms() -> Tuple[FrozenSet[str], bool]:
            self.reads.append("kallsyms")
            return self.symbols(), True

        def ftrace() -> Optional[FrozenSet[str]]:
            self.reads.append("ftrace")
            return self.symbols() - {"expand_downwards"}

        def btf() -> FakeBtf:
            self.reads.append("btf")
            return FakeBtf(self.funcs, frozenset({"vma_merge"}), FIELDS)

        return Sources(kallsyms, ftrace, btf, self.proc)  # type: ignore[arg-type]


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def features_of(heavy: HeavyFacts) -> KernelFeatures:
    return KernelFeatures(release="test", kallsyms=heavy.kallsyms, kallsyms_readable=heavy.kallsyms_readable,
                          ftrace_functions=heavy.ftrace_functions, kprobe_blacklist=frozenset(), kprobe_events=True,
                          lockdown="none", btf=heavy.btf, tracepoints=frozenset({"syscalls:sys_enter_mremap"}))


@pytest.mark.parametrize("funcs", [KERNEL_510, KERNEL_612], ids=["5.10", "6.12"])
def test_a_cached_start_plans_exactly_what_a_live_one_does_without_reading_the_kernel(
        tmp_path: Path, cache_dir: Path, funcs: Dict[str, List[str]]) -> None:
    kernel = FakeKernel(tmp_path, funcs)
    live = heavy_facts("test", kernel.sources(), cache_dir=cache_dir)
    assert not live.from_cache and kernel.reads == ["kallsyms", "ftrace", "btf"]
    kernel.reads.clear()
    cached = heavy_facts("test", kernel.sources(), cache_dir=cache_dir)
    assert cached.from_cache
    for attach in ("auto", "fentry", "kprobe"):
        assert plan_hooks(features_of(cached), attach) == plan_hooks(features_of(live), attach)
    assert struct_offsets(features_of(cached)) == struct_offsets(features_of(live))
    assert features_of(cached).ringbuf_supported and features_of(cached).kfunc_supported
    assert len(cached.kallsyms) == len(live.kallsyms)
    assert kernel.reads == []  # everything above came from the cache


def test_cache_files_are_private(tmp_path: Path, cache_dir: Path) -> None:
    heavy_facts("test", FakeKernel(tmp_path, KERNEL_510).sources(), cache_dir=cache_dir)
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
    files = list(cache_dir.iterdir())
    assert len(files) == 1 and files[0].name.startswith("kernel-facts-")
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600


def test_a_question_the_cache_cannot_answer_reads_the_kernel_once(tmp_path: Path, cache_dir: Path) -> None:
    kernel = FakeKernel(tmp_path, KERNEL_510)
    heavy_facts("test", kernel.sources(), cache_dir=cache_dir)
    kernel.reads.clear()
    cached = heavy_facts("test", kernel.sources(), cache_dir=cache_dir)
    assert "unrelated_fn" in cached.kallsyms and "not_a_symbol" not in cached.kallsyms
    assert cached.ftrace_functions is not None and "unrelated_fn" in cached.ftrace_functions
    assert cached.btf is not None and cached.btf.field_offset("task_struct", "pid") == 1000  # asked: cached
    assert kernel.reads == ["kallsyms", "ftrace"]
    assert cached.btf.field_offset("vm_area_struct", "vm_end") == 8  # asked: cached
    assert cached.btf.func_params("unrelated_fn") is None and cached.btf.has_struct("bpf_ringbuf")
    assert kernel.reads == ["kallsyms", "ftrace", "btf"]


@pytest.mark.parametrize("change", ["boot", "modules", "release", "questions"])
def test_a_new_boot_module_set_release_or_question_set_reads_the_kernel_again(
        tmp_path: Path, cache_dir: Path, change: str) -> None:
    kernel = FakeKernel(tmp_path, KERNEL_510, modules="ext4 100 1 - Live 0xffffffffc0000000\n")
    heavy_facts("test", kernel.sources(), cache_dir=cache_dir)
    release, questions = "test", default_questions()
    if change == "boot":
        kernel.set_boot("boot-2", "ext4 100 1 - Live 0xffffffffc0000000\n")
    elif change == "modules":  # the same module loaded again elsewhere: its symbols may differ
        kernel.set_boot("boot-1", "ext4 100 1 - Live 0xffffffffc0100000\n")
    elif change == "release":
        release = "other"
    else:
        questions = replace(questions, symbols=questions.symbols + ("new_hook",))
    kernel.reads.clear()
    again = heavy_facts(release, kernel.sources(), questions, cache_dir=cache_dir)
    assert not again.from_cache and kernel.reads == ["kallsyms", "ftrace", "btf"]
    assert len(list(cache_dir.iterdir())) == 1  # the old key's file was removed


def test_a_changing_module_refcount_keeps_the_cache(tmp_path: Path, cache_dir: Path) -> None:
    kernel = FakeKernel(tmp_path, KERNEL_510, modules="ext4 100 1 - Live 0xffffffffc0000000\n")
    heavy_facts("test", kernel.sources(), cache_dir=cache_dir)
    kernel.set_boot("boot-1", "ext4 100 7 jbd2, Live 0xffffffffc0000000\n")
    assert heavy_facts("test", kernel.sources(), cache_dir=cache_dir).from_cache


def test_no_boot_id_no_root_or_no_cache_dir_means_no_cache(tmp_path: Path, cache_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    kernel = FakeKernel(tmp_path, KERNEL_510)
    heavy_facts("test", kernel.sources(), cache_dir=None)
    assert not cache_dir.exists()
    monkeypatch.setattr(factcache, "_is_root", lambda: False)
    heavy_facts("test", kernel.sources(), cache_dir=cache_dir)
    assert not cache_dir.exists()
    monkeypatch.setattr(factcache, "_is_root", lambda: True)
    (kernel.proc / "sys/kernel/random/boot_id").unlink()
    heavy_facts("test", kernel.sources(), cache_dir=cache_dir)
    heavy_facts("test", kernel.sources(), cache_dir=cache_dir)
    assert kernel.reads.count("btf") == 4 and not cache_dir.exists()


def test_a_symlinked_or_shared_cache_dir_is_neither_read_nor_written(tmp_path: Path) -> None:
    kernel = FakeKernel(tmp_path, KERNEL_510)
    real = tmp_path / "real"
    heavy_facts("test", kernel.sources(), cache_dir=real)  # a valid cache in the target
    (tmp_path / "link").symlink_to(real)
    kernel.reads.clear()
    assert not heavy_facts("test", kernel.sources(), cache_dir=tmp_path / "link").from_cache
    (tmp_path / "via").symlink_to(tmp_path)  # a symlink in a parent component
    assert not heavy_facts("test", kernel.sources(), cache_dir=tmp_path / "via" / "real").from_cache
    assert kernel.reads.count("btf") == 2
    real.chmod(0o755)  # others may read (and with 0777 replace) what root trusts
    assert not heavy_facts("test", kernel.sources(), cache_dir=real).from_cache


def test_a_symlinked_cache_file_is_not_followed(tmp_path: Path, cache_dir: Path) -> None:
    kernel = FakeKernel(tmp_path, KERNEL_510)
    heavy_facts("test", kernel.sources(), cache_dir=cache_dir)
    (name,) = [p.name for p in cache_dir.iterdir()]
    (cache_dir / name).rename(tmp_path / "elsewhere.json")
    (cache_dir / name).symlink_to(tmp_path / "elsewhere.json")
    assert not heavy_facts("test", kernel.sources(), cache_dir=cache_dir).from_cache
    assert not (cache_dir / name).is_symlink()  # replaced by a real file, the target untouched
    assert heavy_facts("test", kernel.sources(), cache_dir=cache_dir).from_cache


@pytest.mark.parametrize("damage", ["truncated", "wrong key", "missing section", "bad types"])
def test_a_damaged_cache_file_is_ignored_and_rewritten(tmp_path: Path, cache_dir: Path, damage: str) -> None:
    kernel = FakeKernel(tmp_path, KERNEL_510)
    heavy_facts("test", kernel.sources(), cache_dir=cache_dir)
    (path,) = list(cache_dir.iterdir())
    text = path.read_text()
    broken = {"truncated": text[: len(text) // 2],
              "wrong key": re.sub(r'"key": "\w+"', '"key": "0"', text),
              "missing section": text.replace('"btf"', '"btx"'),
              "bad types": re.sub(r'"count": \d+', '"count": "many"', text)}[damage]
    path.write_text(broken)
    kernel.reads.clear()
    assert not heavy_facts("test", kernel.sources(), cache_dir=cache_dir).from_cache
    assert kernel.reads == ["kallsyms", "ftrace", "btf"]
    assert heavy_facts("test", kernel.sources(), cache_dir=cache_dir).from_cache


def test_unreadable_facts_are_not_cached(tmp_path: Path, cache_dir: Path) -> None:
    kernel = FakeKernel(tmp_path, KERNEL_510)
    sources = kernel.sources()
    no_ftrace = Sources(sources.kallsyms, lambda: None, sources.btf, sources.proc)
    assert heavy_facts("test", no_ftrace, cache_dir=cache_dir).ftrace_functions is None
    assert not heavy_facts("test", no_ftrace, cache_dir=cache_dir).from_cache
    assert not cache_dir.exists()  # a host that cannot trace is left as it was


def test_known_names_answer_like_the_set_they_stand_for() -> None:
    full = frozenset({"a", "b", "c"})
    names = KnownNames({"a": True, "z": False}, 3, lambda: full)
    assert "a" in names and "z" not in names and len(names) == 3
    assert "b" in names and sorted(names) == ["a", "b", "c"]


def test_every_symbol_asked_by_name_is_in_the_cached_questions() -> None:
    root = Path(__file__).resolve().parents[1] / "mpxtrace"
    asked = {m for path in root.rglob("*.py")
             for m in re.findall(r'has_symbol\("(\w+)"\)', path.read_text())}
    assert asked and asked <= set(default_questions().symbols)
    assert os.path.isabs(str(factcache.CACHE_DIR))
