"""Boot each lab kernel for real and check the guest is fit for tracing.

One boot per kernel (module-scoped fixture) runs tests/lab/guest_probe.py; the tests
below assert on its report.  Missing QEMU or a failed boot is a FAILURE, never a skip:
these tests exist to prove the lab works on this machine.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Dict

import pytest

from mpxtrace.lab import KERNELS, GuestResult, LabError, run_in_guest

pytestmark = pytest.mark.lab

PROJECT = Path(__file__).resolve().parents[2]
PROBE = "tests/lab/guest_probe.py"
# Python of each suite's guest: a wrong suite behind a key would show up here.
EXPECTED_PYTHON = {"5.10": "3.9", "6.1": "3.11", "6.12": "3.13"}


def _require_host_tools() -> None:
    missing = [t for t in ("qemu-system-x86_64", "timeout", "debootstrap", "mkfs.ext4", "debugfs",
                           "unshare") if shutil.which(t) is None]
    if missing:
        pytest.fail(f"KERNEL LAB CANNOT RUN: missing host tools {missing} "
                    "(apt-get install qemu-system-x86 debootstrap e2fsprogs)", pytrace=False)
    if os.geteuid() != 0:
        pytest.fail("KERNEL LAB CANNOT RUN: building guest images needs root", pytrace=False)


@pytest.fixture(scope="module", params=list(KERNELS))
def probe(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    _require_host_tools()
    kernel = request.param
    out = tmp_path_factory.mktemp(f"out-{kernel}")
    try:
        result = run_in_guest(kernel, ["sh", "-c", f"uname -r && python3 {PROBE}"],
                              project_dir=PROJECT, timeout=900, out_dir=out)
    except LabError as exc:
        pytest.fail(f"KERNEL LAB FAILED for {kernel}: {exc}", pytrace=False)
    if result.exit_code is None:
        pytest.fail(f"KERNEL LAB FAILED for {kernel}: {result.error}\noutput so far:\n"
                    f"{result.output[-3000:]}", pytrace=False)
    assert result.exit_code == 0, f"guest command failed:\n{result.output}\n{result.console_log}"
    line = next((l for l in result.output.splitlines() if l.startswith("PROBE-JSON ")), None)
    assert line, f"no probe report in output:\n{result.output}"
    report = json.loads(line[len("PROBE-JSON "):])
    report["_result"] = result
    report["_kernel"] = kernel
    report["_out"] = out
    return report


def test_boots_the_resolved_kernel(probe: Dict[str, Any]) -> None:
    result: GuestResult = probe["_result"]
    assert result.kernel == probe["_kernel"]
    assert result.kernel_release and result.kernel_release.endswith("-cloud-amd64")
    # `uname -r` ran as the first command: its output is the first line.
    assert result.output.splitlines()[0] == result.kernel_release == probe["uname_r"]
    if probe["_kernel"] != "7.2":  # sid moves: only its key is fixed
        assert result.kernel_release.startswith(probe["_kernel"] + ".")
    assert result.console_log.is_file()
    assert 0 < result.seconds < 900


def test_python_and_dependencies(probe: Dict[str, Any]) -> None:
    expected = EXPECTED_PYTHON.get(probe["_kernel"])
    if expected:
        assert probe["python"].startswith(expected + ".")
    assert "deps_error" not in probe, probe.get("deps_error")
    assert all(d == "/opt/mpxtrace-deps" for d in probe["deps_from"]), probe["deps_from"]
    if probe["python"].startswith("3.9."):
        assert probe["click"] == "8.1.8"  # newest click for Python 3.9


def test_out_dir_copied_back(probe: Dict[str, Any]) -> None:
    copied = json.loads((probe["_out"] / "probe.json").read_text())
    assert copied["uname_r"] == probe["uname_r"]
    assert not (probe["_out"] / ".mpxlab").exists()


def test_kprobes_usable(probe: Dict[str, Any]) -> None:
    assert probe["lockdown"] is None or "[none]" in probe["lockdown"]
    assert probe["kprobes_dir_readable"] or probe["filter_functions_readable"]
    assert probe["symbols"]["mmap_region"]["kallsyms"]
    assert probe["symbols"]["mmap_region"]["filter_functions"] is True


def test_a_hung_kernel_ends_the_guest_with_every_backtrace(probe: Dict[str, Any]) -> None:
    """The run's init arms the soft-lockup watchdog to panic (which ends QEMU) and to replay the
    whole kernel log, backtraces of every CPU included, past the quiet printk level."""
    assert probe["watchdog"] == {"watchdog_thresh": "30", "softlockup_panic": "1",
                                 "softlockup_all_cpu_backtrace": "1", "panic_print": "32"}


def test_bcc_kprobe_counts_mmaps(probe: Dict[str, Any]) -> None:
    bcc = probe["bcc"]
    assert "error" not in bcc, bcc.get("error")
    assert bcc["kprobe_mmap_region_count"] >= 50
    assert bcc["support_kfunc"] is True
