"""Fast host-side tests of the kernel lab's pure parts (no QEMU, no network)."""

from __future__ import annotations

import dataclasses
import shlex
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Dict, Optional

import pytest

from mpxtrace.lab import KERNELS, LabError, get_kernel
from mpxtrace.lab.aptstate import sources_lines
from mpxtrace.lab.control import dep_names, parse_depends, parse_stanzas, python_minor
from mpxtrace.lab.disks import dump_ext4, make_ext4, mbr_bytes, partuuid
from mpxtrace.lab.guest import Markers, STUB_SCRIPT, parse_console, run_init_script, stub_failure
from mpxtrace.lab.image import RECIPE_VERSION, cache_key
from mpxtrace.lab.mirror import pick_mirrors, source_uris
from mpxtrace.lab.qemu import kernel_cmdline, kvm_usable, qemu_argv
from mpxtrace.lab.resolve import Resolved, resolve_kernel

# --- recorded `apt-cache show --no-all-versions` output -------------------------------

BOOKWORM = """\
Package: linux-image-cloud-amd64
Source: linux-signed-amd64 (6.1.192+2)
Version: 6.1.192-2
Installed-Size: 13
Depends: linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)
Description: Linux for x86-64 cloud (meta-package)

Package: linux-image-6.1.0-56-cloud-amd64
Version: 6.1.192-2
Depends: kmod, linux-base (>= 4.3~), initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool
Description: Linux 6.1 for x86-64 cloud
 A second description line.

Package: linux-headers-6.1.0-56-cloud-amd64
Version: 6.1.192-2
Depends: linux-headers-6.1.0-56-common (= 6.1.192-2), linux-kbuild-6.1 (= 6.1.192-2), gcc-12

Package: python3-bpfcc
Version: 0.26.0+ds-1
Depends: libbpfcc (>= 0.26.0+ds-1), python3:any

Package: python3
Version: 3.11.2-1+b1
Depends: python3.11 (>= 3.11.2-1~), libpython3-stdlib (= 3.11.2-1+b1)
"""

SID = """\
Package: linux-image-cloud-amd64
Version: 7.2.13-1
Depends: linux-base-cloud-amd64 (= 7.2.13-1), linux-image-7.2.13+deb14-cloud-amd64 (= 7.2.13-1)

Package: linux-image-7.2.13+deb14-cloud-amd64
Version: 7.2.13-1
Depends: dracut | initramfs-tools (>= 0.120+deb8u2) | linux-initramfs-tool, linux-base-7.2.13+deb14-cloud-amd64 (= 7.2.13-1), linux-binary-7.2.13+deb14-cloud-amd64 (= 7.2.13-1), linux-modules-7.2.13+deb14-cloud-amd64 (= 7.2.13-1)

Package: linux-binary-7.2.13+deb14-cloud-amd64
Version: 7.2.13-1
Depends: linux-base-7.2.13+deb14-cloud-amd64 (= 7.2.13-1)

Package: linux-headers-7.2.13+deb14-cloud-amd64
Version: 7.2.13-1
Depends: gcc-16-for-host, linux-base (>= 4.12~)

Package: python3-bpfcc
Version: 0.37.0+ds-8
Depends: libbpfcc (>= 0.37.0+ds-8), python3:any

Package: python3
Version: 3.14.8-1
Depends: python3.14 (>= 3.14.8), libpython3-stdlib (= 3.14.8-1)
"""


def shower(text: str, overrides: Optional[Dict[str, Optional[Dict[str, str]]]] = None):
    db = {s["Package"]: s for s in parse_stanzas(text)}
    db.update(overrides or {})
    return lambda name: db.get(name)


def test_parse_stanzas_joins_continuations_and_splits_on_blank_lines() -> None:
    stanzas = parse_stanzas(BOOKWORM)
    assert [s["Package"] for s in stanzas] == [
        "linux-image-cloud-amd64", "linux-image-6.1.0-56-cloud-amd64",
        "linux-headers-6.1.0-56-cloud-amd64", "python3-bpfcc", "python3"]
    assert stanzas[1]["Description"] == "Linux 6.1 for x86-64 cloud\nA second description line."


def test_parse_depends_keeps_alternatives_and_strips_arch() -> None:
    deps = parse_depends("a (= 1) | b, c:any (>= 2~) [amd64], d")
    assert deps == [[("a", "= 1"), ("b", "")], [("c", ">= 2~")], [("d", "")]]
    assert dep_names({"Depends": "x | y, z"}) == ["x", "y", "z"]


