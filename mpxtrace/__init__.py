"""mpxtrace: follow VMAs carrying a vm_flags bit (Intel MPX bounds tables by default) live with eBPF.

Data flow, one module each: bpf/ (kernel program) -> events (stream layout) -> tracer
(ordering, log) -> model (per-address-space ranges) -> stats (histograms, summary) -> render.
"""
from __future__ import annotations

__version__ = "0.1.0"
