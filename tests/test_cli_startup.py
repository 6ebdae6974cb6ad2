"""The kernel-facing commands' start-up (mount, probe, checks) and what trace/doctor/--ebpf make
of it, on injected kernels: no test probes or changes this host, none can run a real trace."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List

import pytest
from click.testing import CliRunner

import mpxtrace.tracer as tracer_mod
from mpxtrace import doctor
from mpxtrace.cli import main
from mpxtrace.kernel import features as kernel_probe
from mpxtrace.kernel.features import KernelFeatures
from mpxtrace.program import ProgramConfig
from mpxtrace.stats import Session

from fake_kernel import KERNEL_510, features

CAPABLE = features(KERNEL_510)
# Debian's default: lockdown from Secure Boot, and no kprobe_events (this project's CI host)
LOCKED_DOWN = features(KERNEL_510, lockdown="confidentiality", kprobe_events=False)


def use_host(monkeypatch: pytest.MonkeyPatch, kernel: KernelFeatures, checks: Any = None) -> None:
    """What examine_host() would have found: `kernel`, checked by run_checks unless `checks` is given."""
    found = doctor.Host(kernel, doctor.run_checks(kernel) if checks is None else checks, 0.25)
    monkeypatch.setattr(doctor, "examine_host", lambda: found)


def test_examine_host_mounts_only_as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    mounts: List[int] = []
    monkeypatch.setattr(kernel_probe, "mount_pseudo_filesystems", lambda: mounts.append(1))
    monkeypatch.setattr(kernel_probe, "probe_kernel", lambda: LOCKED_DOWN)
    monkeypatch.setattr(doctor.os, "geteuid", lambda: 1000)
    host = doctor.examine_host()
    assert mounts == [] and host.features is LOCKED_DOWN
    assert {c.name for c in host.problems} >= {"lockdown", "kprobes", "root"}
    monkeypatch.setattr(doctor.os, "geteuid", lambda: 0)
    doctor.examine_host()
    assert mounts == [1]


def test_trace_on_a_host_that_cannot_trace_says_why_and_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    use_host(monkeypatch, LOCKED_DOWN)
    result = CliRunner().invoke(main, ["trace", "--flag", "VM_LOCKED", "1"])
    assert result.exit_code == 1, result.output
    assert "cannot trace on this machine (test)" in result.output
    assert "- lockdown: lockdown=confidentiality" in result.output and "- kprobes:" in result.output
    assert "mpxtrace lab -- trace" in result.output


class DryTracer(tracer_mod.Tracer):
    """The real tracer's planning, without BCC: start() only plans, run() ends at once."""

    made: List["DryTracer"] = []

    def start(self) -> Session:
        DryTracer.made.append(self)
        self.planned = self.program_config()
        self.session = Session(tracer_mod.make_header(self.options, self.planned, self.features, 0))
        return self.session

    @property
    def config(self) -> ProgramConfig:
        return self.planned

    def run(self) -> Session:
        assert self.session is not None
        return self.session


def test_trace_on_a_host_that_can_trace_builds_the_tracer_from_options_and_features(
        monkeypatch: pytest.MonkeyPatch) -> None:
    use_host(monkeypatch, CAPABLE, checks=[doctor.Check("root", True, "root")])
    monkeypatch.setattr(tracer_mod, "Tracer", DryTracer)
    DryTracer.made.clear()
    result = CliRunner().invoke(main, ["trace", "--flag", "lo", "--json", "--duration", "2", "-p", "7"])
    assert result.exit_code == 0, result.output
    (tracer,) = DryTracer.made
    assert tracer.features is CAPABLE
    assert (tracer.options.tracked.mask, tracer.options.duration, list(tracer.options.pids)) == (0x2000, 2.0, [7])
    records = [json.loads(line) for line in result.output.splitlines()]
    attached = records[0]
    assert attached["type"] == "attached" and attached["buffer"] == "ring"
    assert {a["symbol"]: a["mode"] for a in attached["attach"]}["mmap_region"] == "fentry"
    assert attached["startup_s"]["probe"] == 0.25
    assert records[-1]["type"] == "summary"


def cflags(output: str) -> List[str]:
    first = output.splitlines()[0]
    assert first.startswith("// cflags: ")
    return first.split()[2:]


def test_ebpf_prints_the_config_the_tracer_would_load(monkeypatch: pytest.MonkeyPatch) -> None:
    use_host(monkeypatch, CAPABLE)
    auto = CliRunner().invoke(main, ["trace", "--flag", "lo", "--ebpf"])
    assert auto.exit_code == 0, auto.output
    assert {"-DTRACK_MASK=0x2000ULL", "-DFENTRY_mmap_region=1", "-DUSE_RINGBUF=1"} <= set(cflags(auto.output))
    assert "mpxtrace_event.h" in auto.output  # the kernel program follows its flags
    kprobes = CliRunner().invoke(main, ["trace", "--flag", "lo", "--ebpf", "--attach", "kprobe", "--buffer", "perf"])
    assert kprobes.exit_code == 0, kprobes.output
    flags = cflags(kprobes.output)
    assert not any(f.startswith(("-DFENTRY_", "-DUSE_RINGBUF")) for f in flags) and "-DTRACK_MASK=0x2000ULL" in flags


def test_ebpf_on_a_kernel_without_a_required_hook_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    funcs = dict(KERNEL_510)
    del funcs["vm_area_free"]
    use_host(monkeypatch, features(funcs))
    result = CliRunner().invoke(main, ["trace", "--flag", "lo", "--ebpf"])
    assert result.exit_code == 1 and "vm_area_free" in result.output and "Traceback" not in result.output


def test_doctor_on_a_host_that_cannot_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    use_host(monkeypatch, LOCKED_DOWN)
    result = CliRunner().invoke(main, ["doctor", "--json"])
    doc = json.loads(result.output)
    ok = {c["name"]: c["ok"] for c in doc["checks"]}
    assert result.exit_code == 1 and doc["can_trace"] is False
    assert ok["lockdown"] is False and ok["kprobes"] is False and ok["plan"] is False
    assert {n for n in ok if n.startswith("hook:")} >= {"hook:mmap", "hook:free", "hook:split", "hook:merge"}


def test_doctor_on_a_host_that_can_trace(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(doctor.os, "geteuid", lambda: 0)
    monkeypatch.setattr(doctor, "_bcc_check", lambda: doctor.Check("bcc", True, "BCC (stand-in)"))
    use_host(monkeypatch, features(KERNEL_510, headers=tmp_path))
    result = CliRunner().invoke(main, ["doctor", "--json"])
    doc = json.loads(result.output)
    ok = {c["name"]: c["ok"] for c in doc["checks"]}
    assert result.exit_code == 0 and doc["can_trace"] is True
    assert ok["fentry"] is True and ok["ring_buffer"] is True and ok["plan"] is True
    text = CliRunner().invoke(main, ["doctor"])
    assert text.exit_code == 0 and "This machine can trace." in text.output
