"""Which ``vm_flags`` bit(s) to follow, and how to resolve them on the running kernel.

A flag is named three ways: by its kernel macro (``VM_LOCKED``), by its two-letter
``/proc/PID/smaps`` mnemonic (``lo``), or as a raw mask (``--mask 0x2000``).  VM_MPX is
special: its bit moved (bit 25 up to 4.13, bit 36 from 4.14, gone with MPX in 5.6) and bit 25 means
VM_WIPEONFORK from 4.14, so it is resolved from the running kernel's own headers and
config, never from a version number.
"""
from __future__ import annotations

import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .kernel.features import kernel_config

__all__ = [
    "FlagSpec",
    "KNOWN_FLAGS",
    "FlagError",
    "TrackedFlags",
    "resolve_flags",
    "resolve_mpx",
    "MpxResolution",
    "mnemonics_for_mask",
]


class FlagError(ValueError):
    """A flag the user asked for cannot be traced here; the message says what to do."""


@dataclass(frozen=True)
class FlagSpec:
    name: str
    value: int
    mnemonic: str
    note: str


# Values as in include/linux/mm.h on x86-64 (stable since their introduction unless noted):
# VM_WIPEONFORK from d2cd9ede6e19 ("mm,fork: introduce MADV_WIPEONFORK"), VM_SHADOW_STACK from
# 54007f818206 ("mm: Introduce VM_SHADOW_STACK for shadow stack memory").
KNOWN_FLAGS: Tuple[FlagSpec, ...] = (
    FlagSpec("VM_LOCKED", 0x00002000, "lo", "mmap(MAP_LOCKED), mlock()"),
    FlagSpec("VM_DONTCOPY", 0x00020000, "dc", "madvise(MADV_DONTFORK)"),
    FlagSpec("VM_NORESERVE", 0x00200000, "nr", "mmap(MAP_NORESERVE)"),
    FlagSpec("VM_HUGETLB", 0x00400000, "ht", "hugetlbfs mappings"),
    FlagSpec("VM_WIPEONFORK", 0x02000000, "wf", "madvise(MADV_WIPEONFORK), 4.14+ (bit 25 was VM_MPX before)"),
    FlagSpec("VM_DONTDUMP", 0x04000000, "dd", "madvise(MADV_DONTDUMP)"),
    FlagSpec("VM_MIXEDMAP", 0x10000000, "mm", "driver mappings"),
    FlagSpec("VM_HUGEPAGE", 0x20000000, "hg", "madvise(MADV_HUGEPAGE)"),
    FlagSpec("VM_NOHUGEPAGE", 0x40000000, "nh", "madvise(MADV_NOHUGEPAGE)"),
    FlagSpec("VM_MERGEABLE", 0x80000000, "mg", "madvise(MADV_MERGEABLE), KSM"),
    FlagSpec("VM_SHADOW_STACK", 0x2000000000, "ss", "map_shadow_stack(2), x86 6.6+"),
)

# Not followed as such, but the kernel program must know them (include/linux/mm.h):
# mlock state is cleared before a VMA is freed or copied to a child (VM_LOCKED_MASK), and
# mremap(MREMAP_DONTUNMAP) clears it with VM_ACCOUNT on the source it leaves mapped.
VM_LOCKONFAULT = 0x00080000
VM_LOCKED_MASK = 0x00002000 | VM_LOCKONFAULT
VM_ACCOUNT = 0x00100000
PAGE_SHIFT = 12  # x86-64, the only architecture with VM_MPX

MPX_MNEMONIC = "mp"
# VM_MPX = VM_ARCH_2 (3.19-4.13), VM_HIGH_ARCH_4 (4.14-5.5); see kernel-reference.md.
MPX_BIT25 = 0x02000000
MPX_BIT36 = 0x1000000000


@dataclass(frozen=True)
class MpxResolution:
    """What the running kernel says about VM_MPX, with the evidence."""

    value: int  # 0 when the kernel has no usable VM_MPX
    evidence: str
    hardware: bool

    @property
    def available(self) -> bool:
        return self.value != 0


_MPX_DEFINE = re.compile(r"^\s*#\s*define\s+VM_MPX\s+(\w+)", re.M)
_ARCH_DEFINE = r"^\s*#\s*define\s+{name}\s+(\w+)"


