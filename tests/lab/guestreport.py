"""Host side of every lab test: boot a kernel, run a guest script that prints one JSON
document between two marker lines, and return it (with the output directory the guest
filled).  A guest that printed no report fails the test with its exit, error and console."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Tuple

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
