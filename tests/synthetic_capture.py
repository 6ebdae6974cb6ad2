"""A synthetic capture (the log `trace --log` writes) for the views: several processes mapping
and unmapping flagged memory for some seconds, with a resident sample every second.
Run as a script to write one: python tests/synthetic_capture.py FILE [SECONDS] [SEED]."""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any, Dict, List

from helpers import PAGE, ev, header

S = 1_000_000_000
BASE = 0x7F0000000000
COMMS = ["postgres", "java", "nginx", "redis", "python3", "chrome"]


def capture(seconds: int = 20, seed: int = 1, processes: int = 6) -> List[Dict[str, Any]]:
    rng = random.Random(seed)
    records: List[Dict[str, Any]] = [header()]
    live: Dict[int, Dict[int, int]] = {i: {} for i in range(processes)}  # process -> start -> pages
    for second in range(seconds):
        for step in range(20):
            ts = second * S + step * (S // 20) + 1
            i = rng.randrange(processes)
            mm, pid, comm = 0xFFFF888000100000 + (i << 20), 100 + i, COMMS[i % len(COMMS)]
            if live[i] and rng.random() < 0.4:
                start = rng.choice(sorted(live[i]))
                pages = live[i].pop(start)
                records.append(ev("unmap", ts, start, start + pages * PAGE, mm=mm, tgid=pid, comm=comm))
            else:
                pages = 1 << rng.randrange(0, 9 + i)
                start = BASE + (i << 36) + rng.randrange(1 << 20) * (1 << 22)
                if start in live[i]:
                    continue
                live[i][start] = pages
                records.append(ev("map", ts, start, start + pages * PAGE, mm=mm, tgid=pid, comm=comm))
        sampled = [{"pid": 100 + i, "mm": f"{0xFFFF888000100000 + (i << 20):#x}",
                    "resident_bytes": sum(live[i].values()) * PAGE // 2,
                    "smaps_flagged_bytes": sum(live[i].values()) * PAGE, "rss_bytes": 1 << 30,
                    "vsize_bytes": 1 << 34, "rss_share": round(sum(live[i].values()) * PAGE / 2 / (1 << 30), 6),
                    "vsize_share": round(sum(live[i].values()) * PAGE / (1 << 34), 6)}
                   for i in range(processes) if live[i]]
        resident = sum(int(p["resident_bytes"]) for p in sampled)
        records.append({"type": "resident", "ts": (second + 1) * S - 1, "source": "smaps", "mem_total_bytes": 16 << 30,
                        "flagged_resident_bytes": resident, "ram_share": round(resident / (16 << 30), 6),
                        "processes_sampled": len(sampled), "sample_ns": 1_500_000, "processes": sampled})
    records.append({"type": "end", "ts": seconds * S})
    return records


def write(path: Path, records: List[Dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in records))


if __name__ == "__main__":
    write(Path(sys.argv[1]), capture(int(sys.argv[2]) if len(sys.argv) > 2 else 20,
                                     int(sys.argv[3]) if len(sys.argv) > 3 else 1))
