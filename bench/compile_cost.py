"""Benchmark (run inside a lab guest): what BCC's compile and load of the kernel program cost,
for one or more source trees, rounds interleaved in one boot.  Asserts nothing.

    python -m mpxtrace.lab --kernel 6.1 -- python3 bench/compile_cost.py ROUNDS TREE [TREE ...] [--trivial]

Each tree's own `mpxtrace trace --flag VM_NORESERVE --ebpf` gives the program and cflags it
would load on this kernel; each round builds every tree's program in a fresh Python
(bcc.BPF(text, cflags): the compile), then loads and attaches its fentry/tracepoint programs
(BCC's autoload) and loads the kprobe programs this kernel would attach (not attaching them).  --trivial adds a
one-line kprobe program: the part of the compile any BCC program pays.  To compare with a
commit: git archive COMMIT | tar -x -C scratch/before, then pass /mnt/project/scratch/before
and /mnt/project.  Prints each round and the medians.
"""
from __future__ import annotations

import json
import os
import re
import shlex
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
# the kprobe programs this kernel attaches (KPROBE_HOOK_*): loaded (verified) too, not attached
for name in json.loads(sys.argv[3]):
    b.load_func(name, bcc.BPF.KPROBE)
loaded = time.monotonic() - t
print(json.dumps({"compile": compiled, "load_attach": loaded, "programs": len(getattr(b, "funcs", {}))}))
b.cleanup()
'''


def kprobe_programs(source: str, cflags: List[str]) -> List[str]:
    """The kp_/kr_ functions compiled under these cflags (each under its #ifdef KPROBE_HOOK_x)."""
    defined = {f[2:].split("=")[0] for f in cflags if f.startswith("-D")}
    names: List[str] = []
    guard: List[bool] = []
    for line in source.splitlines():
        words = line.split()
        if line.startswith("#ifdef"):
            guard.append(words[1] in defined)
        elif line.startswith("#ifndef"):
            guard.append(words[1] not in defined)
        elif line.startswith("#if "):
            guard.append(any(name in defined for name in re.findall(r"defined\((\w+)\)", line)))
        elif line.startswith("#endif") and guard:
            guard.pop()
        elif line.startswith("#else") and guard:
            guard[-1] = not guard[-1]
        elif all(guard) and re.match(r"int (k[pr]_\w+)\(struct pt_regs", line):
            names.append(line.split("(")[0].split()[1])
    return names


def program_of(tree: str) -> Tuple[str, List[str]]:
    out = subprocess.run([sys.executable, "-m", "mpxtrace", "trace", "--flag", "VM_NORESERVE", "--ebpf"], cwd=tree,
                         stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    first, _, source = out.partition("\n")
    return source, shlex.split(first[len("// cflags: "):])


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    rounds, trees = int(args[0]), args[1:]
    programs: Dict[str, Tuple[str, List[str]]] = {tree: program_of(tree) for tree in trees}
    if "--trivial" in sys.argv:
        programs["trivial"] = (TRIVIAL, [])
    files: Dict[str, str] = {}
    for name, (source, cflags) in programs.items():
        fd, files[name] = tempfile.mkstemp(suffix=".c")
        os.write(fd, source.encode())
        os.close(fd)
        kprobes = sorted(f[len("-DKPROBE_HOOK_"):].split("=")[0] for f in cflags if f.startswith("-DKPROBE_HOOK_"))
        print(f"{name}: {source.count(chr(10))} lines, kprobe hooks compiled: {', '.join(kprobes) or 'none'}; "
              f"kprobe programs loaded: {len(kprobe_programs(source, cflags))}")
    totals: Dict[str, List[float]] = {name: [] for name in programs}
    for r in range(rounds):
        for name in (list(programs) if r % 2 == 0 else list(programs)[::-1]):
            source, cflags = programs[name]
            run = subprocess.run([sys.executable, "-c", CHILD, files[name], json.dumps(cflags),
                                  json.dumps(kprobe_programs(source, cflags))],
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
