"""Benchmark suite, host parts (issue 9): how the front end keeps up.  Asserts nothing.

    .venv/bin/python bench/frontend.py [--quick] [--out bench/results/host.json] [--compare TREE] [--only-report]

    (--compare TREE: `report` from another source tree too, on the same log, rounds interleaved:
     git archive 4b938e9 | tar -x -C /tmp/before; .venv/bin/python bench/frontend.py --compare /tmp/before)

Every figure comes with its baseline, measured in the same run (times are CPU seconds):

- map order: N one-page maps into one address space through the model, at descending
  addresses (the kernel's usual order) against ascending ones, N = 100k and 200k;
- memory: peak RSS per live VMA with 1,000,000 live one-page VMAs over 1,000 address spaces,
  for a Session (what `trace` and `report` run) and, to attribute it, for the two RangeMaps
  per space alone and for the allocation store alone (each in a fresh process);
- records/s through Session.apply against json-decoding the same records
  (the stream of bench/model_throughput.py);
- the live drain rate: events/s through what `trace` does with each kernel event (decode ->
  model -> log, bench/live_drain.py), against json.loads of the log lines it wrote;
- `mpxtrace report` of a 1,000,000-event synthetic log against json.loads of its lines.

Results go to a JSON file naming the machine and Python (default bench/results/host.json).
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from live_drain import describe as describe_drain, live_drain  # noqa: E402
from model_throughput import MASK, stream  # noqa: E402

from mpxtrace.eventlog import LOG_VERSION, _fast_decode  # noqa: E402
from mpxtrace.model import Allocations, Model  # noqa: E402
from mpxtrace.records import NAMED_FIELDS_VERSION  # noqa: E402
from mpxtrace.rangemap import RangeMap  # noqa: E402
from mpxtrace.stats import Session  # noqa: E402

PAGE = 4096
TOP = 0x7FFF00000000  # where descending maps start, as the kernel's top-down allocator does
MM0 = 0xFFFF888000000000
HEADER: Dict[str, Any] = {"type": "header", "format": "mpxtrace-log", "version": LOG_VERSION, "start_ns": 0,
                          "interval_ns": 10**9, "mask": MASK, "names": ["VM_LOCKED"], "mnemonics": ["lo"]}


def map_event(ts: int, mm: int, start: int) -> Dict[str, Any]:
    """One one-page map as decode_raw gives it; the kernel reports the VMA is exactly that page."""
    end = start + PAGE
    return {"type": "event", "kind": "map", "ts": ts, "mm": mm, "tgid": 100, "tid": 100, "owner": True,
            "comm": "w", "start": start, "end": end, "flags": MASK, "ext": [start, end]}


def seconds(fn: Callable[[], object]) -> float:
    """CPU seconds of this process and its children: the work is single-threaded and CPU-bound,
    so this equals wall time on an idle machine and is barely moved by other load (the lab's
    QEMUs share this host's two cores)."""
    gc.collect()
    t0 = _cpu()
    fn()
    return _cpu() - t0


def _cpu() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


# -- map order ---------------------------------------------------------------------------------------
def map_order(n: int, rounds: int = 2) -> Dict[str, float]:
    """Pages two apart (so nothing merges), applied to a fresh Model in either order; rounds
    alternate and the best of each is kept, so a busy machine disturbs the ratio less."""
    addrs = [TOP - 2 * PAGE * i for i in range(n)]
    best: Dict[str, float] = {}
    for _ in range(rounds):
        for order, seq in (("ascending", addrs[::-1]), ("descending", addrs)):
            records = [map_event(i, MM0, a) for i, a in enumerate(seq)]
            model = Model(MASK)
            took = seconds(lambda: model.apply_all(records))
            best[order] = min(best.get(order, took), took)
            del records, model
    return {"ascending_s": best["ascending"], "descending_s": best["descending"],
            "descending_over_ascending": best["descending"] / best["ascending"]}


# -- memory (each case in a fresh process: peak RSS is per process) ----------------------------------
def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _interleaved(vmas: int, spaces: int) -> Iterator[Dict[str, Any]]:
    """Round-robin over the spaces, each growing downwards; made lazily so they cost no memory."""
    per = vmas // spaces
    ts = 0
    for i in range(per):
        for s in range(spaces):
            ts += 1
            yield map_event(ts, MM0 + s * 0x1000, TOP - 2 * PAGE * i)


def _memory_child(case: str, vmas: int, spaces: int) -> Dict[str, Any]:
    gc.collect()
    before = _rss_kib("VmRSS")
    keep: Any
    if case == "session":
        session = Session(dict(HEADER))
        for rec in _interleaved(vmas, spaces):
            session.apply(rec)
        live = session.summary()["totals"]["live_vmas"]
        keep = session
    elif case == "rangemaps":  # what AddressSpace holds per VMA: vmas (-> flags) and pieces (-> allocation id)
        maps = [(RangeMap[int](), RangeMap[int]()) for _ in range(spaces)]
        ident = 1
        for i in range(vmas // spaces):
            for vm, pieces in maps:
                start = TOP - 2 * PAGE * i
                vm.insert(start, start + PAGE, MASK | 0x73)
                pieces.insert(start, start + PAGE, ident)
                ident += 1
        live = sum(len(vm) for vm, _ in maps)
        keep = maps
    elif case == "allocations":  # Model._allocs: one allocation per live one-page mapping
        allocs = Allocations()
        for ident in range(1, vmas + 1):
            allocs.new(ident, PAGE, 10**15 + ident, 0)
        live = len(allocs)
        keep = allocs
    else:
        raise SystemExit(f"unknown memory case {case}")
    peak = _rss_kib("VmHWM")
    del keep
    return {"live_vmas": live, "bytes_per_vma": (peak - before) * 1024 / live}


def memory(vmas: int, spaces: int) -> Dict[str, Any]:
    out: Dict[str, Any] = {"live_vmas": vmas, "address_spaces": spaces}
    for case in ("session", "rangemaps", "allocations"):
        proc = subprocess.run([sys.executable, __file__, "--memory-child", case, str(vmas), str(spaces)],
                              check=True, stdout=subprocess.PIPE, universal_newlines=True)
        out[case] = json.loads(proc.stdout)
    return out


# -- records/s through the model -----------------------------------------------------------------------
def throughput(n: int) -> Dict[str, float]:
    lines = [json.dumps(r) for r in stream(n)]
    decoded: List[Any] = []
    t_decode = seconds(lambda: decoded.extend(json.loads(line) for line in lines))
    session = Session(dict(HEADER))

    def apply() -> None:
        for rec in decoded:
            session.apply(rec)
    t_apply = seconds(apply)
    return {"records": len(decoded), "json_decode_per_s": len(decoded) / t_decode,
            "session_apply_per_s": len(decoded) / t_apply, "apply_over_decode": t_apply / t_decode}


# -- report of a log ----------------------------------------------------------------------------------
def _report_seconds(tree: Path, log: Path, stdlib: bool) -> float:
    """CPU seconds of `mpxtrace report --json LOG` run from `tree` (its own mpxtrace package);
    with `stdlib`, as a lab guest runs it: the standard library's decoder only (no extra `fast`:
    neither msgspec's decoder nor its typed event structs, mpxtrace/fastevents.py)."""
    without_fast = "log._fast_decode = log._read_event = None; " if stdlib else ""
    return seconds(lambda: subprocess.run(
        [sys.executable, "-c", f"import sys, mpxtrace.eventlog as log; {without_fast}"
         "from mpxtrace.cli import main; main(sys.argv[1:])", "report", "--json", str(log)],
        check=True, stdout=subprocess.DEVNULL, cwd=str(tree)))


def report(n: int, compare: Optional[Path] = None, rounds: int = 2) -> Dict[str, Any]:
    """`report` against json.loads of the same lines; with `compare`, also the tree there (e.g. the
    commit before a change, from `git archive`) on the same log.  Rounds alternate; the best of
    each is kept, so a busy machine disturbs the ratios less."""
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "synthetic.ndjson"
        with open(log, "w", encoding="utf-8") as fh:
            # version 2: what these records are (events and an end), and what an older tree reads too
            fh.write(json.dumps(dict(HEADER, version=NAMED_FIELDS_VERSION), separators=(",", ":")) + "\n")
            last = 0
            for rec in stream(n):
                fh.write(json.dumps(rec, separators=(",", ":")) + "\n")
                last = rec["ts"]
            fh.write(json.dumps({"type": "end", "ts": last + 1}) + "\n")

        def decode() -> None:
            with open(log, encoding="utf-8") as lines:
                for line in lines:
                    json.loads(line)
        runs: Dict[str, Callable[[], float]] = {
            "json_loads_s": lambda: seconds(decode),
            "report_s": lambda: _report_seconds(HERE.parent, log, stdlib=False),
            "report_stdlib_decoder_s": lambda: _report_seconds(HERE.parent, log, stdlib=True)}
        if compare is not None:
            runs["compared_report_s"] = lambda: _report_seconds(compare, log, stdlib=False)
            runs["compared_report_stdlib_decoder_s"] = lambda: _report_seconds(compare, log, stdlib=True)
        best: Dict[str, float] = {}
        for _ in range(rounds):
            for name, run in runs.items():
                took = run()
                best[name] = min(best.get(name, took), took)
    t_decode = best["json_loads_s"]
    out: Dict[str, Any] = {"events": n, "decoder": "msgspec" if _fast_decode is not None else "json", **best,
                           "report_per_s": n / best["report_s"], "report_over_json_loads": best["report_s"] / t_decode,
                           "report_stdlib_over_json_loads": best["report_stdlib_decoder_s"] / t_decode}
    if compare is not None:
        out.update(compared_tree=str(compare),
                   compared_report_over_json_loads=best["compared_report_s"] / t_decode,
                   compared_report_stdlib_over_json_loads=best["compared_report_stdlib_decoder_s"] / t_decode)
    return out


# -- the suite ---------------------------------------------------------------------------------------
def machine() -> Dict[str, Any]:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "kernel": platform.release(), "machine": platform.machine(),
            "python": platform.python_version(), "implementation": platform.python_implementation(),
            "load_average_at_start": os.getloadavg()[0]}  # other work on the machine skews timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of every size (a smoke run; not for README)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "host.json")
    parser.add_argument("--compare", type=Path, metavar="TREE",
                        help="also time `report` and the live drain from this source tree on the same data (e.g. "
                             "the commit before a change: git archive COMMIT | tar -x -C TREE)")
    parser.add_argument("--only-report", action="store_true", help="the `report` figure alone")
    parser.add_argument("--memory-child", nargs=3, metavar=("CASE", "VMAS", "SPACES"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        case, vmas, spaces = args.memory_child
        print(json.dumps(_memory_child(case, int(vmas), int(spaces))))
        return

    scale = 10 if args.quick else 1
    results: Dict[str, Any] = {"suite": "host", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"), "machine": machine(), "quick": args.quick}
    print(f"host: {results['machine']['cpu']}, {results['machine']['cpus']} CPUs, "
          f"Python {results['machine']['python']}, load average {results['machine']['load_average_at_start']:.1f}")

    if args.only_report:
        _report_figure(results, scale, args.compare)
        _write(results, args.out)
        return

    results["map_order"] = {}
    for n in (100_000 // scale, 200_000 // scale):
        r = results["map_order"][str(n)] = map_order(n)
        print(f"{n:>9,} maps in one space: ascending {r['ascending_s']:.2f} s, descending {r['descending_s']:.2f} s"
              f" -> descending/ascending {r['descending_over_ascending']:.2f}x")

    m = results["memory"] = memory(1_000_000 // scale, 1_000 // scale)
    print(f"{m['live_vmas']:>9,} live VMAs over {m['address_spaces']} spaces, peak RSS per VMA: "
          f"Session {m['session']['bytes_per_vma']:.0f} B (RangeMaps alone {m['rangemaps']['bytes_per_vma']:.0f} B, "
          f"allocation store alone {m['allocations']['bytes_per_vma']:.0f} B)")

    t = results["throughput"] = throughput(200_000 // scale)
    print(f"{t['records']:>9,} records: Session.apply {t['session_apply_per_s']:,.0f}/s vs json decode "
          f"{t['json_decode_per_s']:,.0f}/s -> apply/decode {t['apply_over_decode']:.2f}x")

    d = results["live_drain"] = live_drain(300_000 // scale, args.compare)
    print(describe_drain(d))

    r = _report_figure(results, scale, args.compare)

    # issue 9's goals, read against the figures above (reported, not asserted)
    biggest = results["map_order"][str(200_000 // scale)]["descending_over_ascending"]
    results["goals"] = {
        "descending_within_1.5x_of_ascending": biggest <= 1.5,
        "at_most_200_bytes_per_live_vma": m["session"]["bytes_per_vma"] <= 200,
        "report_no_slower_than_json_loads": r["report_over_json_loads"] <= 1.0,
    }
    for goal, met in results["goals"].items():
        print(f"goal {goal}: {'met' if met else 'NOT met'}")

    _write(results, args.out)


def _report_figure(results: Dict[str, Any], scale: int, compare: Optional[Path]) -> Dict[str, Any]:
    r = results["report"] = report(1_000_000 // scale, compare)
    print(f"{r['events']:>9,} events: mpxtrace report {r['report_s']:.1f} s ({r['report_per_s']:,.0f}/s, {r['decoder']} "
          f"decoder) vs json.loads of the lines {r['json_loads_s']:.1f} s -> report/json {r['report_over_json_loads']:.2f}x; "
          f"standard library decoder only {r['report_stdlib_decoder_s']:.1f} s -> "
          f"{r['report_stdlib_over_json_loads']:.2f}x")
    if compare is not None:
        print(f"{'':>9}  {compare}: report {r['compared_report_s']:.1f} s -> {r['compared_report_over_json_loads']:.2f}x; "
              f"standard library decoder only {r['compared_report_stdlib_decoder_s']:.1f} s -> "
              f"{r['compared_report_stdlib_over_json_loads']:.2f}x")
    return r


def _write(results: Dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    os.replace(tmp, out)
    print(f"written {out}")


if __name__ == "__main__":
    main()
