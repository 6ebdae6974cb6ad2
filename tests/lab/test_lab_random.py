"""Randomized differential test against real kernels: random VMA lifecycles (mpxtrace.randomwork)
traced live, and at every checkpoint each process's flagged VMAs in the tracer's snapshot
compared, VMA by VMA, with /proc/PID/smaps.

Fresh seeds every run (printed, and in every failure message, with the command that replays
them); MPXTRACE_RANDOM_SEEDS=1,2,3 runs those instead.  Each kernel runs the flags set at
creation and one flag madvise() sets, drawn afresh too; MPXTRACE_RANDOM_FLAGS=VM_HUGEPAGE,...
runs those instead.  One guest boot per kernel runs every seed; tests/lab/random_guest.py does
the work inside it.  More seeds and flags, and shrinking a failing one to a short list of
operations: ``python -m mpxtrace.lab.campaign`` (see README).
"""
from __future__ import annotations

import json
import os
import random
from typing import Any, Dict, List, Set, Tuple

import pytest

from guestreport import guest_json
from mpxtrace.randomops import ADVISED, COVERAGE, FLAGS, generate, ops_digest

MARK = "=====MPXTRACE-RANDOM-JSON====="
KERNELS = ["5.10", "6.1", "6.12", "7.2"]
SEEDS_PER_FLAG = 2
COUNT = 80  # operations a seed
PARALLEL = 2  # a flag's seeds side by side (the guest has two CPUs): starting the tracer dominates


def _seeds() -> List[int]:
    given = os.environ.get("MPXTRACE_RANDOM_SEEDS")
    if given:
        try:
            return [int(s) for s in given.split(",") if s.strip()]
        except ValueError:
            raise pytest.UsageError(f"MPXTRACE_RANDOM_SEEDS must be comma-separated integers, got {given!r}")
    return [int.from_bytes(os.urandom(4), "big") >> 1 for _ in range(SEEDS_PER_FLAG)]


def _flags_by_kernel() -> Dict[str, Tuple[str, ...]]:
    """The flags each kernel's boot runs: those set at creation, and one that madvise() sets on
    memory that exists (a tracer start per flag is most of a boot's time, so CI draws one;
    `python -m mpxtrace.lab.campaign` runs them all)."""
    given = os.environ.get("MPXTRACE_RANDOM_FLAGS")
    if given:
        flags = tuple(f.strip() for f in given.split(",") if f.strip())
        if not flags or any(f not in FLAGS for f in flags):
            raise pytest.UsageError(f"MPXTRACE_RANDOM_FLAGS must be comma-separated names from {FLAGS}, got {given!r}")
        return {kernel: flags for kernel in KERNELS}
    draw = random.SystemRandom()
    created = tuple(f for f in FLAGS if f not in ADVISED)
    return {kernel: created + (draw.choice(sorted(ADVISED)),) for kernel in KERNELS}


FLAGS_OF = _flags_by_kernel()
SEEDS = {flag: _seeds() for flag in FLAGS}

# Issue 6's real-time program: mlockall(MCL_CURRENT|MCL_FUTURE), then every kind of growth a
# locked program makes (heap by brk from two threads, main-thread stack through C frames, a
# region by mremap in place, a MAP_GROWSDOWN mapping by touching below it), a heap shrink and
# munlockall, compared with smaps after each.  Runs in the random test's boot, beside its seeds.
MLOCKALL_JOB = "mlockall-growth"
MLOCKALL_OPS: List[Dict[str, Any]] = [
    {"op": "start", "child": 0},
    {"op": "lockall", "a": 0, "t": 0, "kind": "cf"}, {"op": "check", "n": 1},
    {"op": "brk", "a": 0, "t": 0, "delta": 8}, {"op": "check", "n": 2},
    {"op": "recurse", "a": 0, "t": 0, "depth": 480}, {"op": "check", "n": 3},
    {"op": "unmap", "a": 0, "t": 0, "sp": "A", "off": 100, "n": 16},
    {"op": "map", "a": 0, "t": 0, "sp": "A", "off": 100, "n": 4, "prot": "rw", "mf": ""},
    {"op": "remap", "a": 0, "t": 0, "sp": "A", "off": 100, "n": 4, "new": 12, "mode": "inplace"},
    {"op": "check", "n": 4},
    {"op": "unmap", "a": 0, "t": 0, "sp": "A", "off": 200, "n": 6},
    {"op": "map", "a": 0, "t": 0, "sp": "A", "off": 206, "n": 2, "prot": "rw", "mf": "g"},
    {"op": "grow", "a": 0, "t": 0, "sp": "A", "off": 203}, {"op": "check", "n": 5},
    {"op": "threads", "a": 0, "n": 2},
    {"op": "brk", "a": 0, "t": 1, "delta": 5}, {"op": "brk", "a": 0, "t": 0, "delta": -9}, {"op": "check", "n": 6},
    {"op": "unlockall", "a": 0, "t": 0}, {"op": "check", "n": 7},
    {"op": "exit", "a": 0},
]
_reports: Dict[str, Dict[str, Any]] = {}


