"""Programs we did not write, traced for a flag only madvise() sets, in the lab: glibc's
allocator asking for transparent huge pages (glibc.malloc.hugetlb=1), and stress-ng's vm
stressor (--vm-madvise hugepage) and madvise stressor, traced with `--flag VM_HUGEPAGE`; at every
checkpoint (the load stopped) each process's VM_HUGEPAGE VMAs in the tracer's picture equal
/proc/PID/smaps, VMA by VMA, and the log replays into the same summary.
About a minute of guest time (tests/lab/hugepage_guest.py) in the overload test's boot."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest

from guestreport import LOADED_BOOT, assert_log_replays_to

MARK = "=====MPXTRACE-HUGEPAGE-JSON====="
KERNELS = ["5.10", "6.1", "6.12", "7.2"]


def guest_run(kernel: str, tmp_path_factory: pytest.TempPathFactory) -> Tuple[Dict[str, Any], Path]:
    return LOADED_BOOT(kernel, tmp_path_factory, MARK)  # the boot of test_lab_overload.py, after its script


def _glibc_has_hugetlb_tunable(version: str) -> bool:
    """glibc.malloc.hugetlb came with glibc 2.35 (bullseye, the 5.10 guest, has 2.31)."""
    found = re.search(r"(\d+)\.(\d+)", version)
    return found is not None and (int(found.group(1)), int(found.group(2))) >= (2, 35)


@pytest.mark.lab
@pytest.mark.parametrize("kernel", KERNELS)
def test_madvised_huge_pages_of_real_programs_equal_smaps(kernel: str,
                                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    report, out = guest_run(kernel, tmp_path_factory)
    assert "error" not in report, report
    assert report["thp"] == "madvise", report  # what glibc's tunable needs
    checkpoints = report["checkpoints"]
    assert len(checkpoints) == 2, report
    for point in checkpoints:
        assert point["matched"], json.dumps(point)
    # there was flagged memory to compare, or this proves nothing (stress-ng's vm stressor unmaps
    # and maps again: a checkpoint may fall between the two)
    assert any(point["processes"] > 0 and point["smaps_vmas"] > 0 for point in checkpoints), checkpoints
    if _glibc_has_hugetlb_tunable(report["glibc"]):
        # glibc's allocator itself madvised memory (not only stress-ng)
        assert max(report["allocators_flagged"]) > 0, report
    assert report["tracer_exit"] == 0, report["stderr"]
    assert "Traceback" not in report["stderr"], report["stderr"]
    summary = report["summary"]
    assert summary["events"] > 0, summary
    assert_log_replays_to(summary, out / report["log"])
