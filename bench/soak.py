"""Soak (issue 8 item 7), on demand, not in CI: >= 10 minutes of stress-ng under the tracer
in a lab guest, tracer RSS sampled every 10 s, every lost event counted, nothing left live
for processes that exited.

    .venv/bin/python bench/soak.py [--kernel 6.1] [--minutes 10]

Prints the guest's figures and writes bench/results/soak-<timestamp>.json.  Asserts nothing.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from mpxtrace.lab import run_in_guest  # noqa: E402

MARK = "=====MPXTRACE-SOAK-JSON====="


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kernel", default="6.1")
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    if not 0 < args.minutes <= 24 * 60:
        parser.error("--minutes must be in (0, 1440]")
    result = run_in_guest(args.kernel, ["python3", "bench/soak_guest.py", str(args.minutes)], project_dir=ROOT,
                          timeout=args.minutes * 60 + 1200, echo=lambda line: print(line, flush=True))
    parts = result.output.split(MARK)
    if len(parts) < 3:
        print(f"soak: no result from the guest (exit {result.exit_code}, {result.error}); "
              f"console: {result.console_log}", file=sys.stderr)
        return 1
    figures = json.loads(parts[1])
    figures["kernel_key"] = args.kernel
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = ROOT / "bench" / "results" / f"soak-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=1) + "\n")
    print(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
