"""The tracer attached to real kernels (5.10, 6.1, 6.12, newest), checked against smaps.

One guest boot per kernel runs tests/lab/e2e_guest.py, which traces the workload in every
attach mode and buffer the kernel offers; the assertions here read its JSON report.
"""
from __future__ import annotations

import json
from typing import Any, Dict, List

import pytest

from guestreport import ROOT, guest_json

MARK = "=====MPXTRACE-E2E-JSON====="
KERNELS = ["5.10", "6.1", "6.12", "7.2"]

MODES: List[Dict[str, str]] = [
    {"flag": "VM_NORESERVE", "create": "noreserve", "role": "all", "attach": "fentry", "buffer": "ring"},
    {"flag": "VM_NORESERVE", "create": "noreserve", "role": "lifecycle", "attach": "kprobe", "buffer": "ring"},
    {"flag": "VM_NORESERVE", "create": "noreserve", "role": "lifecycle", "attach": "fentry", "buffer": "perf"},
    {"flag": "VM_NORESERVE", "create": "noreserve", "role": "lifecycle", "attach": "kprobe", "buffer": "perf"},
    # flag set at creation by MAP_LOCKED, and changed in place by mlock/munlock
    {"flag": "VM_LOCKED", "create": "locked", "role": "all", "attach": "auto", "buffer": "auto"},
    # -p: the workload starts first (seeded from smaps), the tracer ends when it exits
    {"flag": "VM_NORESERVE", "create": "noreserve", "role": "lifecycle", "attach": "auto", "buffer": "auto",
     "pid_filter": True},
    # structure offsets from the kernel headers instead of BTF (the path for kernels without BTF)
    {"flag": "VM_NORESERVE", "create": "noreserve", "role": "lifecycle", "attach": "kprobe", "buffer": "ring",
     "offsets": "headers"},
]

_reports: Dict[str, Dict[str, Any]] = {}