@pytest.mark.parametrize("version,minor", [("3.11.2-1+b1", "3.11"), ("3.9.2-3", "3.9"),
                                           ("3.14.8-1", "3.14"), ("1:3.13.5-1", "3.13")])
def test_python_minor(version: str, minor: str) -> None:
    assert python_minor(version) == minor


def test_resolve_bookworm_kernel_from_metapackage() -> None:
    r = resolve_kernel(KERNELS["6.1"], shower(BOOKWORM))
    assert r.release == "6.1.0-56-cloud-amd64"
    assert r.image_package == r.vmlinuz_package == "linux-image-6.1.0-56-cloud-amd64"
    assert r.vmlinuz_path == "boot/vmlinuz-6.1.0-56-cloud-amd64"
    assert (r.headers_package, r.headers_version) == ("linux-headers-6.1.0-56-cloud-amd64", "6.1.192-2")
    assert (r.bcc_version, r.python_version) == ("0.26.0+ds-1", "3.11")


def test_resolve_sid_uses_split_linux_binary_package() -> None:
    r = resolve_kernel(KERNELS["7.2"], shower(SID))
    assert r.release == "7.2.13+deb14-cloud-amd64"
    assert r.vmlinuz_package == "linux-binary-7.2.13+deb14-cloud-amd64"
    assert r.vmlinuz_path == "usr/lib/modules/7.2.13+deb14-cloud-amd64/vmlinuz"
    assert r.python_version == "3.14"


def test_resolve_rejects_headers_of_another_build() -> None:
    stale = {"Package": "linux-headers-6.1.0-56-cloud-amd64", "Version": "6.1.190-1"}
    with pytest.raises(LabError, match="does not match"):
        resolve_kernel(KERNELS["6.1"], shower(BOOKWORM, {stale["Package"]: stale}))


def test_resolve_requires_headers_and_metapackage() -> None:
    with pytest.raises(LabError, match="linux-headers-6.1.0-56-cloud-amd64"):
        resolve_kernel(KERNELS["6.1"], shower(BOOKWORM, {"linux-headers-6.1.0-56-cloud-amd64": None}))
    with pytest.raises(LabError, match="linux-image-cloud-amd64"):
        resolve_kernel(KERNELS["6.1"], shower(BOOKWORM, {"linux-image-cloud-amd64": None}))


def test_resolved_round_trips_through_manifest_dict() -> None:
    r = resolve_kernel(KERNELS["7.2"], shower(SID))
    assert Resolved.from_dict(r.to_dict()) == r


# --- kernels, mirrors, sources ---------------------------------------------------------

def test_kernel_table_and_aliases() -> None:
    assert set(KERNELS) == {"5.10", "6.1", "6.12", "7.2"}
    assert [KERNELS[k].suite for k in ("5.10", "6.1", "6.12", "7.2")] == [
        "bullseye", "bookworm", "trixie", "sid"]
    assert get_kernel("sid") is KERNELS["7.2"] and get_kernel("newest") is KERNELS["7.2"]
    with pytest.raises(KeyError, match="unknown lab kernel"):
        get_kernel("4.19")


def test_sources_lines_add_security_except_for_sid() -> None:
    mirrors = ("http://m.example/debian", "http://m.example/debian-security")
    assert sources_lines(KERNELS["5.10"], mirrors) == [
        "deb http://m.example/debian bullseye main",
        "deb http://m.example/debian-security bullseye-security main"]
    assert sources_lines(KERNELS["7.2"], mirrors, Path("/k.gpg")) == [
        "deb [signed-by=/k.gpg] http://m.example/debian sid main"]


def test_mirror_detection_from_deb822_and_one_line_sources() -> None:
    deb822 = ("Types: deb\n# http://snapshot.debian.org/archive/debian/2025\n"
              "URIs: http://mirror.local/debian/\nSuites: bookworm\n\n"
              "Types: deb\nURIs: http://mirror.local/debian-security\nSuites: bookworm-security\n")
    oneline = "deb [arch=amd64] https://packages.example.com/apt stable main\n"
    uris = source_uris([oneline, deb822])
    assert uris == ["https://packages.example.com/apt", "http://mirror.local/debian/",
                    "http://mirror.local/debian-security"]
    assert pick_mirrors(uris) == ("http://mirror.local/debian", "http://mirror.local/debian-security")
    assert pick_mirrors(["http://x/debian"]) == ("http://x/debian", "http://x/debian-security")


# --- cache key -------------------------------------------------------------------------

