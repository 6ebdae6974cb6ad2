"""python -m mpxtrace.lab.campaign --kernel K --seeds N [--flag F ...]: many random seeds against smaps.

Runs the randomized differential test (tests/lab/random_guest.py: random VMA lifecycles traced
live, every flagged VMA compared with /proc/PID/smaps at every checkpoint) for N fresh seeds
per flag, a batch of seeds per guest boot.  For a failing seed it then shrinks the operation
list (delta debugging: drop operations while the same kind of failure persists, every round's
candidates run in one boot) and prints the short list as a command that replays it.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .errors import LabError
from .vm import PROJECT_EXCLUDES, run_in_guest

MARK = "=====MPXTRACE-RANDOM-JSON====="
JOBS_FILE = ".campaign-jobs.json"
GUEST_SCRIPT = "tests/lab/random_guest.py"

# those mpxtrace.randomops draws runs for (the lab imports nothing from the package it tests:
# tests/test_randomwork.py holds the two lists equal)
FLAGS = ("VM_NORESERVE", "VM_LOCKED", "VM_HUGEPAGE", "VM_DONTCOPY", "VM_WIPEONFORK", "VM_MERGEABLE")
Job = Dict[str, Any]
Op = Dict[str, Any]  # one operation of mpxtrace.randomops (the guest reports a failing seed's list)
# one candidate list per entry -> the failure kinds each showed (empty: it passed)
Runner = Callable[[List[List[Op]]], List[Tuple[str, ...]]]


def failure_kinds(job: Dict[str, Any]) -> Tuple[str, ...]:
    """What went wrong in one job of a guest report: diverged, lost, anomaly, crashed."""
    kinds = []
    if job.get("diff_count"):
        kinds.append("diverged")
    if job.get("lost_events"):
        kinds.append("lost")
    if job.get("anomalies"):
        kinds.append("anomaly")
    if job.get("failed") or job.get("error") or job.get("exit") not in (0, None):
        kinds.append("crashed")
    return tuple(kinds)


@dataclass
class Lab:
    """Runs jobs in one boot of a lab kernel, from a copy of the project holding their lists."""

    kernel: str
    project: Path
    count: int
    parallel: int = 2
    echo: bool = True
    keep: Optional[Path] = None  # each boot's /mnt/out (tracer logs, stderr) is copied under it
    boots: int = 0

    def run(self, jobs: List[Job], fresh_tracer: bool = False) -> Dict[str, Any]:
        self.boots += 1
        out_dir = self.keep / f"boot-{self.boots:03d}" if self.keep is not None else None
        with tempfile.TemporaryDirectory(prefix="mpxtrace-campaign-") as tmp:
            tree = Path(tmp) / "project"
            shutil.copytree(self.project, tree, symlinks=True, ignore=shutil.ignore_patterns(*PROJECT_EXCLUDES))
            spec = {"count": self.count, "jobs": jobs, "fresh_tracer": fresh_tracer, "parallel": self.parallel}
            (tree / JOBS_FILE).write_text(json.dumps(spec))
            started = time.monotonic()
            result = run_in_guest(self.kernel, ["python3", GUEST_SCRIPT, "@" + JOBS_FILE], project_dir=tree,
                                  timeout=300 + 90 * len(jobs), out_dir=out_dir)
        parts = result.output.split(MARK)
        if len(parts) < 3:
            raise LabError(f"no report from the {self.kernel} guest (exit {result.exit_code}, {result.error}); "
                           f"console log {result.console_log}\n{result.output[-2000:]}")
        report: Dict[str, Any] = json.loads(parts[1])
        for group in report["groups"]:
            if "error" in group:
                raise LabError(f"{group['flag']} tracer: {group['error']}\n{group.get('stderr_tail', '')}")
        if self.echo:
            print(f"  [{self.kernel}: {len(jobs)} runs in one boot, {time.monotonic() - started:.0f} s]", flush=True)
        return report


def report_jobs(report: Dict[str, Any]) -> List[Dict[str, Any]]:
    return [job for group in report["groups"] for job in group["jobs"]]


MAX_CANDIDATES = 24  # a round's candidates: one boot of a few minutes


def ddmin(ops: List[Op], fails: Runner, want: Tuple[str, ...], log: Callable[[str], None] = print) -> List[Op]:
    """Zeller's delta debugging, each round's candidates judged by one call of `fails` (one
    boot): the complements at granularity n, and at 2n too while that stays a modest batch,
    so that a boot is rarely spent on a round that removes nothing.  A candidate reproduces
    when it shows one of the failure kinds in `want`."""
    def split(items: List[Op], parts: int) -> List[List[Op]]:
        bounds = [(i * len(items)) // parts for i in range(parts + 1)]
        return [items[bounds[i]:bounds[i + 1]] for i in range(parts)]

    n = 2
    while len(ops) >= 2:
        levels = [n] + ([2 * n] if 2 * n <= len(ops) and 3 * n <= MAX_CANDIDATES else [])
        candidates: List[Tuple[List[Op], int]] = []  # (operations, granularity; 0 for a subset)
        for level in levels:
            chunks = split(ops, level)
            candidates += [([op for j, c in enumerate(chunks) if j != i for op in c], level) for i in range(level)]
        if n <= 4:
            candidates += [(chunk, 0) for chunk in split(ops, n)]
        candidates = [(c, level) for c, level in candidates if c]
        verdicts = fails([c for c, _ in candidates])
        hits = [(c, level) for (c, level), kinds in zip(candidates, verdicts) if any(k in want for k in kinds)]
        if hits:
            ops, level = min(hits, key=lambda hit: len(hit[0]))
            n = 2 if level == 0 else max(level - 1, 2)
            log(f"  shrunk to {len(ops)} operations")
        elif levels[-1] >= len(ops):
            break
        else:
            n = min(2 * levels[-1], len(ops))
    return ops


def lineage(ops: Sequence[Op], actor: int) -> List[Op]:
    """Only what actor `actor` and the actors it descends from did (and the starts, forks and
    spawns that made them): other processes cannot change its memory."""
    parent = {op["child"]: op["a"] for op in ops if op["op"] in ("fork", "spawn")}
    line = {actor}
    while actor in parent:
        actor = parent[actor]
        line.add(actor)
    out: List[Op] = []
    for op in ops:
        if op["op"] == "par":
            members = [m for m in op["ops"] if m["a"] in line]
            out += [{"op": "par", "ops": members}] if len(members) > 1 else members
        elif op["op"] in ("start", "check") or op.get("a") in line:
            if op["op"] != "start" or op["child"] in line:
                out.append(op)
    return out


def flatten(ops: Sequence[Op]) -> List[Op]:
    """Concurrent groups run one member after another (a simpler list, if it still fails)."""
    out: List[Op] = []
    for op in ops:
        out.extend(op["ops"] if op["op"] == "par" else [op])
    return out


def shrink(lab: Lab, flag: str, ops: List[Op], first_bad: Optional[int], actor: Optional[int],
           want: Tuple[str, ...]) -> List[Op]:
    """The shortest list found that still fails: cut after the first failing checkpoint, drop
    the checkpoints before it, keep to the diverging actor's lineage and run concurrent groups
    one member at a time when that still fails, then delta debugging over the rest."""
    whole = [op for op in ops if op["op"] != "check"]
    body = [op for op in (ops[:first_bad] if first_bad is not None else ops) if op["op"] != "check"]
    end = [{"op": "check", "n": 0}]

    def fails(candidates: List[List[Op]]) -> List[Tuple[str, ...]]:
        jobs = [{"flag": flag, "ops": c + end, "name": f"candidate-{i}"} for i, c in enumerate(candidates)]
        return [failure_kinds(j) for j in report_jobs(lab.run(jobs))]

    # simplest first: lineage and flattened, lineage, flattened, the cut list as it is
    firsts: List[List[Op]] = []
    if actor is not None:
        firsts += [flatten(lineage(body, actor)), lineage(body, actor)]
    firsts += [flatten(body), body]
    verdicts = fails(firsts)
    start = next((c for c, kinds in zip(firsts, verdicts) if any(k in want for k in kinds)), None)
    if start is None:
        print("  the cut list does not fail on its own: shrinking the whole list")
        start = whole
    else:
        print(f"  {len(start)} operations still fail", flush=True)
    return ddmin(start, fails, want) + end


def replay_command(kernel: str, flag: str, ops: List[Op]) -> str:
    spec = json.dumps({"jobs": [{"flag": flag, "ops": ops}]}, separators=(",", ":"))
    return f".venv/bin/python -m mpxtrace.lab --kernel {kernel} -- python3 {GUEST_SCRIPT} '{spec}'"


def describe(job: Dict[str, Any]) -> str:
    kinds = failure_kinds(job)
    if not kinds:
        return f"ok ({job['checks']} checkpoints, {job.get('seconds')} s)"
    first = job["diffs"][0] if job.get("diffs") else None
    detail = f"; first difference: {json.dumps(first)[:400]}" if first else ""
    extra = job.get("failed") or job.get("error") or ""
    return f"FAILED {','.join(kinds)} {extra}{detail}"


def write_new(path: Path, text: str) -> None:
    """Create path 0600, never over an existing file nor through a symlink."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise LabError(f"{path} exists: give --json a new file name") from None
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpxtrace.lab.campaign", description=__doc__)
    parser.add_argument("--kernel", "-k", required=True, help="lab kernel: 5.10, 6.1, 6.12, 7.2")
    parser.add_argument("--seeds", type=int, default=20, help="fresh seeds per flag (default 20)")
    parser.add_argument("--seed", type=int, action="append", default=[], help="run this seed (repeatable) "
                        "instead of fresh ones")
    parser.add_argument("--flag", choices=FLAGS, action="append", default=[],
                        help="only this flag (repeatable; default: each of " + ", ".join(FLAGS) + ")")
    parser.add_argument("--count", type=int, default=100, help="operations a seed (default 100)")
    parser.add_argument("--batch", type=int, default=16, help="seeds per guest boot (default 16)")
    parser.add_argument("--parallel", type=int, default=2, help="runs side by side in a guest (default 2: "
                        "its two CPUs)")
    parser.add_argument("--shrink", type=int, default=1, metavar="N",
                        help="shrink the first N failing seeds (default 1; 0: none)")
    parser.add_argument("--project", type=Path, default=Path.cwd(), help="project tree (default: cwd)")
    parser.add_argument("--json", type=Path, help="write every seed's result here (new file)")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep the tracer logs of boots with a failing run "
                        "under DIR/boot-NNN (new directory)")
    args = parser.parse_args(argv)
    if args.keep is not None and os.path.lexists(args.keep):
        parser.error(f"--keep {args.keep} exists: give a new directory name")
    if args.json is not None and os.path.lexists(args.json):
        parser.error(f"--json {args.json} exists: give a new file name")
    flags = args.flag or list(FLAGS)
    seeds = args.seed or [int.from_bytes(os.urandom(4), "big") >> 1 for _ in range(args.seeds)]
    jobs = [{"flag": flag, "seed": seed} for seed in seeds for flag in flags]
    lab = Lab(args.kernel, args.project, args.count, args.parallel, keep=args.keep)
    print(f"campaign on {args.kernel}: {len(seeds)} seeds x {flags}, {args.count} operations each; seeds {seeds}",
          flush=True)
    results: List[Dict[str, Any]] = []
    failing: List[Dict[str, Any]] = []
    try:
        for i in range(0, len(jobs), args.batch):
            batch_failed = False
            for job in report_jobs(lab.run(jobs[i:i + args.batch])):
                results.append(job)
                print(f"{job['flag']} seed {job['seed']}: {describe(job)}", flush=True)
                if failure_kinds(job):
                    failing.append(job)
                    batch_failed = True
            if lab.keep is not None and not batch_failed:
                shutil.rmtree(lab.keep / f"boot-{lab.boots:03d}", ignore_errors=True)
        if args.json is not None:
            write_new(args.json, json.dumps({"kernel": args.kernel, "count": args.count, "jobs": results}))
        diverged = sum(1 for j in failing if "diverged" in failure_kinds(j))
        print(f"\n{len(results) - len(failing)} of {len(results)} runs passed on {args.kernel} "
              f"({diverged} diverged from smaps, {len(failing) - diverged} failed otherwise)"
              + (f"; failing: {[(j['flag'], j['seed']) for j in failing]}" if failing else ""), flush=True)
        for job in failing[:args.shrink]:
            ops = job.get("oplist")
            if not ops:
                print(f"seed {job['seed']}: the guest did not report its operations; not shrunk")
                continue
            bad = [d for d in job.get("diffs", []) if isinstance(d.get("op_index"), int)]
            first = min(bad, key=lambda d: int(d["op_index"])) if bad else None
            print(f"\nshrinking {job['flag']} seed {job['seed']} ({len(ops)} operations, "
                  f"{','.join(failure_kinds(job))})", flush=True)
            small = shrink(lab, job["flag"], ops, int(first["op_index"]) + 1 if first else None,
                           first.get("actor") if first else None, failure_kinds(job))
            final = report_jobs(lab.run([{"flag": job["flag"], "ops": small, "name": "shrunk"}], fresh_tracer=True))
            print(f"\n{job['flag']} seed {job['seed']} shrunk to {len(small)} operations: {describe(final[0])}")
            print(json.dumps(small))
            print(f"replay: {replay_command(args.kernel, job['flag'], small)}", flush=True)
    except LabError as exc:
        print(f"campaign: error: {exc}", file=sys.stderr)
        return 125
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
