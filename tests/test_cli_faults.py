"""Bad input and faults at the command line: options checked before anything attaches, process
names that are not UTF-8, damaged logs, unreadable inputs, broken stdout, a log that cannot be written."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any, List

import pytest
from click.testing import CliRunner

from mpxtrace.cli import main
from mpxtrace.eventlog import LogWriter
from mpxtrace.output import OutputGuard
from helpers import PAGE, ev, header

ROOT = Path(__file__).resolve().parent.parent
MPXTRACE = [sys.executable, "-m", "mpxtrace"]
A = 0x7F0000000000


def run(*args: str, **kwargs: Any) -> subprocess.CompletedProcess:
    kwargs.setdefault("stdout", subprocess.PIPE)
    return subprocess.run(MPXTRACE + list(args), stderr=subprocess.PIPE, cwd=ROOT, timeout=60, **kwargs)


def write_log(path: Path, *records: Any) -> Path:
    w = LogWriter(path)
    for rec in records:
        w.write(rec)
    w.close()
    return path


def good_log(path: Path, n: int = 3) -> Path:
    body = [ev("map", i + 1, A + i * 0x10000, A + i * 0x10000 + 4 * PAGE) for i in range(n)]
    return write_log(path, header(), *body, {"type": "end", "ts": n + 1})


# -- options: checked before anything is probed or attached (exit 2, not "cannot trace") --------------
@pytest.mark.parametrize("args, problem", [
    (["nan"], "not a finite number"),
    (["inf"], "not a finite number"),
    (["1e308"], "outside"),
    (["1e-300"], "outside"),
    (["0"], "outside"),
    (["--", "-1"], "outside"),
    (["1", "0"], "0 is not in the range"),
    (["--duration", "nan"], "not a finite number"),
    (["--duration", "-inf"], "not a finite number"),
    (["--duration", "0"], "outside"),
    (["-p", "-5"], "not a process id"),
    (["-p", "0"], "not a process id"),
    (["-p", "abc"], "not a process id"),
])
def test_trace_rejects_bad_numbers_before_attaching(args: List[str], problem: str) -> None:
    result = CliRunner().invoke(main, ["trace", "--flag", "lo"] + args)
    assert result.exit_code == 2, result.output
    assert problem in result.output and "Traceback" not in result.output


def _free_pid() -> int:
    pid = int(Path("/proc/sys/kernel/pid_max").read_text()) - 1
    while Path(f"/proc/{pid}").exists():
        pid -= 1
    return pid


def test_trace_and_scan_reject_pids_that_do_not_exist_or_are_threads() -> None:
    free = _free_pid()
    for command in ("trace", "scan"):
        result = CliRunner().invoke(main, [command, "--flag", "lo", "-p", str(free)])
        assert result.exit_code == 2 and f"no process with id {free}" in result.output
    stop = threading.Event()
    ids: List[int] = []
    thread = threading.Thread(target=lambda: (ids.append(threading.get_native_id()), stop.wait(10)))
    thread.start()
    try:
        while not ids:
            pass
        result = CliRunner().invoke(main, ["scan", "--flag", "lo", "-p", str(ids[0])])
        assert result.exit_code == 2 and f"is a thread of process {os.getpid()}" in result.output
    finally:
        stop.set()
        thread.join()


def test_trace_output_files_must_differ_and_be_new(tmp_path: Path) -> None:
    same = str(tmp_path / "x")
    result = CliRunner().invoke(main, ["trace", "--flag", "lo", "--log", same, "--ready-file", f"{tmp_path}/./x"])
    assert result.exit_code == 2 and "name the same file" in result.output
    (tmp_path / "old").write_text("precious")
    result = CliRunner().invoke(main, ["trace", "--flag", "lo", "--log", str(tmp_path / "old")])
    assert result.exit_code == 2 and "already exists" in result.output
    assert (tmp_path / "old").read_text() == "precious"


def test_scan_counts_a_repeated_pid_once() -> None:
    from mpxtrace import workload
    addr = workload.mmap(0, 3, workload.PROT_READ | workload.PROT_WRITE, workload.MAP_NORESERVE)
    try:
        me = str(os.getpid())
        once = json.loads(CliRunner().invoke(main, ["scan", "--flag", "nr", "-p", me, "--json"]).output)
        twice = json.loads(CliRunner().invoke(main, ["scan", "--flag", "nr", "-p", me, "-p", me, "--json"]).output)
    finally:
        workload.munmap(addr, 3)
    assert len(twice["processes"]) == 1 and twice["live_bytes"] == once["live_bytes"] > 0


# -- process names are bytes ------------------------------------------------------------------------
CHILD = r"""
import ctypes, mmap, sys
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(15, ctypes.c_char_p(b"\xff\xfebad\x1b[2Jname"), 0, 0, 0) == 0  # PR_SET_NAME
m = mmap.mmap(-1, 5 * 4096, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x4000)  # MAP_NORESERVE
print("ready", flush=True)
sys.stdin.readline()
"""


def test_scan_survives_a_process_whose_name_is_not_utf8() -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        assert Path(f"/proc/{child.pid}/comm").read_bytes().startswith(b"\xff\xfebad")
        as_json = run("scan", "--flag", "nr", "-p", str(child.pid), "--json")
        assert as_json.returncode == 0, as_json.stderr
        (proc,) = json.loads(as_json.stdout)["processes"]
        assert proc["comm"] == "\\xff\\xfebad\\x1b[2Jname" and proc["live_bytes"] >= 5 * 4096
        everyone = run("scan", "--flag", "nr")  # system-wide, text: the case that crashed
        assert everyone.returncode == 0, everyone.stderr
        assert b"\\xff\\xfebad\\x1b" in everyone.stdout and b"\x1b" not in everyone.stdout
    finally:
        child.communicate(b"\n", timeout=10)


# -- report on damaged or hostile input ----------------------------------------------------------------
def test_report_skips_damaged_records_says_where_and_marks_the_summary(tmp_path: Path) -> None:
    path = good_log(tmp_path / "run.ndjson")
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = lines[2].replace(b'"start":', b'"start":-')  # line 3: a negative address
    lines.insert(4, b"\xff\xfe garbage\n")  # line 5
    path.write_bytes(b"".join(lines))
    result = run("report", str(path), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["complete"] is False and summary["skipped_records"] == 2 and summary["totals"]["allocations"] == 2
    err = result.stderr.decode()
    assert "skipped 2 damaged records" in err and f"{path}:3: `start`" in err and f"{path}:5: not UTF-8" in err
    strict = run("report", str(path), "--strict")
    assert strict.returncode == 1 and f"{path}:3: `start`" in strict.stderr.decode() and b"Traceback" not in strict.stderr


def test_report_of_a_truncated_log_says_where_it_ends(tmp_path: Path) -> None:
    path = good_log(tmp_path / "run.ndjson")
    data = path.read_bytes()
    path.write_bytes(data[:data.rindex(b'{"type":"end"')])
    result = run("report", str(path), "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["complete"] is False
    assert f"{path}: ends at line 4 without an end record" in result.stderr.decode()


def test_report_refuses_a_fifo_and_a_device_at_once(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    for target in (str(tmp_path / "fifo"), "/dev/zero"):
        result = run("report", target)  # a 60 s timeout would fail the test if it blocked
        assert result.returncode == 1 and b"not a log file" in result.stderr and b"Traceback" not in result.stderr


def test_report_reads_stdin_from_a_pipe_but_not_from_a_device(tmp_path: Path) -> None:
    path = good_log(tmp_path / "run.ndjson")
    piped = run("report", "-", "--json", input=path.read_bytes())
    assert piped.returncode == 0 and json.loads(piped.stdout)["totals"]["allocations"] == 3
    with open("/dev/zero", "rb") as zero:
        device = run("report", "-", stdin=zero)
    assert device.returncode == 1 and b"not a log" in device.stderr


# -- broken stdout ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["report", "{log}", "--json"], ["report", "{log}"], ["scan", "--flag", "nr"],
                                     ["doctor", "--json"]])
def test_stdout_on_a_full_device_ends_quietly_with_status_1(tmp_path: Path, command: List[str]) -> None:
    log = good_log(tmp_path / "run.ndjson")
    with open("/dev/full", "w") as full:
        result = run(*[a.format(log=log) for a in command], stdout=full)
    assert result.returncode == 1 and b"Traceback" not in result.stderr
    assert b"cannot write to standard output: No space left on device" in result.stderr


def test_stdout_to_a_closed_pipe_ends_quietly_with_status_1(tmp_path: Path) -> None:
    log = good_log(tmp_path / "run.ndjson", n=200)
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before we write (as `| head` after it exits)
    try:
        result = run("report", str(log), "--json", stdout=write_end)
    finally:
        os.close(write_end)
    assert result.returncode == 1 and result.stderr == b""


def test_output_guard_stops_the_trace_on_a_broken_stdout_and_lets_other_errors_through() -> None:
    guard = OutputGuard()
    stopped: List[bool] = []
    guard.on_error = lambda: stopped.append(True)

    def full(*args: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")
    guarded = guard.wrap(full)
    guarded()
    guarded()  # later output is dropped, not retried
    assert stopped == [True]
    with pytest.raises(OSError, match="No space"):
        guard.raise_if_broken()

    def missing_file() -> None:
        raise FileNotFoundError(errno.ENOENT, "No such file", "/x")
    with pytest.raises(FileNotFoundError):
        OutputGuard().wrap(missing_file)()


# -- the tracer's log on a failing disk ----------------------------------------------------------------
def test_tracer_goes_on_when_its_log_cannot_be_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mpxtrace.eventlog as eventlog
    import mpxtrace.tracer as tracer_mod
    from mpxtrace.flags import resolve_flags
    from mpxtrace.tracer import TraceOptions, Tracer

    class Program:
        config = SimpleNamespace(buffer="ring", plan=SimpleNamespace(attaches=[], uses=lambda hook: True))

        def open_buffer(self, on_event: object, on_lost: object) -> None:
            pass

    monkeypatch.setattr(tracer_mod, "build_config", lambda *a, **k: Program.config)
    monkeypatch.setattr(tracer_mod, "load_program", lambda config: Program())
    log = tmp_path / "run.ndjson"
    t = Tracer(TraceOptions(resolve_flags(["lo"], None), seed=False, log=log), features=None)  # type: ignore[arg-type]
    messages: List[str] = []
    t.on_log_stopped = messages.append
    session = t.start()
    t._restore_signals()
    t._log.flush()  # type: ignore[union-attr]  # the header is on disk

    def eio(fd: int, data: object) -> int:
        raise OSError(errno.EIO, os.strerror(errno.EIO))
    monkeypatch.setattr(eventlog.os, "write", eio)
    for i in range(3):
        t._emit(ev("map", i + 1, A + i * 0x10000, A + i * 0x10000 + PAGE))
    t._log.flush()  # type: ignore[union-attr]
    t._emit(ev("unmap", 9, A, A + PAGE))
    monkeypatch.undo()
    assert len(messages) == 1 and "Input/output error" in messages[0] and "tracing goes on" in messages[0]
    assert session.model.events == 4  # the model saw everything
    result = CliRunner().invoke(main, ["report", str(log), "--json"])
    assert result.exit_code == 0 and "ends at line 1 without an end record" in result.output


def test_a_process_that_exits_while_its_smaps_is_read_is_dropped_not_truncated(tmp_path: Path) -> None:
    from mpxtrace.smaps import read_smaps
    smaps = (b"7f0000000000-7f0000002000 rw-p 00000000 00:00 0    /tmp/\xffodd\x1bpath\n"
             b"Rss:                   8 kB\nVmFlags: rd wr mr mw me nr\n")
    pid_dir = tmp_path / "123"
    pid_dir.mkdir()
    (pid_dir / "smaps").write_bytes(smaps)
    (pid_dir / "stat").write_bytes(b"123 (a) b) c) R 1 2 3\n")  # a comm holding ") " must not confuse us
    (vma,) = read_smaps(123, tmp_path)
    assert vma.path == "/tmp/\\xffodd\\x1bpath" and vma.flags >= {"nr"}
    (pid_dir / "stat").write_bytes(b"123 (a) b) c) Z 1 2 3\n")  # it exited during the read: a zombie now
    assert read_smaps(123, tmp_path) == []


def test_trace_bounds_the_buffer_size_before_attaching() -> None:
    for pages in ("0", "3", str(1 << 30)):
        result = CliRunner().invoke(main, ["trace", "--flag", "lo", "--buffer-pages", pages])
        assert result.exit_code == 2 and "--buffer-pages" in result.output, result.output