def test_cache_key_is_stable_and_changes_with_every_version() -> None:
    r = resolve_kernel(KERNELS["6.1"], shower(BOOKWORM))
    key = cache_key(r)
    assert key == cache_key(dataclasses.replace(r)) and len(key) == 16
    for field, value in [("image_version", "6.1.193-1"), ("headers_version", "6.1.193-1"),
                         ("bcc_version", "0.26.0+ds-2"), ("python_package_version", "3.11.2-2"),
                         ("release", "6.1.0-57-cloud-amd64"), ("image_package", "linux-image-x"),
                         ("vmlinuz_package", "linux-binary-x"), ("suite", "trixie")]:
        assert cache_key(dataclasses.replace(r, **{field: value})) != key, field
    assert cache_key(r, RECIPE_VERSION + 1) != key


# --- guest scripts and console parsing ---------------------------------------------------

NASTY = ["python3", "-c", "print('it''s'); import sys; sys.exit(0)", "$(reboot)", "a b\nc", "`x`;&|"]


def test_run_init_script_quotes_argv_and_env() -> None:
    m = Markers("abc123")
    script = run_init_script(NASTY, m, {"MPX_X": "v a'l$(id)", "EMPTY": ""})
    # The command follows the BEGIN marker; shell-splitting it must give argv back.
    command = script.split(f"echo {m.begin}\n", 1)[1].split(" </dev/null\nrc=$?", 1)[0]
    assert shlex.split(command) == NASTY
    assert "export MPX_X='v a'\"'\"'l$(id)'" in script and "export EMPTY=''" in script


def test_run_init_script_mounts_and_markers() -> None:
    m = Markers("n0nce")
    script = run_init_script(["true"], m)
    assert script.startswith("#!/bin/sh\n")
    for needle in ["mount -t proc", "mount -t tmpfs tmpfs /tmp", "mount -t securityfs",
                   "mount -t debugfs debugfs /sys/kernel/debug",
                   "mount -t tracefs tracefs /sys/kernel/tracing", "LABEL=mpxproj /mnt/project",
                   "ulimit -l unlimited", "PYTHONPATH=/mnt/project:/opt/mpxtrace-deps",
                   "cd /mnt/project", "echo o > /proc/sysrq-trigger"]:
        if needle == "mount -t proc":
            assert "mount -t proc proc /proc" in STUB_SCRIPT
        else:
            assert needle in script, needle
    order = [script.index(s) for s in (m.release, m.begin, "\ntrue ", m.end, m.exit, "sysrq-trigger")]
    assert order == sorted(order)


def test_run_init_script_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        run_init_script([], Markers("x"))
    with pytest.raises(ValueError):
        run_init_script(["true"], Markers("x"), {"BAD-NAME": "1"})
    with pytest.raises(ValueError):
        run_init_script(["true"], Markers("x"), {"A=B": "1"})


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX shell")
def test_generated_command_line_really_runs_argv_verbatim(tmp_path: Path) -> None:
    """Run the command part of the script with a fake argv[0] that dumps its arguments."""
    dumper = tmp_path / "dump"
    dumper.write_text("#!/bin/sh\nfor a; do printf '%s\\0' \"$a\"; done\n")
    dumper.chmod(0o755)
    argv = [str(dumper)] + NASTY[1:]
    script = run_init_script(argv, Markers("q"), {"MPX_ENV": "x y"})
    line = script.split("echo MPXLAB-q-BEGIN\n", 1)[1].split("\nrc=$?", 1)[0]
    out = subprocess.run(["sh", "-c", line], stdout=subprocess.PIPE, check=True).stdout
    assert out.split(b"\0")[:-1] == [a.encode() for a in NASTY[1:]]


def console(nonce: str, body: str, exit_line: bool = True, end: bool = True) -> str:
    text = ("[    1.0] Run /sbin/mpxlab-init as init process\r\n"
            f"MPXLAB-{nonce}-RELEASE 6.1.0-56-cloud-amd64\r\nMPXLAB-{nonce}-BEGIN\r\n{body}")
    if end:
        text += f"\r\nMPXLAB-{nonce}-END\r\n"
    if exit_line:
        text += f"MPXLAB-{nonce}-EXIT 3\r\n[    9.1] sysrq: Power Off\r\n"
    return text


def test_parse_console_extracts_output_release_and_status() -> None:
    res = parse_console(console("n1", "line one\r\nline two\r\n"), Markers("n1"))
    assert (res.kernel_release, res.exit_code, res.complete) == ("6.1.0-56-cloud-amd64", 3, True)
    assert res.output == "line one\nline two\n"


