"""Benchmark suite (issue 9): every figure, lab and host, in one command.  Asserts nothing.

    .venv/bin/python bench/suite.py [--kernels 5.10,6.1,6.12,7.2] [--quick] [--no-host]

For each lab kernel, ONE boot runs bench/lab_guest.py: the added cost per mmap+munmap of
mpxtrace against bpftrace (interleaved with untraced runs), start-up to attached, the drain
rate under a burst, and stress-ng under the tracer.  Then bench/frontend.py measures the host
parts.  Everything is written to bench/results/<timestamp>.json, naming the machine, how
loaded it was, the kernels and every version; a table is printed.  README's performance
table is made from that file by bench/render_results.py.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import mpxtrace  # noqa: E402
from mpxtrace.lab import run_in_guest  # noqa: E402
from mpxtrace.lab.image import cached_images  # noqa: E402
from mpxtrace.lab.kernels import KERNELS  # noqa: E402
from render_results import print_table  # noqa: E402

MARK = "=====MPXTRACE-BENCH-JSON====="


def _qemu_guests() -> int:
    """Other QEMU guests on the machine (they share its 2 cores with ours)."""
    count = 0
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().startswith("qemu-system"):
                count += 1
        except OSError:
            pass
    return count


def load_sample() -> Dict[str, Any]:
    return {"at": time.time(), "loadavg": list(os.getloadavg()), "qemu_guests": _qemu_guests()}


def machine() -> Dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"node": platform.node(), "cpu": cpu, "cpus": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "accel": "kvm" if _has_kvm_cpu() else "tcg"}


def _has_kvm_cpu() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " vmx" in flags or " svm" in flags


def _git() -> Dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=str(ROOT), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              universal_newlines=True).stdout.strip()
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def lab(kernel: str, quick: bool) -> Dict[str, Any]:
    before = load_sample()
    argv = ["python3", "bench/lab_guest.py"] + (["--quick"] if quick else [])
    result = run_in_guest(kernel, argv, project_dir=ROOT, timeout=3600,
                          echo=lambda line: print(f"  [{kernel}] {line}", flush=True))
    out: Dict[str, Any] = {"load_before": before, "load_after": load_sample(), "boot_seconds": result.seconds,
                           "release": result.kernel_release, "exit_code": result.exit_code}
    images = cached_images(kernel)
    if images:
        m = images[0].manifest
        out["image"] = {"release": m["resolved"]["release"], "bcc": m["resolved"]["bcc_version"],
                        "python": m["resolved"]["python_version"], "bench_tools": m.get("bench_tools"),
                        "recipe_version": m.get("recipe_version")}
    parts = result.output.split(MARK)
    if len(parts) < 3:
        out["error"] = f"no result (exit {result.exit_code}, {result.error}); console: {result.console_log}"
        out["output_tail"] = result.output[-3000:]
    else:
        out["guest"] = json.loads(parts[1])
    return out


def host(quick: bool) -> Dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "host.json"
        argv = [sys.executable, str(ROOT / "bench" / "frontend.py"), "--out", str(path)] + (["--quick"] if quick else [])
        proc = subprocess.run(argv, cwd=str(ROOT))
        if proc.returncode != 0 or not path.exists():
            return {"error": f"bench/frontend.py exited {proc.returncode}"}
        return dict(json.loads(path.read_text()))


def _write(path: Path, results: Dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kernels", default=",".join(KERNELS), help="comma-separated lab kernels")
    parser.add_argument("--quick", action="store_true", help="smaller runs: a smoke test, not for README")
    parser.add_argument("--no-host", action="store_true", help="skip the host parts (bench/frontend.py)")
    parser.add_argument("--no-lab", action="store_true", help="skip the lab parts")
    parser.add_argument("--out", type=Path, help="results file (default bench/results/<timestamp>.json)")
    args = parser.parse_args()
    kernels: List[str] = [k for k in args.kernels.split(",") if k] if not args.no_lab else []
    unknown = [k for k in kernels if k not in KERNELS]
    if unknown:
        parser.error(f"unknown lab kernels {unknown}; choose from {', '.join(KERNELS)}")
    now = datetime.datetime.now(datetime.timezone.utc)
    out_path = args.out or ROOT / "bench" / "results" / f"{now.strftime('%Y%m%dT%H%M%SZ')}.json"
    results: Dict[str, Any] = {"suite": "mpxtrace-bench", "date": now.isoformat(timespec="seconds"),
                               "quick": args.quick, "machine": machine(), "mpxtrace": mpxtrace.__version__,
                               "git": _git(), "load_at_start": load_sample(), "lab": {}}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    for kernel in kernels:
        print(f"lab {kernel}: booting (one boot runs every lab figure)", flush=True)
        results["lab"][kernel] = lab(kernel, args.quick)
        _write(out_path, results)  # an interrupted run keeps the kernels it finished
    if not args.no_host:
        print("host: bench/frontend.py", flush=True)
        results["host"] = host(args.quick)
    results["load_at_end"] = load_sample()
    _write(out_path, results)
    print_table(results)
    print(f"written {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