def resolve_mpx(
    headers_dir: Optional[Path] = None,
    config: Optional[Dict[str, str]] = None,
    cpuinfo: Optional[str] = None,
) -> MpxResolution:
    """Resolve VM_MPX from the kernel's own mm.h and config (drgn's rule: probe, don't compare versions).

    The VM_MPX patch (3.19, shared/seeds) defines ``VM_MPX VM_ARCH_2`` for every x86 build;
    4.14 (df3735c5b40f "x86,mpx: make mpx depend on x86-64 to free up VMA flag") moved it to
    ``VM_HIGH_ARCH_4`` under CONFIG_X86_INTEL_MPX, else VM_NONE; 5.6 removed the config
    (45fc24e89b7c "x86/mpx: remove MPX from arch/x86") and a later patch the macro ("x86/mpx:
    remove MPX leftovers", posted April 2020; its commit not found).  Reading the header
    that matches the running kernel covers them all.
    """
    release = platform.release()
    if headers_dir is None:
        headers_dir = Path(f"/lib/modules/{release}/build")
    if config is None:
        config = kernel_config(release)
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    hardware = bool(re.search(r"^flags\s*:.*\bmpx\b", cpuinfo, re.M))
    mm_h = find_kernel_header(headers_dir, "include/linux/mm.h")
    if mm_h is None:
        return MpxResolution(0, f"no include/linux/mm.h under {headers_dir} (install the kernel headers to resolve VM_MPX)",
                             hardware)
    text = mm_h.read_text(errors="replace")
    match = _MPX_DEFINE.search(text)
    if not match:
        return MpxResolution(0, f"{mm_h} defines no VM_MPX (MPX was removed from Linux in 5.6-5.8)", hardware)
    target = match.group(1)
    if target == "VM_NONE":
        return MpxResolution(0, f"{mm_h}: VM_MPX is VM_NONE (CONFIG_X86_INTEL_MPX not set)", hardware)
    if target.startswith("VM_HIGH_ARCH_") and config and config.get("CONFIG_X86_INTEL_MPX") != "y":
        return MpxResolution(0, "VM_MPX needs CONFIG_X86_INTEL_MPX, which this kernel's config does not set", hardware)
    value = _resolve_macro(text, target)
    if value is None:
        return MpxResolution(0, f"{mm_h}: cannot evaluate VM_MPX = {target}", hardware)
    # The define under "#if defined(CONFIG_X86_INTEL_MPX)" is only live with the config.
    if target.startswith("VM_HIGH_ARCH_") and not config:
        evidence = f"{mm_h}: VM_MPX = {target} = {value:#x} (kernel config not readable; assumed set)"
    else:
        evidence = f"{mm_h}: VM_MPX = {target} = {value:#x}"
    return MpxResolution(value, evidence, hardware)


def find_kernel_header(build: Path, relative: str) -> Optional[Path]:
    """A header of the running kernel's tree.  Debian splits it: `build` holds the flavour's
    generated files and points at a sibling linux-headers-<version>-common for the rest."""
    candidates = [build, build.parent / "source"]
    try:
        real = build.resolve()
        candidates += sorted(real.parent.glob(real.name.rsplit("-", 2)[0] + "*-common"))
    except OSError:
        pass
    for base in candidates:
        path = base / relative
        if path.is_file():
            return path
    return None


def _resolve_macro(text: str, name: str, depth: int = 0) -> Optional[int]:
    if depth > 4:
        return None
    if re.fullmatch(r"0x[0-9a-fA-F]+|\d+", name):
        return int(name, 0)
    bit = re.fullmatch(r"VM_HIGH_ARCH_(\d)", name)
    if bit:
        return 1 << (32 + int(bit.group(1)))
    match = re.search(_ARCH_DEFINE.format(name=re.escape(name)), text, re.M)
    if not match:
        return None
    return _resolve_macro(text, match.group(1), depth + 1)


@dataclass(frozen=True)
class TrackedFlags:
    """The mask traced in the kernel, with the names and smaps mnemonics it stands for."""

    mask: int
    names: Tuple[str, ...]
    mnemonics: Tuple[str, ...]

    def describe(self) -> str:
        return f"{'|'.join(self.names)} ({self.mask:#x})"

    def to_json(self) -> Dict[str, object]:
        return {"mask": self.mask, "names": list(self.names), "mnemonics": list(self.mnemonics)}


def _lookup(name: str) -> Optional[FlagSpec]:
    key = name.strip()
    for spec in KNOWN_FLAGS:
        if key.upper() in (spec.name, spec.name[3:]) or key.lower() == spec.mnemonic:
            return spec
    return None


def mnemonics_for_mask(mask: int) -> Tuple[str, ...]:
    return tuple(spec.mnemonic for spec in KNOWN_FLAGS if spec.value & mask)


def resolve_flags(
    names: Sequence[str],
    mask: Optional[int],
    mpx: Optional[MpxResolution] = None,
) -> TrackedFlags:
    """Turn ``--flag``/``--mask`` into one mask; with neither, the ``mpx`` profile."""
    if not names and mask is None:
        names = ["mpx"]
    total = 0
    labels: List[str] = []
    mnems: List[str] = []
    for raw in names:
        if raw.strip().lower() in ("mpx", "vm_mpx", "mp"):
            res = mpx if mpx is not None else resolve_mpx()
            if not res.available:
                raise FlagError(
                    "this kernel has no MPX bounds-table flag (VM_MPX): "
                    f"{res.evidence}. Intel MPX was removed from Linux in 5.6, so there is nothing to trace. "
                    "Trace another flag instead, e.g. `--flag VM_LOCKED`, `--flag VM_NORESERVE`, "
                    "`--flag VM_SHADOW_STACK`, or `--mask 0xHEX` (`mpxtrace doctor` lists what this kernel offers)."
                )
            total |= res.value
            labels.append("VM_MPX")
            mnems.append(MPX_MNEMONIC)
            continue
        spec = _lookup(raw)
        if spec is None:
            known = ", ".join(f"{s.name}/{s.mnemonic}" for s in KNOWN_FLAGS)
            raise FlagError(f"unknown flag {raw!r}: use one of mpx, {known}, or --mask 0xHEX")
        total |= spec.value
        labels.append(spec.name)
        mnems.append(spec.mnemonic)
    if mask is not None:
        if mask <= 0 or mask >= 1 << 64:
            raise FlagError(f"--mask {mask:#x} is not a non-zero 64-bit vm_flags mask")
        total |= mask
        labels.append(f"{mask:#x}")
        mnems.extend(m for m in mnemonics_for_mask(mask) if m not in mnems)
    return TrackedFlags(total, tuple(labels), tuple(dict.fromkeys(mnems)))


def parse_mask(text: str) -> int:
    try:
        return int(text, 16) if not text.lower().startswith("0x") else int(text, 0)
    except ValueError:
        raise FlagError(f"--mask {text!r} is not hexadecimal (example: --mask 0x2000)") from None