def test_parse_console_output_without_final_newline_and_empty_output() -> None:
    assert parse_console(console("n2", "no newline"), Markers("n2")).output == "no newline"
    empty = parse_console(console("n3", ""), Markers("n3"))
    assert (empty.output, empty.exit_code) == ("", 3)


def test_parse_console_missing_markers_give_none() -> None:
    res = parse_console(console("n4", "partial\r\n", exit_line=False, end=False), Markers("n4"))
    assert res.exit_code is None and not res.complete and res.output == "partial\n"
    nothing = parse_console("[ 0.1] Kernel panic - not syncing: VFS\r\n", Markers("n4"))
    assert (nothing.exit_code, nothing.kernel_release, nothing.output) == (None, None, "")


def test_parse_console_ignores_other_runs_markers() -> None:
    forged = "MPXLAB-other-EXIT 0\r\nMPXLAB-other-END\r\n"
    res = parse_console(console("mine", forged, exit_line=False), Markers("mine"))
    assert res.exit_code is None
    assert res.output == forged.replace("\r", "")


def test_stub_failure_detection() -> None:
    assert stub_failure("x\r\nMPXLAB-STUB-FAILED: no disk labelled mpxout\r\n") == \
        "MPXLAB-STUB-FAILED: no disk labelled mpxout"
    assert stub_failure(console("n", "ok")) is None


# --- qemu command line ------------------------------------------------------------------

def test_kvm_only_with_hardware_virtualisation() -> None:
    assert kvm_usable("processor : 0\nflags : fpu sse2 hypervisor\n") is False


