"""Outputs built on records and Session state only: live screen, Prometheus metrics, plots,
Perfetto traces.  Each needs an optional extra (see pyproject.toml); importing this package
imports none of them."""
