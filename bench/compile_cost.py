"""Benchmark (run inside a lab guest): what BCC's compile and load of the kernel program cost,
for one or more source trees, rounds interleaved in one boot.  Asserts nothing.

    python -m mpxtrace.lab --kernel 6.1 -- python3 bench/compile_cost.py ROUNDS TREE [TREE ...] [--trivial]

Each tree's own planner gives the program, cflags and kprobe programs it would load on this
kernel (`--flag VM_NORESERVE`, as `trace --ebpf` prints them).  Each round builds every tree's
program in a fresh Python (bcc.BPF(text, cflags): the compile), then loads and attaches its
fentry/tracepoint programs (BCC's autoload) and loads, without attaching, the kprobe programs
that tree attaches here.  --trivial adds a one-line kprobe program: the part of the compile
any BCC program pays.  To compare with a commit: git archive COMMIT | tar -x -C
scratch/before, then pass /mnt/project/scratch/before and /mnt/project.  Prints each round and the medians.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Dict, List, Tuple

TRIVIAL = "int kprobe__vm_area_free(struct pt_regs *ctx) { return 0; }\n"
# in a fresh interpreter: compile, then load+attach what BCC loads by itself; prints both times
CHILD = r'''
import json, sys, time
import bcc
source, cflags = open(sys.argv[1]).read(), json.loads(sys.argv[2])
autoload = bcc.BPF._trace_autoload
bcc.BPF._trace_autoload = lambda self: None
t = time.monotonic(); b = bcc.BPF(text=source, cflags=cflags); compiled = time.monotonic() - t
t = time.monotonic()
autoload(b)
# the kprobe programs the tree attaches on this kernel: loaded (verified) too, not attached
for name in json.loads(sys.argv[3]):
    b.load_func(name, bcc.BPF.KPROBE)
loaded = time.monotonic() - t
print(json.dumps({"compile": compiled, "load_attach": loaded, "programs": len(getattr(b, "funcs", {}))}))
b.cleanup()
'''


# run in a tree (cwd): what its own planner would load on this kernel, as `trace` would: the
# program text, its cflags, and the kprobe programs it attaches (HOOKS' entry/exit names, as
# program.load_program takes them)
PLAN = r'''
import json
from mpxtrace.doctor import examine_host
from mpxtrace.flags import resolve_flags
from mpxtrace.kernel.hooks import HOOKS
from mpxtrace.program import build_config, source_text
config = build_config(resolve_flags(["VM_NORESERVE"], None), examine_host().features, "auto", "auto", ())
specs = {spec.key: spec for spec in HOOKS}
kprobes = sorted({name for planned in config.plan.attaches if planned.mode == "kprobe"
                  for name in (specs[planned.hook].entry, specs[planned.hook].exit) if name})
print(json.dumps({"source": source_text(), "cflags": config.cflags(), "kprobes": kprobes}))
'''


def program_of(tree: str) -> Tuple[str, List[str], List[str]]:
    """The tree's program on this kernel: source, cflags, the kprobe programs it attaches."""
    out = subprocess.run([sys.executable, "-c", PLAN], cwd=tree, stdout=subprocess.PIPE, universal_newlines=True,
                         check=True).stdout
    plan = json.loads(out.splitlines()[-1])
    return plan["source"], plan["cflags"], plan["kprobes"]


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    rounds, trees = int(args[0]), args[1:]
    programs: Dict[str, Tuple[str, List[str], List[str]]] = {tree: program_of(tree) for tree in trees}
    if "--trivial" in sys.argv:
        programs["trivial"] = (TRIVIAL, [], [])
    files: Dict[str, str] = {}
    for name, (source, cflags, kprobes) in programs.items():
        fd, files[name] = tempfile.mkstemp(suffix=".c")
        os.write(fd, source.encode())
        os.close(fd)
        print(f"{name}: {source.count(chr(10))} lines; kprobe programs loaded: {', '.join(kprobes) or 'none'}")
    totals: Dict[str, List[float]] = {name: [] for name in programs}
    for r in range(rounds):
        for name in (list(programs) if r % 2 == 0 else list(programs)[::-1]):
            _, cflags, kprobes = programs[name]
            run = subprocess.run([sys.executable, "-c", CHILD, files[name], json.dumps(cflags), json.dumps(kprobes)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
            if run.returncode:
                print(f"round {r} {name}: failed\n{run.stderr[-2000:]}", flush=True)
                continue
            got = json.loads(run.stdout.splitlines()[-1])
            totals[name].append(got["compile"] + got["load_attach"])
            print(f"round {r} {name}: {totals[name][-1]:.2f} s = compile {got['compile']:.2f} + load/attach "
                  f"{got['load_attach']:.2f} ({got['programs']} programs)", flush=True)
    print(f"kernel {os.uname().release}; median seconds, compile + load/attach:")
    for name, times in totals.items():
        if times:
            print(f"{name}: {statistics.median(times):.2f} s over {len(times)} rounds: {[round(t, 2) for t in times]}")


if __name__ == "__main__":
    main()
