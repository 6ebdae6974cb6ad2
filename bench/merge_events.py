"""Runs INSIDE a lab guest: how many flag-change events the kernel program emits for changes
that touch no flagged memory, with `trace --flag VM_NORESERVE`, for this tree and another one
(the commit before a change), runs interleaved in one boot.  Prints figures; asserts nothing.

Two loads: `mprotect`, a process holding one VM_NORESERVE mapping that mprotects random pages
of an unflagged 64-page buffer (every call a vma_merge() attempt; none touches flagged memory,
so an ideal tracer emits nothing for them), and stress-ng's madvise and mmap stressors.

    python -m mpxtrace.lab --kernel 6.1 -- python3 bench/merge_events.py --before scratch/before
    (the other tree inside the project, so the guest sees it: git archive COMMIT | tar -x -C scratch/before)

Per stress-ng run: the events the kernel program emitted by kind (its own tallies, which nothing is
lost from), how many the front end applied and lost, and stress-ng's bogo ops, so that
"flags events per madvise operation" compares runs that did different amounts of work.
The field notes found two thirds of the events under this load were flag changes touching
no flagged memory (5.10 and 6.1: vma_merge() attempts in an address space holding some).
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from guest_tools import Mpxtrace  # noqa: E402

MARK = "=====MPXTRACE-MERGE-EVENTS-JSON====="
LOAD = ["stress-ng", "--madvise", "1", "--mmap", "1", "--metrics-brief"]
CALLS = 5000
MPROTECT = """
import random, sys
from mpxtrace import workload as w
rng = random.Random(1)
RW = w.PROT_READ | w.PROT_WRITE
w.touch(w.mmap(0, 4, RW, w.MAP_NORESERVE), 4)  # the address space holds flagged memory
buf = w.mmap(0, 64, RW, 0)
for i in range(int(sys.argv[1])):
    page = rng.randrange(64)
    w.mprotect(buf + page * 4096, min(rng.randint(1, 4), 64 - page), w.PROT_READ if rng.random() < 0.5 else RW)
"""


def bogo_ops(text: str) -> Dict[str, int]:
    """stress-ng's --metrics-brief lines: `stress-ng: info:  [pid] madvise   12345   20.00 ...`."""
    return {name: int(ops) for name, ops in re.findall(r"\]\s+(madvise|mmap)\s+(\d+)\s", text)}


def traced(tree: Path, argv: List[str]) -> Dict[str, Any]:
    """Run `argv` under `trace --flag VM_NORESERVE` from `tree`; its output and the tracer's summary."""
    tracer = Mpxtrace(("VM_NORESERVE",), "auto", ("--no-resident",), cwd=tree)
    load = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                          cwd="/tmp")  # stress-ng needs a writable cwd
    time.sleep(2.0)  # the tracer drains what the ring still holds
    code = tracer.stop()
    summary = tracer.record("summary") or {}
    emitted: Dict[str, int] = dict((summary.get("kernel_tallies") or {}).get("events_by_kind") or {})
    return {"tree": str(tree), "tracer_exit": code, "load_exit": load.returncode, "load_output": load.stdout[-800:],
            "emitted": emitted, "emitted_total": sum(emitted.values()), "applied": summary.get("events"),
            "lost": summary.get("lost_events"), "stderr": tracer.stderr()[-800:] if code else ""}


def mprotect_run(tree: Path) -> Dict[str, Any]:
    run = traced(tree, [sys.executable, "-c", MPROTECT, str(CALLS)])
    run.update(load="mprotect", calls=CALLS, flags_per_call=run["emitted"].get("flags", 0) / CALLS)
    return run


def stress_run(tree: Path, seconds: int) -> Dict[str, Any]:
    run = traced(tree, LOAD + ["--timeout", f"{seconds}s"])
    ops = bogo_ops(run["load_output"])
    madvise: Optional[int] = ops.get("madvise")
    run.update(load="stress-ng", bogo_ops=ops,
               flags_per_madvise_op=run["emitted"].get("flags", 0) / madvise if madvise else None)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="another source tree (inside the project directory)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=15)
    args = parser.parse_args()
    trees = ([ROOT / args.before] if args.before else []) + [ROOT]
    runs: List[Dict[str, Any]] = []
    stress_ng = shutil.which("stress-ng") is not None
    for _ in range(args.rounds):
        for tree in trees:
            run = mprotect_run(tree)
            runs.append(run)
            print(f"{run['tree']} mprotect: {CALLS} calls, emitted {run['emitted']}, flags events per call "
                  f"{run['flags_per_call']:.3f}, lost {run['lost']}", flush=True)
            if stress_ng:
                run = stress_run(tree, args.seconds)
                runs.append(run)
                print(f"{run['tree']} stress-ng: emitted {run['emitted_total']:,} {run['emitted']}, applied "
                      f"{run['applied']}, lost {run['lost']}, bogo ops {run['bogo_ops']}, flags events per madvise "
                      f"op {run['flags_per_madvise_op']}", flush=True)
    kernel = subprocess.run(["uname", "-r"], stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()
    print(MARK)
    print(json.dumps({"kernel": kernel, "seconds": args.seconds, "runs": runs}))
    print(MARK)


if __name__ == "__main__":
    main()
