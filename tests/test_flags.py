from __future__ import annotations

from pathlib import Path

import pytest

from mpxtrace.flags import FlagError, MPX_BIT25, MPX_BIT36, parse_mask, resolve_flags, resolve_mpx

MM_319 = """
#define VM_ARCH_1	0x01000000	/* Architecture-specific flag */
#define VM_ARCH_2	0x02000000
#if defined(CONFIG_X86)
/* MPX specific bounds table or bounds directory */
# define VM_MPX		VM_ARCH_2
#endif
"""
MM_414 = """
#define VM_HIGH_ARCH_BIT_4	36	/* bit only usable on 64-bit architectures */
#define VM_HIGH_ARCH_4	BIT(VM_HIGH_ARCH_BIT_4)
#if defined(CONFIG_X86_INTEL_MPX)
/* MPX specific bounds table or bounds directory */
# define VM_MPX		VM_HIGH_ARCH_4
#else
# define VM_MPX		VM_NONE
#endif
"""


def tree(tmp_path: Path, text: str) -> Path:
    (tmp_path / "include/linux").mkdir(parents=True)
    (tmp_path / "include/linux/mm.h").write_text(text)
    return tmp_path


def test_mpx_bit25_on_319_style_headers(tmp_path: Path) -> None:
    res = resolve_mpx(tree(tmp_path, MM_319), config={"CONFIG_X86": "y"}, cpuinfo="flags\t: fpu mpx sse")
    assert res.value == MPX_BIT25 and res.available and res.hardware


def test_mpx_bit36_on_414_style_headers_with_config(tmp_path: Path) -> None:
    res = resolve_mpx(tree(tmp_path, MM_414), config={"CONFIG_X86_INTEL_MPX": "y"}, cpuinfo="")
    assert res.value == MPX_BIT36 and not res.hardware


def test_mpx_absent_without_config_on_414(tmp_path: Path) -> None:
    res = resolve_mpx(tree(tmp_path, MM_414), config={"CONFIG_X86": "y"}, cpuinfo="")
    assert res.value == 0 and "CONFIG_X86_INTEL_MPX" in res.evidence


def test_mpx_absent_on_modern_headers_is_a_loud_error(tmp_path: Path) -> None:
    res = resolve_mpx(tree(tmp_path, "#define VM_LOCKED 0x00002000\n"), config={}, cpuinfo="")
    assert not res.available
    with pytest.raises(FlagError) as err:
        resolve_flags([], None, mpx=res)
    assert "--flag VM_LOCKED" in str(err.value) and "5.6" in str(err.value)


def test_mpx_without_headers(tmp_path: Path) -> None:
    res = resolve_mpx(tmp_path / "missing", config={}, cpuinfo="")
    assert not res.available and "headers" in res.evidence


def test_names_mnemonics_and_masks_combine() -> None:
    t = resolve_flags(["VM_LOCKED", "nr", "shadow_stack"], None)
    assert t.mask == 0x2000 | 0x200000 | 0x2000000000
    assert t.mnemonics == ("lo", "nr", "ss")
    t2 = resolve_flags([], parse_mask("0x2000"))
    assert t2.mask == 0x2000 and t2.mnemonics == ("lo",)


@pytest.mark.parametrize("bad", ["VM_NOPE", "zz"])
def test_unknown_flag_says_what_to_use(bad: str) -> None:
    with pytest.raises(FlagError, match="--mask"):
        resolve_flags([bad], None)


def test_bad_masks() -> None:
    with pytest.raises(FlagError):
        parse_mask("xyz")
    with pytest.raises(FlagError):
        resolve_flags([], 0)
