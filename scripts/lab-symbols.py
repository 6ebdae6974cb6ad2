#!/usr/bin/env python3
"""Boot every lab kernel, run tests/lab/guest_probe.py, write a markdown symbol report.

Usage: scripts/lab-symbols.py [-o /tmp/lab-symbols.md] [KERNEL...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, List

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT))

from mpxtrace.lab import KERNELS, run_in_guest  # noqa: E402


def probe(kernel: str) -> Dict[str, Any]:
    result = run_in_guest(kernel, ["python3", "tests/lab/guest_probe.py"], project_dir=PROJECT,
                          timeout=900)
    result.check()
    line = next(l for l in result.output.splitlines() if l.startswith("PROBE-JSON "))
    report = json.loads(line[len("PROBE-JSON "):])
    report["seconds"] = result.seconds
    return report


def yes_no(value: Any) -> str:
    return {True: "yes", False: "–", None: "n/a"}[value]


def render(reports: Dict[str, Dict[str, Any]]) -> str:
    keys = list(reports)
    out: List[str] = ["# Lab kernels: hook symbols (from the guests themselves)", ""]
    out.append("| | " + " | ".join(keys) + " |")
    out.append("|---|" + "---|" * len(keys))
    for label, get in [
        ("uname -r", lambda r: r["uname_r"]),
        ("Python", lambda r: r["python"]),
        ("BCC", lambda r: r["bcc"].get("bcc_version")),
        ("click / pyroute2", lambda r: f"{r.get('click')} / {r.get('pyroute2')}"),
        ("lockdown", lambda r: r["lockdown"]),
        ("BPF.support_kfunc()", lambda r: r["bcc"].get("support_kfunc")),
        ("kprobe on mmap_region counted (of 50)", lambda r: r["bcc"].get("kprobe_mmap_region_count",
                                                                         r["bcc"].get("error"))),
        ("perf_event_mmap in kprobes blacklist", lambda r: yes_no(r["perf_event_mmap_blacklisted"])),
    ]:
        out.append(f"| {label} | " + " | ".join(str(get(reports[k])) for k in keys) + " |")
    out += ["", "Symbol presence: K = in /proc/kallsyms, F = in available_filter_functions "
            "(traceable by kprobe/fentry); – = absent.", ""]
    out.append("| symbol | " + " | ".join(keys) + " |")
    out.append("|---|" + "---|" * len(keys))
    for sym in reports[keys[0]]["symbols"]:
        cells = []
        for k in keys:
            s = reports[k]["symbols"][sym]
            cell = ("K" if s["kallsyms"] else "") + (" F" if s["filter_functions"] else "")
            cells.append(cell.strip() or "–")
        out.append(f"| `{sym}` | " + " | ".join(cells) + " |")
    out += ["", "Struct fields: H = grep of the guest's /usr/src/linux-headers-* (mm/vma.h is not "
            "shipped in Debian header packages), B = the running kernel's BTF "
            "(/sys/kernel/btf/vmlinux); yes / – (absent) / n/a (struct not found there).", ""]
    out.append("| field | " + " | ".join(keys) + " |")
    out.append("|---|" + "---|" * len(keys))
    for struct, field in [("vm_area_struct", "vm_flags"), ("vm_area_struct", "__vm_flags"),
                          ("vma_merge_struct", "flags"), ("vma_merge_struct", "vm_flags")]:
        cells = []
        for k in keys:
            entry = reports[k]["structs"][struct]
            btf = reports[k]["structs"]["btf"][struct]
            h = "n/a" if entry["found_in"] is None else yes_no(entry.get(field))
            bt = "n/a" if btf is None else yes_no(btf.get(field))
            cells.append(f"H {h}, B {bt}")
        out.append(f"| `{struct}.{field}` | " + " | ".join(cells) + " |")
    out.append("")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-o", "--output", type=Path, default=Path("/tmp/lab-symbols.md"))
    parser.add_argument("--json", type=Path, help="also write the raw reports here")
    parser.add_argument("kernels", nargs="*", default=list(KERNELS))
    args = parser.parse_args()
    reports = {k: probe(k) for k in args.kernels}
    args.output.write_text(render(reports))
    if args.json:
        args.json.write_text(json.dumps(reports, indent=1, sort_keys=True))
    print(args.output.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