def _replay(kernel: str) -> str:
    seeds = ",".join(str(s) for s in sorted({s for f in FLAGS_OF[kernel] for s in SEEDS[f]}))
    return (f"replay: MPXTRACE_RANDOM_SEEDS={seeds} MPXTRACE_RANDOM_FLAGS={','.join(FLAGS_OF[kernel])} "
            ".venv/bin/python -m pytest tests/lab/test_lab_random.py "
            f"-k '{kernel}'; or shrink one: .venv/bin/python -m mpxtrace.lab.campaign --kernel {kernel} "
            f"--seed SEED --flag FLAG --count {COUNT}")


def guest_report(kernel: str, tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Any]:
    if kernel not in _reports:
        seeds = {flag: SEEDS[flag] for flag in FLAGS_OF[kernel]}
        print(f"\nrandom lifecycles on {kernel}: seeds {seeds}")
        spec = {"count": COUNT, "parallel": PARALLEL,
                "jobs": [{"flag": flag, "seed": seed} for flag in FLAGS_OF[kernel] for seed in SEEDS[flag]]
                + [{"flag": "VM_LOCKED", "ops": MLOCKALL_OPS, "name": MLOCKALL_JOB}]}
        out = tmp_path_factory.mktemp(f"random-{kernel}")
        report, result = guest_json(kernel, ["python3", "tests/lab/random_guest.py", json.dumps(spec)], MARK, out, 900,
                               f"seeds {seeds}; ")
        report["_console"] = str(result.console_log)
        report["_seconds"] = result.seconds
        print(f"{kernel}: guest run {result.seconds:.0f} s; tracer start "
              f"{[g.get('startup_s') for g in report['groups']]} s; seeds "
              f"{[(j['seed'], j['seconds']) for g in report['groups'] for j in g['jobs']]} s")
        _reports[kernel] = report
    return _reports[kernel]


def _jobs(report: Dict[str, Any], kernel: str) -> List[Dict[str, Any]]:
    for group in report["groups"]:
        assert "error" not in group, (f"{group['flag']}: {group['error']}\n{group.get('stderr_tail', '')}\n"
                                      f"{_replay(kernel)}")
    jobs = [job for group in report["groups"] for job in group["jobs"] if job.get("name") != MLOCKALL_JOB]
    expected = sorted((f, s) for f in FLAGS_OF[kernel] for s in SEEDS[f])
    assert sorted((j["flag"], j["seed"]) for j in jobs) == expected, f"not every seed ran; {_replay(kernel)}"
    return jobs


