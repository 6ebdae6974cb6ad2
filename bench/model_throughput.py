"""Benchmark (host): how many records per second the front end applies, against a baseline.

    .venv/bin/python bench/model_throughput.py [EVENTS]

Builds a synthetic stream (mmap, split, unmap, mprotect and mremap events over many address
spaces), then times (a) the baseline: json-decoding the stream, which every replay pays, and
(b) Session.apply over the decoded records.  Prints both rates and their ratio.
"""
from __future__ import annotations

import json
import random
import sys
import time
from typing import Any, Dict, List

sys.path.insert(0, __import__("os").path.dirname(__file__) + "/..")
from mpxtrace.stats import Session  # noqa: E402

MASK, PAGE, A = 0x200000, 4096, 0x7F0000000000


def stream(n: int) -> List[Dict[str, Any]]:
    rnd = random.Random(1)
    out: List[Dict[str, Any]] = []
    live: Dict[int, List[int]] = {}
    ts = 0
    while len(out) < n:
        mm = 0xFFFF888000000000 + rnd.randrange(64) * 0x1000
        ts += 1000
        base = {"type": "event", "ts": ts, "mm": mm, "tgid": mm & 0xFFFF, "tid": 1, "owner": True, "comm": "w"}
        addrs = live.setdefault(mm, [])
        if addrs and rnd.random() < 0.45:
            a = addrs.pop(rnd.randrange(len(addrs)))
            out.append(dict(base, kind="split", start=a, end=a + 8 * PAGE, flags=MASK, at=a + 4 * PAGE))
            out.append(dict(base, kind="unmap", start=a, end=a + 4 * PAGE, flags=MASK))
            out.append(dict(base, kind="unmap", start=a + 4 * PAGE, end=a + 8 * PAGE, flags=MASK))
        else:
            a = A + rnd.randrange(1 << 20) * 16 * PAGE
            addrs.append(a)
            out.append(dict(base, kind="map", start=a, end=a + 8 * PAGE, flags=MASK, ext=[a, a + 8 * PAGE]))
    return out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    lines = [json.dumps(r) for r in stream(n)]
    t0 = time.perf_counter()
    records = [json.loads(line) for line in lines]
    t_decode = time.perf_counter() - t0
    session = Session({"type": "header", "start_ns": 0, "interval_ns": 10**9, "mask": MASK})
    t0 = time.perf_counter()
    for rec in records:
        session.apply(rec)
    t_apply = time.perf_counter() - t0
    summary = session.summary()
    print(f"{len(records)} records over {len(summary['processes'])} address spaces, "
          f"{summary['totals']['live_vmas']} VMAs live at the end")
    print(f"baseline json decode : {len(records) / t_decode:>12,.0f} records/s")
    print(f"Session.apply        : {len(records) / t_apply:>12,.0f} records/s")
    print(f"apply cost / decode  : {t_apply / t_decode:>12.2f}x")


if __name__ == "__main__":
    main()