def guest_report(kernel: str, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    if kernel not in _reports:
        out = tmp_path_factory.mktemp(f"e2e-{kernel}")
        report, result = guest_json(kernel, ["python3", "tests/lab/e2e_guest.py", json.dumps(MODES)], MARK, out, 1500)
        _reports[kernel] = report
        _reports[kernel]["_console"] = str(result.console_log)
    return _reports[kernel]


def _run(report: Dict[str, Any], mode: Dict[str, str]) -> Dict[str, Any]:
    for run in report["runs"]:
        if all(run[k] == mode[k] for k in ("flag", "role", "attach", "buffer")) and \
                run.get("pid_filter", False) == mode.get("pid_filter", False) and \
                run.get("offsets", "auto") == mode.get("offsets", "auto"):
            assert "error" not in run, f"{run['error']}\n{run.get('stderr_tail', '')}\nconsole {report['_console']}"
            return run
    raise AssertionError(f"mode {mode} did not run")


@pytest.mark.lab
@pytest.mark.parametrize("kernel", KERNELS)
def test_doctor_in_guest_reports_kprobes_usable(kernel: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    report = guest_report(kernel, tmp_path_factory)
    checks = {c["name"]: c for c in report["doctor"]["checks"]}
    assert report["doctor"]["can_trace"] is True
    assert checks["kprobes"]["ok"] is True and checks["lockdown"]["ok"] is True
    assert checks["plan"]["ok"] is True


@pytest.mark.lab
@pytest.mark.parametrize("mode", MODES, ids=lambda m: f"{m['flag']}-{m['role']}-{m['attach']}-{m['buffer']}"
                         + ("-p" if m.get("pid_filter") else "") + ("-headers" if m.get("offsets") else ""))
@pytest.mark.parametrize("kernel", KERNELS)
def test_live_bytes_and_vmas_match_smaps(kernel: str, mode: Dict[str, str],
                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    run = _run(guest_report(kernel, tmp_path_factory), mode)
    if mode["attach"] in ("fentry", "kprobe"):
        used = {a["mode"] for a in run["attached"]["attach"]} - {"tracepoint"}  # syscall tracepoints: every mode
        assert mode["attach"] in used  # fentry mode still uses kprobes where fentry cannot attach (vma_merge)
        if mode["attach"] == "kprobe":
            assert used == {"kprobe"}
    if mode["buffer"] != "auto":
        assert run["attached"]["buffer"] == mode["buffer"]
    assert run["checks"], "the workload reached no checkpoint"
    mismatches = [(c["name"], pid, c["smaps"][pid], c["traced"][pid])
                  for c in run["checks"] for pid in c["smaps"] if c["smaps"][pid] != c["traced"][pid]]
    assert mismatches == [], f"tracer vs smaps [live_bytes, live_vmas]: {mismatches}"
    assert any(c["smaps"][p][0] > 0 for c in run["checks"] for p in c["smaps"]), "the flag never showed in smaps"
    assert run["workload_exit"] == 0
    if mode.get("pid_filter"):
        assert run["checks"][0]["name"] == "create" and run["seeded_bytes"] > 0, "pre-existing mapping not seeded"
        assert run["targets_exited"]["pids"] and run["tracer_exit"] == 0
        assert set(run["traced_pids"]) <= set(run["workload_pids"]), "-p let other processes through"
    else:
        assert run["left_live"] == [], "flagged memory still live after every workload process exited"
    assert run["summary"]["lost_events"] == 0
    assert run["summary"]["anomalies"] == []
    assert run["summary"]["complete"] is True


@pytest.mark.lab
@pytest.mark.parametrize("kernel", KERNELS)
def test_log_replays_to_identical_summary(kernel: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    report = guest_report(kernel, tmp_path_factory)
    for mode in MODES:
        run = _run(report, mode)
        assert run["tracer_exit"] == 0 and run["replay_exit"] == 0
        assert run["replay_identical"] is True, mode
        assert run["log_mode"] == "0o600"


@pytest.mark.lab
@pytest.mark.parametrize("kernel", KERNELS)
def test_lab_demo_shows_interval_reports_and_summary(kernel: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    demo = guest_report(kernel, tmp_path_factory)["demo"]
    out = demo["output"]
    assert demo["exit"] == 0, out[-3000:]
    assert out.count("PID COMM") >= 3, "fewer than three interval reports"
    assert "mpxtrace summary: VM_NORESERVE" in out and "@allocation_size:" in out and "@lifetime:" in out
    summary_line = next(line for line in out.splitlines() if line.startswith("live "))
    assert " 0 allocations" not in summary_line


@pytest.mark.lab
@pytest.mark.parametrize("kernel", KERNELS)
def test_lost_events_are_counted_and_reported(kernel: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    for loss in guest_report(kernel, tmp_path_factory)["loss"]:
        assert "error" not in loss, loss
        source = {"ring": "ring_buffer", "perf": "perf_buffer"}[loss["buffer"]]
        assert loss["lost_events"] > 0 and loss["lost_by_source"].get(source, 0) == loss["lost_events"], loss
        assert loss["lost_records"] >= 1, "no lost_events record in the stream"
        assert loss["events"] > 0 and loss["tracer_exit"] == 0


@pytest.mark.lab
@pytest.mark.parametrize("kernel", KERNELS)
def test_tracing_makes_no_map_syscalls(kernel: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Once attached, the tracer reads its counters from memory: a map lookup or update by
    syscall holds bpf_prog_active, and on a kernel preempting in kernel mode (7.2) our kprobe
    programs on that CPU were skipped meanwhile (every lab kernel has mmap-able arrays, 5.5+)."""
    run = guest_report(kernel, tmp_path_factory)["syscalls"]
    assert "error" not in run, run
    assert run["events"] >= 4000, run  # 2,000 mmap+munmap pairs were traced...
    cmds = run["bpf_cmds"]
    assert cmds.get("obj_get_info_by_fd", 0) > 0, run  # ...while the loss counters were read
    assert not {c: n for c, n in cmds.items() if c.startswith("map_")}, run
    assert run["tracer_exit"] == 0, run


@pytest.mark.lab
def test_readme_main_command_demo_runs_end_to_end() -> None:
    """`mpxtrace demo` as README gives it: here it cannot trace, so it says why, boots the lab
    and streams the guest's live trace to this terminal."""
    import subprocess
    import sys
    from mpxtrace.doctor import blocking_problems, run_checks
    from mpxtrace.kernel.features import probe_kernel
    proc = subprocess.run([sys.executable, "-m", "mpxtrace", "demo"], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    if blocking_problems(run_checks(probe_kernel())):
        assert "This machine cannot trace" in proc.stderr and "booting Debian's 6.1 kernel" in proc.stderr
    assert proc.stdout.count("PID COMM") >= 3 and "mpxtrace summary: VM_NORESERVE" in proc.stdout
