"""Host side of every lab test: boot a kernel, run a guest script that prints one JSON
document between two marker lines, and return it (with the output directory the guest
filled).  A guest that printed no report fails the test with its exit, error and console."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from mpxtrace.lab import run_in_guest
from mpxtrace.lab.vm import GuestResult

ROOT = Path(__file__).resolve().parents[2]


def _report_in(result: GuestResult, kernel: str, mark: str, context: str = "") -> Dict[str, Any]:
    parts = result.output.split(mark)
    assert len(parts) >= 3, (f"no report from the {kernel} guest (exit {result.exit_code}, {result.error}); "
                             f"{context}console: {result.console_log}\n{result.output[-3000:]}")
    report: Dict[str, Any] = json.loads(parts[1])
    return report


def guest_json(kernel: str, argv: List[str], mark: str, out: Path, timeout: float,
               context: str = "") -> Tuple[Dict[str, Any], GuestResult]:
    """The report `argv` printed between `mark` lines in a `kernel` guest, and the run."""
    result = run_in_guest(kernel, argv, project_dir=ROOT, timeout=timeout, out_dir=out)
    return _report_in(result, kernel, mark, context), result


class GuestRuns:
    """One guest boot per kernel, shared by every test that asks for it: called with (kernel,
    tmp_path_factory), it runs `argv` on the first call for that kernel and gives every call the
    report printed between `mark` lines (or between another mark's, when `argv` runs several
    guest scripts one after another) and the output directory."""

    def __init__(self, name: str, argv: List[str], mark: str, timeout: float) -> None:
        self.name, self.argv, self.mark, self.timeout = name, argv, mark, timeout
        self._runs: Dict[str, Tuple[GuestResult, Path]] = {}

    def __call__(self, kernel: str, tmp_path_factory: pytest.TempPathFactory,
                 mark: Optional[str] = None) -> Tuple[Dict[str, Any], Path]:
        if kernel not in self._runs:
            out = tmp_path_factory.mktemp(f"{self.name}-{kernel}")
            self._runs[kernel] = (run_in_guest(kernel, self.argv, project_dir=ROOT, timeout=self.timeout,
                                               out_dir=out), out)
        result, out = self._runs[kernel]
        return _report_in(result, kernel, mark or self.mark, f"{self.name}: "), out


# The overload test's guest script and the huge-page one, in one boot per kernel (a boot costs
# about 45 s under TCG); each prints its own report.  Each test passes its own mark.
OVERLOAD_MARK = "=====MPXTRACE-OVERLOAD-JSON====="
LOADED_BOOT = GuestRuns("loaded", ["sh", "-c", "python3 tests/lab/overload_guest.py; "
                                                "python3 tests/lab/hugepage_guest.py"], OVERLOAD_MARK, 1500)


# what a log's replay must give exactly as the live tracer's summary did
SAME_IN_REPLAY = ("events", "lost_events", "lost_by_source", "totals", "processes", "histograms", "resyncs",
                  "histograms_complete", "timeline", "anomalies")


def assert_log_replays_to(summary: Dict[str, Any], log: Path) -> None:
    """`mpxtrace report --strict` of the guest's log gives the live summary."""
    replay = subprocess.run([sys.executable, "-m", "mpxtrace", "report", "--json", "--strict", str(log)],
                            cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert replay.returncode == 0, replay.stderr[-2000:]
    replayed = json.loads(replay.stdout.splitlines()[-1])
    assert {k: replayed[k] for k in SAME_IN_REPLAY} == {k: summary[k] for k in SAME_IN_REPLAY}