@pytest.mark.lab
@pytest.mark.parametrize("kernel", KERNELS)
def test_random_workload_runs_every_operation(kernel: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The comparison below means something only if the workload ran: every seed reached its
    checkpoints with flagged memory to compare, and every kind of operation succeeded."""
    jobs = _jobs(guest_report(kernel, tmp_path_factory), kernel)
    succeeded = set()
    for job in jobs:
        where = f"{job['flag']} seed {job['seed']}"
        assert "error" not in job and "failed" not in job and job.get("exit") == 0, \
            f"{where}: {job.get('error') or job.get('failed')} (exit {job.get('exit')}); {_replay(kernel)}"
        assert job["checks"] >= 3 and job.get("flagged_seen", 0) > 0, f"{where}: nothing was compared"
        ops = generate(job["seed"], job["flag"], COUNT)
        assert job["digest"] == ops_digest(ops), f"{where}: the guest's Python drew other operations than the host's"
        succeeded |= _succeeded(ops, job["results"])
    missing = [kind for kind in COVERAGE if kind not in succeeded]
    assert missing == [], f"operations that never succeeded on {kernel}: {missing}; {_replay(kernel)}"


def _succeeded(ops: List[Dict[str, Any]], results: List[str]) -> Set[str]:
    """Kinds of operation that succeeded (results are per operation, 'par' ones per member)."""
    done: Set[str] = set()
    for op, result in zip(ops, results):
        members = list(zip(op["ops"], result[len("par:"):].split(","))) if op["op"] == "par" else [(op, result)]
        for member, outcome in members:
            if outcome.startswith("ok"):
                detail = member.get("mode") or member.get("kind") if member["op"] in ("remap", "lock") else None
                done.add(f"{member['op']}/{detail}" if detail else member["op"])
                if "g" in member.get("mf", ""):
                    done.add("gd")
    return done




@pytest.mark.lab
@pytest.mark.parametrize("kernel", KERNELS)
def test_random_lifecycles_match_smaps_vma_by_vma(kernel: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    jobs = _jobs(guest_report(kernel, tmp_path_factory), kernel)
    diverged = {f"{j['flag']} seed {j['seed']}": j["diffs"][:3] for j in jobs if j["diff_count"]}
    assert diverged == {}, (f"tracer vs smaps on {kernel} (first differences per seed; op_index is the "
                            f"checkpoint's position in the operation list): {json.dumps(diverged, indent=1)}\n"
                            f"{_replay(kernel)}")


@pytest.mark.lab
@pytest.mark.parametrize("kernel", KERNELS)
def test_mlockall_program_growth_matches_smaps_at_every_checkpoint(
        kernel: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    report = guest_report(kernel, tmp_path_factory)
    _jobs(report, kernel)
    [job] = [j for g in report["groups"] for j in g["jobs"] if j.get("name") == MLOCKALL_JOB]
    assert "error" not in job and "failed" not in job and job.get("exit") == 0, job
    outcomes = job["results"]
    assert len(outcomes) == len(MLOCKALL_OPS) and all(r.startswith("ok") for r in outcomes), \
        f"not every growth happened: {list(zip((o['op'] for o in MLOCKALL_OPS), outcomes))}"
    assert job["checks"] == 7 and job["flagged_seen"] >= 7, f"checkpoints compared: {job['checks']}"
    assert job["diff_count"] == 0, f"tracer vs smaps under mlockall on {kernel}: {json.dumps(job['diffs'], indent=1)}"


@pytest.mark.lab
@pytest.mark.parametrize("kernel", KERNELS)
def test_random_lifecycles_lose_nothing_and_see_no_anomaly(kernel: str,
                                                           tmp_path_factory: pytest.TempPathFactory) -> None:
    report = guest_report(kernel, tmp_path_factory)
    _jobs(report, kernel)
    for group in report["groups"]:
        assert group["tracer_exit"] == 0 and group["complete"] is True
        # The one loss the kernel imposes: a run of one of our programs it skipped because a task
        # preempted inside that program held it on the CPU (fentry/fexit run preemptible; 7.2
        # preempts in kernel mode).  Counted, then repaired by resync: the comparisons above stay
        # strict.  A skipped fexit also leaves its frame behind (frame_stale), and until resync
        # the model may see transitions the kernel never makes (anomalies).  Anything else is ours.
        skipped = group["lost_by_source"].get("program_skipped", 0) > 0
        consequences = ("program_skipped", "frame_stale") if skipped else ()
        ours = {k: v for k, v in group["lost_by_source"].items() if k not in consequences}
        assert ours == {}, \
            f"{group['flag']}: events lost {group['lost_by_source']}; seeds {SEEDS[group['flag']]}; {_replay(kernel)}"
        assert skipped or group["anomalies"] == [], f"{group['flag']}: {group['anomalies'][:5]}; {_replay(kernel)}"


@pytest.mark.lab
@pytest.mark.parametrize("kernel", KERNELS)
def test_random_lifecycles_verify_reports_no_drift(kernel: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """trace --verify ran beside the workload: the tracer's own check against smaps agrees."""
    report = guest_report(kernel, tmp_path_factory)
    _jobs(report, kernel)
    for group in report["groups"]:
        assert group["drift"] == 0, f"{group['flag']}: {group['drift']} drift records; {_replay(kernel)}"
