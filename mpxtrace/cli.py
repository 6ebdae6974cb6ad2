"""Command line: trace, report, scan, doctor, lab."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional, Sequence, Tuple

import click

from . import render, smaps
from .eventlog import LogError, open_log
from .events import Record
from .flags import FlagError, TrackedFlags, parse_mask, resolve_flags
from .options import DURATION, INTERVAL, PID, new_files, unique_pids
from .output import OutputGuard, QuietOutputGroup, print_json
from .stats import Session

FLAG_HELP = ("vm_flags bit to follow: mpx (default), a kernel name (VM_LOCKED, VM_NORESERVE, VM_SHADOW_STACK, "
             "VM_HUGEPAGE, ...) or an smaps mnemonic (lo, nr, ss, hg, ...). Repeatable.")


def _tracked(flag: Sequence[str], mask: Optional[str]) -> TrackedFlags:
    try:
        return resolve_flags(list(flag), parse_mask(mask) if mask else None)
    except FlagError as err:
        raise click.UsageError(str(err)) from None


@click.group(cls=QuietOutputGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mpxtrace")
def main() -> None:
    """Follow, live, every VMA whose vm_flags carry a flag (Intel MPX bounds tables by default),
    from birth to death, and the memory it costs per process.

    \b
    Start with `mpxtrace doctor` to see what this machine allows.
    """


@main.command()
@click.option("--flag", "flag", multiple=True, metavar="NAME", help=FLAG_HELP)
@click.option("--mask", metavar="HEX", help="Raw vm_flags mask to follow, e.g. 0x2000.")
@click.option("-p", "--pid", "pids", multiple=True, type=PID, metavar="PID",
              help="Only these processes (and children they fork). Repeatable.")
@click.option("--log", "log", type=click.Path(dir_okay=False, path_type=Path),
              help="Capture every event to this new file (mode 0600, never overwritten) for `mpxtrace report`.")
@click.option("--json", "as_json", is_flag=True, help="NDJSON: one JSON object per line, a summary record last.")
@click.option("--duration", type=DURATION, metavar="SECONDS", help="Stop after this many seconds.")
@click.option("--verify", type=click.FloatRange(min=0.1, max=86400.0), is_flag=False, flag_value=10.0, default=None,
              metavar="[SECONDS]",
              help="Check the live picture against /proc/PID/smaps every SECONDS (default 10): each VMA that "
                   "differs becomes a `drift` record, counted in the summary.")
@click.option("--resync/--no-resync", "resync", default=True, show_default=True,
              help="After lost events, re-read every process's flagged VMAs from /proc/PID/smaps (once it is "
                   "quiet enough to be exact), so live bytes and VMAs stay right under overload.")
@click.option("--attach", type=click.Choice(["auto", "fentry", "kprobe"]), default="auto", show_default=True,
              help="fentry/fexit where the kernel supports them, else kprobes.")
@click.option("--buffer", type=click.Choice(["auto", "ring", "perf"]), default="auto", show_default=True,
              help="BPF ring buffer where available, else perf buffer.")
@click.option("--buffer-pages", type=click.IntRange(1, 1 << 18), metavar="N",
              help="Buffer size in pages (a power of two; per CPU for perf). Default: 1024 ring, 256 perf.")
@click.option("--offsets", type=click.Choice(["auto", "btf", "headers"]), default="auto", hidden=True,
              help="Where structure offsets come from (testing).")
@click.option("--no-seed", is_flag=True, help="Do not count flagged VMAs that existed before tracing began.")
@click.option("--ebpf", is_flag=True, hidden=True, help="Print the kernel program and its -D flags, then exit.")
@click.option("--ready-file", type=click.Path(dir_okay=False, path_type=Path), hidden=True,
              help="Create this file once attached (for scripts that start a workload after).")
@click.option("--cumulative", is_flag=True, help="Interval reports count since the start, not since the last report.")
@click.option("--live/--no-live", "live", default=True, show_default=True,
              help="Full-screen view when stdout is a terminal (extra `live`); --no-live prints plain reports.")
@click.option("--resident/--no-resident", "sample_resident", default=True, show_default=True,
              help="Sample the resident bytes of flagged VMAs from /proc every interval.")
@click.option("--prometheus", "prometheus", metavar="[ADDR:]PORT",
              help="Serve Prometheus metrics on this port (127.0.0.1 unless ADDR is given; extra `prometheus`).")
@click.argument("interval", type=INTERVAL, required=False)
@click.argument("count", type=click.IntRange(min=1), required=False)
def trace(flag: Tuple[str, ...], mask: Optional[str], pids: Tuple[int, ...], log: Optional[Path], as_json: bool,
          duration: Optional[float], attach: str, buffer: str, buffer_pages: Optional[int], offsets: str, no_seed: bool,
          verify: Optional[float], resync: bool,
          ebpf: bool,
          ready_file: Optional[Path], cumulative: bool, live: bool, sample_resident: bool, prometheus: Optional[str],
          interval: Optional[float], count: Optional[int]) -> None:
    """Trace live: a report every INTERVAL seconds (COUNT times), and a summary at exit (Ctrl-C).

    \b
    Examples:
      mpxtrace trace                          # MPX bounds tables (kernels 3.19-5.5 with MPX)
      mpxtrace trace --flag VM_LOCKED 5       # locked memory, a report every 5 s
      mpxtrace trace --flag nr -p 1234 --log run.ndjson
      mpxtrace trace --flag VM_SHADOW_STACK --json --duration 30
      kill -USR1 <mpxtrace pid>               # print the live picture now
      mpxtrace trace --flag nr --prometheus 9464 10   # metrics for Prometheus, a report every 10 s
    """
    from .reporting import IntervalReporter, live_screen_available
    from .doctor import examine_host
    from .kernel.hooks import PlanError
    from .program import BccMissing
    from .tracer import TraceOptions, Tracer

    if interval is not None and interval <= 0:
        raise click.UsageError("INTERVAL must be a positive number of seconds")
    if count is not None and interval is None:
        raise click.UsageError("COUNT needs an INTERVAL")
    pids = unique_pids(pids)
    new_files({"--log": log, "--ready-file": ready_file})
    if buffer_pages is not None and (buffer_pages < 1 or buffer_pages & (buffer_pages - 1)):
        raise click.UsageError("--buffer-pages must be a power of two (1, 2, 4, ...)")
    tracked = _tracked(flag, mask)
    host = examine_host()
    features, problems = host.features, host.problems
    if problems and not ebpf:
        lines = [f"mpxtrace cannot trace on this machine ({features.release}):"]
        lines += [f"  - {c.name}: {c.detail}" + (f"\n    fix: {c.fix}" if c.fix else "") for c in problems]
        lines.append("Run the tracer in a throwaway VM instead: mpxtrace lab -- trace " + " ".join(sys.argv[2:]))
        raise click.ClickException("\n".join(lines))
    reporter = IntervalReporter(as_json=as_json, cumulative=cumulative, sample_resident=sample_resident)
    if live and not as_json and not ebpf and live_screen_available():
        from .views.live import LiveScreen
        interval = interval or 1.0  # the screen refreshes every interval
        reporter.screen = LiveScreen(f"mpxtrace {tracked.describe()}", on_quit=lambda: tracer.request_stop())
    if prometheus and interval is None:  # metrics and resident samples refresh every second, nothing printed
        interval, reporter.quiet = 1.0, True
    options = TraceOptions(tracked=tracked, pids=pids, attach=attach, buffer=buffer, offsets=offsets,
                           interval=interval, count=count, duration=duration, log=log, seed=not no_seed,
                           buffer_pages=buffer_pages, verify=verify, resync=resync)
    if ebpf:
        from .program import source_text
        try:
            config = Tracer(options, features).program_config()
        except PlanError as err:
            raise click.ClickException(str(err)) from None
        click.echo("// cflags: " + " ".join(config.cflags()))
        click.echo(source_text())
        return
    def interval_report(session: Session, now: float) -> None:
        # the session cuts the interval (stats.Session.interval_snapshot); `now` is CLOCK_MONOTONIC like event times
        reporter.interval(session, int(now * 1e9))

    def snapshot(session: Session) -> None:
        processes = []
        for space in session.model.spaces:
            proc = space.to_json(vmas=not space.exited)
            if not space.exited and tracer.resync_pending(space.pid, space.mm):
                proc["resync_pending"] = True  # events lost, not yet repaired: provisional figures
            processes.append(proc)
        rec = {"type": "snapshot", "ts": session.last_ns, "lost_events": session.lost_events,
               "lost_by_source": dict(sorted(session.lost.items())), "processes": processes}
        resync = tracer.resync_stats()
        if resync is not None:
            rec["resync"] = resync  # what re-reading smaps after losses has cost
        if as_json:
            print_json(rec)
        else:
            click.echo("\n".join(render.processes_text(rec["processes"])))  # type: ignore[arg-type]

    def on_record(rec: Record, session: Session) -> None:
        reporter.publish(session)
        if rec["type"] == "lost" and reporter.screen is None:  # the screen shows lost events itself
            msg = {"type": "lost_events", "source": rec["source"], "count": rec["count"]}
            if as_json:
                print_json(msg)
            else:
                click.echo(f"lost {rec['count']} events ({rec['source']})", err=True)
        elif rec["type"] == "drift" and reporter.screen is None:
            if as_json:
                print_json(rec)
            else:
                start, end = rec["vma"]
                click.echo(f"drift: pid {rec['pid']} [{start:#x}, {end:#x}) expected {rec['expected']}, "
                           f"smaps has it {rec['seen']}", err=True)

    def targets_gone() -> None:
        if as_json:
            print_json({"type": "targets_exited", "pids": list(pids)})
        else:
            click.echo(f"all traced processes ({', '.join(map(str, pids))}) have exited", err=True)

    def log_stopped(message: str) -> None:
        click.echo(f"mpxtrace: {message}", err=True)
        if as_json:
            print_json({"type": "log_stopped", "path": str(log), "message": message})

    output = OutputGuard()  # a broken stdout stops the trace cleanly, then ends the command quietly
    tracer = Tracer(options, features, on_record=output.wrap(on_record), on_interval=output.wrap(interval_report),
                    on_snapshot=output.wrap(snapshot), on_targets_gone=output.wrap(targets_gone),
                    on_log_stopped=output.wrap(log_stopped))
    output.on_error = tracer.request_stop
    reporter.add_record = tracer.add_record
    if prometheus:
        try:
            from .views.prometheus import MetricsView, parse_listen, serve
        except ImportError:
            raise click.ClickException("--prometheus needs the `prometheus` extra: pip install 'mpxtrace[prometheus]'") from None
        reporter.metrics = MetricsView(tracked.describe())
        try:
            host_addr, _ = parse_listen(prometheus)
            _server, port = serve(prometheus, reporter.metrics)
        except ValueError as err:
            raise click.UsageError(str(err)) from None
        except OSError as err:
            raise click.ClickException(f"--prometheus {prometheus}: cannot listen: {err.strerror}") from None
        click.echo(f"Prometheus metrics on http://{host_addr}:{port}/metrics", err=True)
    try:
        session = tracer.start()
    except (PlanError, BccMissing, LogError) as err:
        raise click.ClickException(str(err)) from None
    reporter.publish(session, force=True)
    config = tracer.config
    if not as_json:
        attaches = ", ".join(f"{a.symbol}({a.mode})" for a in config.plan.attaches)
        click.echo(f"Tracing {tracked.describe()} on {features.release} [{config.buffer} buffer; "
                   f"{attaches}; ready in {host.probe_seconds + tracer.load_seconds:.1f} s]. Ctrl-C to end.", err=True)
    else:
        # guarded: a broken stdout here stops the trace at once, cleanly (log finished, probes detached)
        output.wrap(print_json)({"type": "attached", "flags": tracked.to_json(), "kernel": features.release,
                     "buffer": config.buffer,
                     "attach": [a.__dict__ for a in config.plan.attaches],
                     "missing": [h for h, _ in config.plan.missing],
                     "startup_s": {"probe": round(host.probe_seconds, 2), "compile_load_attach": round(tracer.load_seconds, 2)}})
    if ready_file is not None:
        from .eventlog import open_private
        try:
            open_private(ready_file).close()
        except LogError as err:
            tracer.finish()  # attached already: detach and close the log before failing
            raise click.ClickException(f"--ready-file: {err}") from None
    with reporter.running():
        session = tracer.run()
    output.raise_if_broken()
    _print_summary(session.summary(), as_json)


def _print_summary(summary: Record, as_json: bool) -> None:
    if as_json:
        print_json(summary)
    else:
        click.echo("\n" + render.summary_text(summary))


@main.command()
@click.argument("log", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="The summary as one JSON object.")
@click.option("--strict", is_flag=True, help="Stop at the first damaged record instead of skipping it.")
@click.option("--live", is_flag=True, help="Replay the capture through the full-screen view (q quits).")
@click.option("--speed", type=float, default=1.0, show_default=True, help="Replay speed factor for --live.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.png|.svg",
              help="Draw flagged bytes over time and both histograms to this new file (extra `plot`).")
@click.option("--perfetto", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.json",
              help="Write the capture as a Chrome/Perfetto trace (counter per process, a slice per allocation).")
def report(log: Path, as_json: bool, strict: bool, live: bool, speed: float, plot: Optional[Path],
           perfetto: Optional[Path]) -> None:
    """Rebuild the histograms and summary from a LOG captured with `trace --log` (`-`: stdin).

    Damaged records are skipped, counted and listed on stderr, and the summary is marked
    incomplete; with --strict the first one is an error.

    \b
    Example:
      mpxtrace trace --flag VM_LOCKED --log run.ndjson --duration 60
      mpxtrace report run.ndjson
      mpxtrace report run.ndjson --plot run.png --perfetto run.trace.json
      mpxtrace report run.ndjson --live --speed 10
    """
    from .views.capture import ViewError, replay_capture
    try:
        reader = open_log(log, strict=strict)
        session = replay_capture(reader.header, reader.records(), live=live, speed=speed, plot=plot, perfetto=perfetto)
    except (LogError, ViewError) as err:
        raise click.ClickException(str(err)) from None
    summary = session.summary()
    if reader.damaged_count:
        summary["complete"] = False
        summary["skipped_records"] = reader.damaged_count
        summary["ended"] = reader.ended  # the log still has its end record (the text says which is missing)
        click.echo(f"warning: skipped {reader.damaged_count} damaged records (--strict stops at the first):", err=True)
        for problem in reader.damaged:
            click.echo(f"  {problem}", err=True)
        if reader.damaged_count > len(reader.damaged):
            click.echo(f"  ... and {reader.damaged_count - len(reader.damaged)} more", err=True)
    for warning in reader.warnings:
        click.echo(f"warning: {warning}", err=True)
    _print_summary(summary, as_json)


@main.command()
@click.option("--flag", "flag", multiple=True, metavar="NAME", help=FLAG_HELP)
@click.option("--mask", metavar="HEX", help="Raw vm_flags mask (mapped to smaps mnemonics).")
@click.option("-p", "--pid", "pids", multiple=True, type=PID, metavar="PID", help="Only these processes.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def scan(flag: Tuple[str, ...], mask: Optional[str], pids: Tuple[int, ...], as_json: bool) -> None:
    """The /proc/PID/smaps view, now: flagged VMAs per process.

    \b
    Examples:
      mpxtrace scan                 # VMAs with `mp` in VmFlags (MPX bounds tables)
      mpxtrace scan --flag lo -p 1  # locked memory of pid 1
    """
    if not flag and not mask:
        from .flags import resolve_mpx
        mpx = resolve_mpx()
        tracked = TrackedFlags(mpx.value, ("VM_MPX",), ("mp",))
        if not mpx.available:
            click.echo(f"note: {mpx.evidence}; smaps shows no `mp` VMAs on this kernel (use --flag)", err=True)
    else:
        tracked = _tracked(flag, mask)
    if not tracked.mnemonics:
        raise click.UsageError(f"--mask {tracked.mask:#x} has no smaps mnemonic known to mpxtrace: use --flag")
    procs = smaps.scan(tracked.mnemonics, unique_pids(pids) or None)
    if as_json:
        print_json({"type": "scan", "flags": tracked.to_json(), "processes": [p.to_json() for p in procs],
                     "live_bytes": sum(p.live_bytes for p in procs)})
        return
    click.echo(f"{'PID':>7} {'COMM':<16} {'SIZE':>9} {'RSS':>9} {'VMAS':>5}")
    for p in procs:
        click.echo(f"{p.pid:>7} {p.comm[:16]:<16} {render.human_bytes(p.live_bytes):>9} "
                   f"{render.human_bytes(p.rss_bytes):>9} {len(p.vmas):>5}")
    click.echo(f"total {render.human_bytes(sum(p.live_bytes for p in procs))} in "
               f"{sum(len(p.vmas) for p in procs)} VMAs carrying {tracked.describe()}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def doctor(as_json: bool) -> None:
    """What this machine allows: kernel, MPX, kprobes, fentry, BTF, buffers, lockdown, headers, hooks."""
    from .doctor import examine_host
    host = examine_host()
    checks, problems = host.checks, host.problems
    if as_json:
        print_json({"type": "doctor", "can_trace": not problems, "checks": [c.to_json() for c in checks]})
    else:
        for c in checks:
            mark = {True: "ok  ", False: "FAIL", None: "    "}[c.ok]
            click.echo(f"[{mark}] {c.name:<16} {c.detail}")
            if c.fix and c.ok is False:
                click.echo(f"       fix: {c.fix}")
        click.echo("\n" + ("This machine can trace." if not problems else
                           "This machine cannot trace: fix the FAIL lines above, or use `mpxtrace lab` to trace in a VM."))
    sys.exit(0 if not problems else 1)


@main.command(context_settings={"ignore_unknown_options": True})
@click.option("--kernel", default="6.1", show_default=True, metavar="5.10|6.1|6.12|7.2",
              help="Debian kernel to boot under QEMU.")
@click.option("--workload/--no-workload", default=True, show_default=True,
              help="Run the demo workload beside `trace`.")
@click.option("--timeout", type=float, default=900, show_default=True, help="Hard limit for the VM, seconds.")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def lab(kernel: str, workload: bool, timeout: float, args: Tuple[str, ...]) -> None:
    """Run mpxtrace in a throwaway VM booted on a real Debian kernel, with a demo workload.

    For hosts that cannot trace themselves (lockdown, no kprobes). Arguments after `--` are
    mpxtrace arguments run inside the VM (default: `trace --flag VM_NORESERVE 1`). The first run
    per kernel builds its image (a few minutes, cached in /var/cache/mpxtrace-lab).

    \b
    Examples:
      mpxtrace lab -- trace --flag VM_NORESERVE 1
      mpxtrace lab --kernel 5.10 -- trace --flag VM_LOCKED --json
      mpxtrace lab --kernel 6.12 -- doctor
    """
    from .demo import DEFAULT_ARGS, run_in_lab
    sys.exit(run_in_lab(kernel, list(args) or DEFAULT_ARGS, workload=workload, timeout=timeout))


@main.command()
@click.option("--kernel", default="6.1", show_default=True, metavar="5.10|6.1|6.12|7.2",
              help="Lab kernel to use when this machine cannot trace.")
@click.option("--flag", "flag", default="VM_NORESERVE", show_default=True, help="VM_NORESERVE or VM_LOCKED.")
def demo(kernel: str, flag: str) -> None:
    """Trace the lifecycle workload: here if this machine can trace, else in a lab VM (and says why).

    The workload maps memory carrying the flag, merges, splits, moves, forks, execs and frees it;
    the tracer reports every second and prints the summary at the end.
    """
    from .demo import run_here, run_in_lab
    from .doctor import examine_host
    args = ["trace", "--flag", flag, "1"]
    problems = examine_host().problems
    if not problems:
        sys.exit(run_here(args))
    click.echo("This machine cannot trace (" + "; ".join(f"{c.name}: {c.detail}" for c in problems) + ").\n"
               f"Running the demo in the kernel lab instead: a VM booted on Debian's {kernel} kernel.", err=True)
    sys.exit(run_in_lab(kernel, args))


if __name__ == "__main__":  # pragma: no cover
    main()
