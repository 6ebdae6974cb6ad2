"""Benchmark (host): the live drain rate, events/s through what `trace` does with each kernel
event (decode -> model -> log), without a kernel.  Asserts nothing.

    .venv/bin/python bench/live_drain.py [EVENTS] [--compare TREE] [--rounds N]

The synthetic stream of bench/model_throughput.py is laid out as the kernel's binary records
(bpf/mpxtrace_event.h), handed one by one to the tracer's buffer callback as BCC hands them
(an address), drained in batches of 64 as the trace loop does, applied to a Session and
written to a log file.  The baseline, in the same run: json-decoding the same records' lines
(what `report` pays at least).  With --compare, the same stream through the tracer of another
source tree (e.g. the commit before a change, from `git archive`), rounds interleaved; each
measurement runs in a fresh Python, and the best of the rounds is kept.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional

HERE = Path(__file__).resolve().parent
BATCH = 64  # events between drains, as in a loop that keeps up (one poll takes at most tracer.POLL_BATCH)


def _child(n: int) -> Dict[str, Any]:
    """Runs inside the tree under test (its mpxtrace first on sys.path)."""
    import ctypes

    import mpxtrace
    from mpxtrace.eventlog import LogWriter
    from mpxtrace.events import Kind, RawEvent
    from mpxtrace.flags import resolve_flags
    from mpxtrace.stats import Session
    from mpxtrace.tracer import TraceOptions, Tracer
    from model_throughput import MASK, stream  # after mpxtrace: it puts this bench's own tree first on sys.path

    records = stream(n)
    raws = (RawEvent * len(records))()
    for rec, raw in zip(records, raws):
        raw.kind, raw.ts_ns, raw.mm = Kind[rec["kind"].upper()], rec["ts"], rec["mm"]
        raw.tgid, raw.tid, raw.ctx, raw.comm = rec["tgid"], rec["tid"], int(rec["owner"]), rec["comm"].encode()
        raw.start, raw.end, raw.vm_flags = rec["start"], rec["end"], rec["flags"]
        raw.ext_start, raw.ext_end = rec.get("ext", (0, 0))
        raw.aux = rec.get("at", 0)
    addresses = [ctypes.addressof(raw) for raw in raws]
    tracer = Tracer(TraceOptions(resolve_flags(["lo"], None), seed=False), features=None)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "drain.ndjson"
        tracer._log = LogWriter(log)
        tracer.session = Session({"type": "header", "start_ns": 0, "interval_ns": 10**9, "mask": MASK})
        on_raw, drain = tracer._on_raw, tracer._drain
        t0 = time.process_time()
        for i in range(0, len(addresses), BATCH):
            for address in addresses[i:i + BATCH]:
                on_raw(address)
            drain(None)
        tracer._log.close()
        took = time.process_time() - t0
        size = log.stat().st_size
        assert tracer.session.model.events == len(records), "every event reached the model"
        with open(log, "rb") as fh:
            lines = fh.readlines()
    t0 = time.process_time()
    for line in lines:
        json.loads(line)
    decode = time.process_time() - t0
    return {"events": len(records), "drain_s": took, "log_bytes": size, "json_loads_s": decode, "package": mpxtrace.__file__}


def _run(tree: Path, n: int) -> Dict[str, Any]:
    code = (f"import sys, json; sys.path[:0] = [{str(tree)!r}, {str(HERE)!r}]; "
            f"from live_drain import _child; print(json.dumps(_child({n})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=str(tree))
    if out.returncode:
        raise SystemExit(f"the drain run from {tree} failed:\n{out.stderr[-2000:]}")
    result: Dict[str, Any] = json.loads(out.stdout.splitlines()[-1])
    if not Path(result["package"]).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"measured {result['package']}, not the tree {tree}")
    return result


def live_drain(n: int, compare: Optional[Path] = None, rounds: int = 2) -> Dict[str, Any]:
    """Best of `rounds` for this tree (and `compare`), rounds interleaved."""
    trees = {"this": HERE.parent, **({"compared": compare} if compare is not None else {})}
    best: Dict[str, Dict[str, Any]] = {}
    for _ in range(rounds):
        for name, tree in trees.items():
            r = _run(tree, n)
            if name not in best or r["drain_s"] < best[name]["drain_s"]:
                best[name] = r
    this = best["this"]
    n = this["events"]
    out: Dict[str, Any] = {"events": n, "drain_s": this["drain_s"], "events_per_s": n / this["drain_s"],
                           "json_loads_s": this["json_loads_s"],
                           "drain_over_json_loads": this["drain_s"] / this["json_loads_s"]}
    if compare is not None:
        other = best["compared"]
        out.update(compared_tree=str(compare), compared_drain_s=other["drain_s"],
                   compared_events_per_s=n / other["drain_s"], speedup=other["drain_s"] / this["drain_s"])
    return out


def describe(r: Dict[str, Any]) -> str:
    text = (f"{r['events']:>9,} events through the live path (decode -> model -> log): {r['events_per_s']:,.0f}/s, "
            f"{r['drain_s']:.2f} s vs json.loads of the lines {r['json_loads_s']:.2f} s -> "
            f"{r['drain_over_json_loads']:.2f}x")
    if "compared_tree" in r:
        text += (f"; {r['compared_tree']}: {r['compared_events_per_s']:,.0f}/s -> this tree "
                 f"{r['speedup']:.2f}x as fast")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("events", nargs="?", type=int, default=300_000)
    parser.add_argument("--compare", type=Path, metavar="TREE")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(describe(live_drain(args.events, args.compare, args.rounds)))


if __name__ == "__main__":
    main()
