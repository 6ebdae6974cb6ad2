"""Peak memory of `mpxtrace report` on hostile logs, against a valid log of the same record count.

Each case runs in a fresh process; the figure is its peak RSS (ru_maxrss) and the ratio to the
baseline measured in the same run.  Prints figures, asserts nothing.

    .venv/bin/python bench/report_bounds.py [RECORDS]
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, IO

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from helpers import PAGE, ev, header  # noqa: E402

A = 0x7F0000000000


def valid(fh: IO[bytes], records: int) -> None:
    fh.write(json.dumps(header()).encode() + b"\n")
    for i in range(records):
        start = A + (i % 512) * 0x10000
        kind = "map" if (i // 512) % 2 == 0 else "unmap"
        fh.write(json.dumps(ev(kind, i + 1, start, start + PAGE)).encode() + b"\n")
    fh.write(b'{"type": "end", "ts": %d}\n' % (records + 1))


def one_huge_line(fh: IO[bytes], records: int) -> None:
    valid(fh, records)
    chunk = b"[" * (1 << 20)
    for _ in range(256):  # a 256 MiB line with no newline: nesting, and no end in sight
        fh.write(chunk)


def damaged_lines(fh: IO[bytes], records: int) -> None:
    fh.write(json.dumps(header()).encode() + b"\n")
    bad = json.dumps(dict(ev("map", 1, A + PAGE, A), comm="x" * 100)).encode() + b"\n"  # end < start
    for _ in range(records):
        fh.write(bad)


def peak_rss(path: Path) -> Dict[str, float]:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c",
                             "import resource, sys\n"
                             "from mpxtrace.cli import main\n"
                             "try:\n    main(['report', sys.argv[1], '--json'])\n"
                             "except SystemExit as e:\n    code = e.code\n"
                             "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, code, file=sys.stderr)\n",
                             str(path)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    rss_kb, code = result.stderr.strip().splitlines()[-1].split()
    return {"rss_mib": int(rss_kb) / 1024, "seconds": time.monotonic() - started, "status": int(code)}


def main() -> None:
    records = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    cases: Dict[str, Callable[[IO[bytes], int], None]] = {
        f"valid log, {records} records": valid,
        "same + a 256 MiB line without newline": one_huge_line,
        f"{records} damaged records (all skipped)": damaged_lines,
    }
    with tempfile.TemporaryDirectory() as tmp:
        baseline = None
        for name, make in cases.items():
            path = Path(tmp) / "case.ndjson"
            with open(path, "wb") as fh:
                make(fh, records)
            size = os.path.getsize(path)
            figures = peak_rss(path)
            baseline = baseline or figures["rss_mib"]
            print(f"{name:<45} file {size / 2**20:7.1f} MiB  peak RSS {figures['rss_mib']:6.1f} MiB "
                  f"({figures['rss_mib'] / baseline:.2f}x)  {figures['seconds']:.1f} s  exit {figures['status']}")
            path.unlink()


if __name__ == "__main__":
    main()
