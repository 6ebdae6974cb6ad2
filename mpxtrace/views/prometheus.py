"""``trace --prometheus [ADDR:]PORT``: live metrics through the standard Prometheus client.

The tracer's loop mutates the Session while the HTTP server thread answers scrapes, so the
collector never reads the Session: ``publish()`` (called on the tracer's thread) turns it into
plain values, and a scrape serves the latest of those.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Tuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry
from prometheus_client import start_http_server

from ..events import COUNTERS
from ..stats import Log2Histogram, Session

__all__ = ["MetricsView", "parse_listen", "serve"]

PROCESS_LABELS = ["pid", "comm", "mm"]


def parse_listen(text: str) -> Tuple[str, int]:
    """`9100`, `:9100`, `0.0.0.0:9100`, `[::1]:9100` -> (address, port); 127.0.0.1 unless given."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host = ""
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"--prometheus {text!r}: expected [ADDR:]PORT, e.g. 9464 or 0.0.0.0:9464") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"--prometheus {text!r}: port must be 0-65535")
    return host, number


def log2_buckets(hist: Log2Histogram) -> List[Tuple[str, float]]:
    """Cumulative Prometheus buckets from log2 ones.  Log2 bucket [2^(k-1), 2^k) holds integers up
    to 2^k-1, so its bound is le="2^k-1" and stays exact: a 4096-byte allocation is first counted
    at le="8191"."""
    out: List[Tuple[str, float]] = []
    running = 0
    for key in sorted(hist.buckets):
        running += hist.buckets[key]
        out.append((str((1 << key) - 1), float(running)))
    out.append(("+Inf", float(hist.count)))
    return out


def _loss_sources(session: Session) -> List[str]:
    """Where the tracer can lose events: its buffer, and each loss counter of the kernel program."""
    buffer = {"ring": ["ring_buffer"], "perf": ["perf_buffer"]}.get(str(session.header.get("buffer")), [])
    return buffer + [name for name in COUNTERS if name != "lost_submit"] + ["probe_missed"]


@dataclass
class _Published:
    processes: List[Tuple[List[str], Dict[str, float]]] = field(default_factory=list)
    counters: Dict[str, float] = field(default_factory=dict)
    lost: Dict[str, float] = field(default_factory=dict)
    gauges: Dict[str, float] = field(default_factory=dict)
    histograms: Dict[str, Tuple[List[Tuple[str, float]], float]] = field(default_factory=dict)
    kernel_events: Dict[str, float] = field(default_factory=dict)  # the kernel's own counts, by kind


