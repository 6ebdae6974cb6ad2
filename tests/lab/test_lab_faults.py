"""A real trace ended by SIGINT and SIGTERM in the lab (issue 8 item 4): the summary is printed,
the log ends with an `end` record and replays with `mpxtrace report`, no kprobe or BPF program
of the tracer is left in the kernel, and the exit status is 0."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

from guestreport import ROOT, GuestRuns

MARK = "=====MPXTRACE-FAULTS-JSON====="
KERNELS = ["5.10", "6.1", "6.12", "7.2"]
RUNS = [("SIGINT", "auto"), ("SIGTERM", "auto"), ("SIGINT", "kprobe")]

guest_run = GuestRuns("faults", ["python3", "tests/lab/faults_guest.py"], MARK, 1200)


def _records(path: Path) -> List[Dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.lab
@pytest.mark.parametrize("signame,attach", RUNS)
@pytest.mark.parametrize("kernel", KERNELS)
def test_signal_ends_a_real_trace_cleanly(kernel: str, signame: str, attach: str,
                                          tmp_path_factory: pytest.TempPathFactory) -> None:
    report, out = guest_run(kernel, tmp_path_factory)
    run = next(r for r in report["runs"] if r["signal"] == signame and r["attach"] == attach)
    assert "error" not in run and not run.get("hung"), run
    assert run["workload"] == "mapped"
    assert run["exit"] == 0, run["stderr"]
    assert "mpxtrace summary: VM_NORESERVE" in run["stdout"], run["stdout"]
    assert "Traceback" not in run["stderr"], run["stderr"]
    # Something was attached (so the checks below can fail), and nothing of it is left.
    assert run["programs_attached"] > 0
    if attach == "kprobe":
        assert run["kprobes_attached"] > 0
    assert run["kprobes_left"] == [], run["kprobes_left"]
    assert run["programs_left"] == [], run["programs_left"]
    # The log was finished: an end record last, and the capture replays on the host.
    log = out / run["log"]
    records = _records(log)
    assert records[0]["type"] == "header" and records[-1]["type"] == "end"
    replay = subprocess.run([sys.executable, "-m", "mpxtrace", "report", "--json", "--strict", str(log)],
                            cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert replay.returncode == 0, replay.stderr
    summary = json.loads(replay.stdout.splitlines()[-1])
    assert summary["complete"] is True
    assert summary["totals"]["allocations"] >= 51  # the held map and the 50 mapped and freed
    assert summary["totals"]["frees"] >= 50
