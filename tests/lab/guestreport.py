"""Host side of every lab test: boot a kernel, run a guest script that prints one JSON
document between two marker lines, and return it (with the output directory the guest
filled).  A guest that printed no report fails the test with its exit, error and console."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from mpxtrace.lab import run_in_guest
from mpxtrace.lab.vm import GuestResult

ROOT = Path(__file__).resolve().parents[2]


def guest_json(kernel: str, argv: List[str], mark: str, out: Path, timeout: float,
               context: str = "") -> Tuple[Dict[str, Any], GuestResult]:
    """The report `argv` printed between `mark` lines in a `kernel` guest, and the run."""
    result = run_in_guest(kernel, argv, project_dir=ROOT, timeout=timeout, out_dir=out)
    parts = result.output.split(mark)
    assert len(parts) >= 3, (f"no report from the {kernel} guest (exit {result.exit_code}, {result.error}); "
                             f"{context}console: {result.console_log}\n{result.output[-3000:]}")
    report: Dict[str, Any] = json.loads(parts[1])
    return report, result


class GuestRuns:
    """One guest boot per kernel for a whole test module: called with (kernel,
    tmp_path_factory), it runs `argv` on the first call and gives every later test of that
    kernel the same report and output directory."""

    def __init__(self, name: str, argv: List[str], mark: str, timeout: float) -> None:
        self.name, self.argv, self.mark, self.timeout = name, argv, mark, timeout
        self._runs: Dict[str, Tuple[Dict[str, Any], Path]] = {}

    def __call__(self, kernel: str, tmp_path_factory: pytest.TempPathFactory) -> Tuple[Dict[str, Any], Path]:
        if kernel not in self._runs:
            out = tmp_path_factory.mktemp(f"{self.name}-{kernel}")
            report, _ = guest_json(kernel, self.argv, self.mark, out, self.timeout)
            self._runs[kernel] = (report, out)
        return self._runs[kernel]