class MetricsView:
    """A prometheus_client collector over the latest published Session state."""

    def __init__(self, flag: str = "") -> None:
        self.flag = flag
        self._lock = threading.Lock()
        self._data = _Published()

    def publish(self, session: Session) -> None:
        resident = {(p["pid"], p.get("mm")): p for p in (session.resident or {}).get("processes", [])}
        data = _Published()
        for space in session.model.live_spaces():
            if not space.live_bytes:
                continue
            mm = f"{space.mm:#x}" if space.mm is not None else ""
            values = {"live_bytes": float(space.live_bytes), "live_vmas": float(space.live_vmas)}
            sample = resident.get((space.pid, mm or None))
            if sample is not None:
                values["resident_bytes"] = float(sample["resident_bytes"])
            if space.lost_events:
                values["lost_events"] = float(space.lost_events)
            data.processes.append(([str(space.pid), space.comm, mm], values))
        spaces = session.model.spaces
        totals = session.model.totals()  # exited spaces the model folded count too: counters never go down
        for name in ("allocations", "frees", "allocated_bytes", "freed_bytes"):
            data.counters[name] = float(totals[name])
        data.counters["events"] = float(session.model.events)
        data.lost = dict.fromkeys(_loss_sources(session), 0.0)  # at 0 from the start, so increase() sees the first
        data.lost.update({k: float(v) for k, v in session.lost.items()})
        data.gauges["live_bytes"] = float(sum(s.live_bytes for s in spaces))
        data.gauges["live_vmas"] = float(sum(s.live_vmas for s in spaces))
        if session.resident is not None:
            data.gauges["resident_bytes"] = float(session.resident["flagged_resident_bytes"])
            data.gauges["ram_share"] = float(session.resident["ram_share"])
        for name, hist in (("allocation_size_bytes", session.stats.sizes), ("lifetime_ns", session.stats.lifetimes)):
            data.histograms[name] = (log2_buckets(hist), float(hist.total))
        tallies = session.tallies  # counted in the kernel: complete when the stream lost events (tallies.py)
        if tallies is not None:
            data.kernel_events = {kind: float(count) for kind, count in tallies["emitted"].items()}
            names = {"mapped": "kernel_mapped_size_bytes", "destroyed": "kernel_destroyed_size_bytes",
                     "lifetime": "kernel_lifetime_ns"}
            for key, hist in session.kernel_histograms().items():
                data.histograms[names[key]] = (log2_buckets(hist), float(hist.total))
        with self._lock:
            self._data = data

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            data = self._data
        flag = f" carrying {self.flag}" if self.flag else ""
        per_process = {
            "live_bytes": GaugeMetricFamily("mpxtrace_process_live_bytes", f"Virtual size of the VMAs{flag}, per process",
                                            labels=PROCESS_LABELS),
            "live_vmas": GaugeMetricFamily("mpxtrace_process_live_vmas", f"Number of VMAs{flag}, per process",
                                           labels=PROCESS_LABELS),
            "resident_bytes": GaugeMetricFamily("mpxtrace_process_resident_bytes",
                                                f"Resident bytes (smaps Rss) of the VMAs{flag}, per process",
                                                labels=PROCESS_LABELS),
            "lost_events": GaugeMetricFamily("mpxtrace_process_lost_events",
                                             "Events of its address space the stream refused, counted in the kernel "
                                             "by address-space slot (at most: a slot may be shared)",
                                             labels=PROCESS_LABELS),
        }
        for labels, values in data.processes:
            for name, value in values.items():
                per_process[name].add_metric(labels, value)
        yield from per_process.values()
        docs = {"allocations": "Allocations (births of flagged memory)", "frees": "Allocations fully released",
                "allocated_bytes": "Bytes allocated", "freed_bytes": "Bytes released", "events": "Kernel events applied"}
        for name, value in data.counters.items():
            yield CounterMetricFamily(f"mpxtrace_{name}", docs[name], value=value)
        if data.kernel_events:
            kernel = CounterMetricFamily("mpxtrace_kernel_events", "Events the kernel program emitted, by kind, "
                                         "counted in the kernel (complete when the stream lost some)", labels=["kind"])
            for kind, value in sorted(data.kernel_events.items()):
                kernel.add_metric([kind], value)
            yield kernel
        lost = CounterMetricFamily("mpxtrace_lost_events", "Events lost, by where they were lost", labels=["source"])
        for source, value in sorted(data.lost.items()):
            lost.add_metric([source], value)
        yield lost
        gauge_docs = {"live_bytes": f"Virtual size of all VMAs{flag}", "live_vmas": f"Number of VMAs{flag}",
                      "resident_bytes": f"Resident bytes of all VMAs{flag} (last sample)",
                      "ram_share": "Resident flagged bytes / MemTotal (last sample)"}
        for name, value in data.gauges.items():
            yield GaugeMetricFamily(f"mpxtrace_{name}", gauge_docs[name], value=value)
        for name, (buckets, total) in data.histograms.items():
            yield HistogramMetricFamily(f"mpxtrace_{name}", f"Log2 histogram of {name.replace('_', ' ')}",
                                        buckets=buckets, sum_value=total)


def serve(listen: str, view: MetricsView) -> Tuple[object, int]:
    """Start the HTTP server thread; (server, bound port)."""
    host, port = parse_listen(listen)
    registry = CollectorRegistry()
    registry.register(view)
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server, int(server.server_port)