def test_qemu_argv_boots_by_partuuid_and_protects_the_cached_image(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MPXTRACE_LAB_ACCEL", "tcg")
    argv = qemu_argv(Path("/c/vmlinuz"), Path("/c/root,1.img"), "0badcafe-01", "/sbin/mpxlab-init",
                     [("mpxproj", Path("/r/p.img")), ("mpxout", Path("/r/o.img"))])
    assert argv[0] == "qemu-system-x86_64" and "-nographic" in argv and "-no-reboot" in argv
    assert argv[argv.index("-accel") + 1] == "tcg"
    append = argv[argv.index("-append") + 1]
    assert append == kernel_cmdline("0badcafe-01", "/sbin/mpxlab-init")
    assert "root=PARTUUID=0badcafe-01" in append and "panic=-1" in append and "console=ttyS0" in append
    drives = [argv[i + 1] for i, a in enumerate(argv) if a == "-drive"]
    assert drives[0] == "file=/c/root,,1.img,if=none,id=mpxroot,format=raw,snapshot=on"
    assert all("snapshot" not in d for d in drives[1:]) and len(drives) == 3
    assert sum(a.startswith("nvme,") for a in argv) == 3


# --- disks -------------------------------------------------------------------------------

def test_mbr_layout() -> None:
    mbr = mbr_bytes(0x1234ABCD, 2048, 10000)
    assert len(mbr) == 512 and mbr[510:] == b"\x55\xaa"
    assert struct.unpack_from("<I", mbr, 440)[0] == 0x1234ABCD
    assert mbr[446 + 4] == 0x83 and struct.unpack_from("<II", mbr, 446 + 8) == (2048, 10000)
    assert partuuid(0x1234ABCD) == "1234abcd-01" and partuuid(0xAB) == "000000ab-01"


@pytest.mark.skipif(not (shutil.which("mkfs.ext4") and shutil.which("debugfs")), reason="needs e2fsprogs")
def test_ext4_image_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha\n")
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)) * 64)
    make_ext4(src, tmp_path / "d.img", "mpxout", 8 << 20, features="^has_journal")
    dest = tmp_path / "dest"
    dump_ext4(tmp_path / "d.img", dest)
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == ["a.txt", "sub", "sub/b.bin"]
    assert (dest / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 64


def test_resolution_is_memoised_until_the_lists_change(tmp_path: Path) -> None:
    from mpxtrace.lab.image import _resolve

    class FakeApt:
        root = tmp_path
        version: Optional[float] = 1.0
        calls = 0

        def lists_version(self) -> Optional[float]:
            return self.version

        def show(self, name: str) -> Optional[Dict[str, str]]:
            self.calls += 1
            return shower(BOOKWORM)(name)

    apt = FakeApt()
    first = _resolve(KERNELS["6.1"], apt)  # type: ignore[arg-type]
    calls = apt.calls
    assert calls > 0 and _resolve(KERNELS["6.1"], apt) == first  # type: ignore[arg-type]
    assert apt.calls == calls  # served from the memo
    apt.version = 2.0  # lists refreshed: resolve again
    assert _resolve(KERNELS["6.1"], apt) == first  # type: ignore[arg-type]
    assert apt.calls == 2 * calls


# --- a boot that dies before the command begins is tried once more ------------------------------
PANIC_AT_BOOT = ("[    1.58] Run /sbin/mpxlab-init as init process\n"
                 "[    1.90] Oops: int3: 0000 [#1] SMP NOPTI\n"
                 "[    1.91] Kernel panic - not syncing: Fatal exception in interrupt\n")


def _fake_boots(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, consoles: "list[str]") -> "list[str]":
    """run_in_guest with QEMU and the disks faked: boot N prints consoles[N] ({nonce} filled in)."""
    from types import SimpleNamespace

    from mpxtrace.lab import vm
    nonces = iter(f"{n:08x}{0:08x}" for n in range(1, 100))
    monkeypatch.setattr(vm.secrets, "token_hex", lambda size: next(nonces))
    monkeypatch.setattr(vm, "cache_root", lambda: tmp_path)
    monkeypatch.setattr(vm, "ensure_image", lambda key: SimpleNamespace(vmlinuz=tmp_path / "k", rootfs=tmp_path / "r",
                                                                       root_partuuid="0badcafe-01"))
    monkeypatch.setattr(vm, "stage_tree", lambda src, dst, excludes: dst.mkdir(parents=True))
    monkeypatch.setattr(vm, "tree_size", lambda tree: (0, 0))
    monkeypatch.setattr(vm, "make_ext4", lambda *a, **k: None)
    monkeypatch.setattr(vm, "qemu_argv", lambda *a, **k: ["qemu-system-x86_64"])
    booted: "list[str]" = []

    def run_qemu(cmd: "list[str]", console_log: Path, qemu_stderr: Path, timeout: float, echo: object) -> "tuple[int, bool]":
        nonce = f"{len(booted) + 1:08x}{0:08x}"
        booted.append(nonce)
        console_log.write_text(consoles[len(booted) - 1].format(nonce=nonce))
        qemu_stderr.write_text("")
        return 0, "TIMEOUT" in consoles[len(booted) - 1]
    monkeypatch.setattr(vm, "run_qemu", run_qemu)
    return booted


def _ran(exit_code: int) -> str:
    return ("MPXLAB-{nonce}-RELEASE 7.2.13\nMPXLAB-{nonce}-BEGIN\nhello\nMPXLAB-{nonce}-END\n"
            f"MPXLAB-{{nonce}}-EXIT {exit_code}\n")


def test_a_boot_that_dies_before_the_command_begins_is_tried_once_more(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    from mpxtrace.lab.vm import run_in_guest
    booted = _fake_boots(monkeypatch, tmp_path, [PANIC_AT_BOOT, _ran(0)])
    result = run_in_guest("7.2", ["true"], project_dir=tmp_path)
    assert len(booted) == 2 and result.ok and result.output == "hello"
    assert len(result.failed_boots) == 1 and "Oops" not in result.failed_boots[0]
    assert "the guest kernel panicked ([    1.91] Kernel panic" in result.failed_boots[0]


@pytest.mark.parametrize("consoles, boots", [
    ([PANIC_AT_BOOT, PANIC_AT_BOOT, _ran(0)], 2),  # twice: the kernel is broken, say so
    (["MPXLAB-{nonce}-BEGIN\nstarted\n" + PANIC_AT_BOOT, _ran(0)], 1),  # the command ran: its failure stands
    (["TIMEOUT", _ran(0)], 1),  # a hang costs the whole timeout: not paid twice
    ([_ran(3), _ran(0)], 1),  # a command that failed is not run again
])
def test_only_a_boot_that_died_before_the_command_is_tried_again(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, consoles: "list[str]", boots: int) -> None:
    from mpxtrace.lab.vm import run_in_guest
    booted = _fake_boots(monkeypatch, tmp_path, consoles)
    result = run_in_guest("7.2", ["true"], project_dir=tmp_path)
    assert len(booted) == boots and not result.ok
    if boots == 2:
        assert result.error is not None and "after 1 boot(s) that failed the same way" in result.error


def test_the_lab_command_says_when_a_boot_was_tried_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    from mpxtrace.lab.__main__ import main
    _fake_boots(monkeypatch, tmp_path, [PANIC_AT_BOOT, _ran(0)])
    assert main(["--kernel", "7.2", "--project", str(tmp_path), "--", "true"]) == 0
    err = capsys.readouterr().err
    assert "an earlier boot died before the command began, and was booted again: the guest kernel panicked" in err
