"""The captured event log: NDJSON, one record per line, written carefully (we run as root).

Line 1 is the header; then seeds, events and lost notices in the order the tracer applied
them; the last line is ``{"type": "end"}``.  Replaying it through ``stats.Session`` rebuilds
the live run's summary exactly.

Writing survives faults: when the file cannot be written (full disk, I/O error) logging
stops, a torn last line is cut off so the part on disk stays a valid (unfinished) log, and
the tracer is told while tracing goes on.  Reading is bounded and validates every record
(see ``records``): damaged records are skipped and counted, or with ``strict`` the first one
is an error.
"""
from __future__ import annotations

import errno
import io
import json
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, BinaryIO, Callable, Iterator, List, Optional, Tuple, Union

from .events import Record
from .fastevents import EventReader, event_reader
from .records import LogChecker, RecordError, check_header
from .safefile import UnsafePath, create_private

__all__ = ["LogWriter", "LogError", "LogReader", "open_log", "open_private", "MAX_LINE"]

LOG_FORMAT = "mpxtrace-log"
LOG_VERSION = 4  # 4: `lost` records may name whose events (slots); 3: `tallies` records; 2: per-kind names for aux/aux2 (records.NAMED_FIELDS_VERSION); 1 and 2 are still read
MAX_LINE = 1 << 20  # bytes; a record is a few hundred (a header with its attach plan a few thousand)
MAX_DAMAGED_KEPT = 100  # messages kept; all are counted
_WRITE_CHUNK = 1 << 16


def _line_encoder() -> Callable[[Record], str]:
    """json.dumps(rec, separators=(",", ":")) without its per-call set-up: dumps builds an encoder
    on every call, and the encoder its C scanner (here 2.3 us a record, 1.8 us with the encoder made
    once, 1.1 us with the scanner made once).  The scanner is the standard library's own, but private:
    where it is missing or writes a sample otherwise than json's pure-Python path, the public
    encoder is used."""
    public = json.JSONEncoder(separators=(",", ":"))
    make = getattr(json.encoder, "c_make_encoder", None)
    try:
        scan = make(None, public.default, json.encoder.encode_basestring_ascii, None, ":", ",",  # type: ignore[misc]
                    False, False, True)

        def encode(rec: Record) -> str:
            return "".join(scan(rec, 0))
        sample = {"type": "event", "n": 1 << 64, "ok": True, "no": None, "f": 0.5, "s": "\u00e9\x1b\"\\",
                  "l": [1, -2], "d": {"k": []}}
        if encode(sample) == "".join(public.iterencode(sample)):  # not one-shot: the pure-Python path
            return encode
    except Exception:  # noqa: BLE001 - no C scanner, or another signature: the public path
        pass
    return public.encode


_encode_line = _line_encoder()


class LogError(Exception):
    """The log cannot be written or read; the message says what to do."""


def open_private(path: Path) -> IO[str]:
    """Create `path` for writing: no symlink in any component, never over an existing file, mode 0600."""
    try:
        fd = create_private(path)
    except UnsafePath as err:
        raise LogError(str(err)) from None
    return os.fdopen(fd, "w", encoding="utf-8")


class LogWriter:
    """Appends records; never raises once open.

    A write error (ENOSPC, EIO, ...) stops logging: what is on disk is cut back to the last
    whole line and `on_failure` gets a message saying so; later writes are dropped.
    """

    def __init__(self, path: Path, on_failure: Callable[[str], None] = lambda message: None,
                 fd: Optional[int] = None) -> None:
        self.path = path
        self.on_failure = on_failure
        if fd is None:
            try:
                fd = create_private(path)
            except UnsafePath as err:
                raise LogError(str(err)) from None
        self._fd: Optional[int] = fd
        self._buffer = bytearray()
        self.lines_written = 0  # whole lines known to be on disk
        self._bytes_written = 0
        self.failure: Optional[str] = None

    def write(self, rec: Record) -> None:
        if self._fd is None:
            return
        self._buffer += (_encode_line(rec) + "\n").encode("utf-8")
        if len(self._buffer) >= _WRITE_CHUNK:
            self.flush()

    def flush(self) -> None:
        if self._fd is None or not self._buffer:
            return
        view = memoryview(self._buffer)
        done = 0
        try:
            while done < len(view):
                done += os.write(self._fd, view[done:])
        except OSError as err:
            self._fail(err, view[:done].tobytes())
            return
        finally:
            view.release()
        self.lines_written += self._buffer.count(b"\n")
        self._bytes_written += done
        del self._buffer[:]

    def _fail(self, err: OSError, partial: bytes) -> None:
        """Keep the whole lines that reached the file, cut a torn one, stop logging."""
        assert self._fd is not None
        whole = partial.rfind(b"\n") + 1
        self.lines_written += partial[:whole].count(b"\n")
        self._bytes_written += whole
        try:
            os.ftruncate(self._fd, self._bytes_written)
        except OSError:
            pass  # the reader skips a torn last line anyway
        self._close_fd()
        self._buffer = bytearray()
        self.failure = (f"cannot write the log {self.path}: {err.strerror or err}; logging stopped, tracing goes on. "
                        f"The log holds {self.lines_written} whole lines and no end record: "
                        f"`mpxtrace report {self.path}` summarises it as incomplete.")
        self.on_failure(self.failure)

    def _close_fd(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None

    def close(self) -> None:
        if self._fd is None:
            return
        self.flush()
        if self._fd is None:
            return
        try:
            os.fsync(self._fd)
        except OSError as err:
            if err.errno != errno.EINVAL:  # a pipe or special file cannot be synced; nothing lost
                self._fail(err, b"")
                return
        self._close_fd()


@dataclass
class LogReader:
    """A log being read: the header, then `records()` yields every valid record.

    Damaged records (bad JSON, not UTF-8, too long, failing the schema or the order rules)
    are skipped and listed in `damaged` as ``file:line: what is wrong``; with `strict` the
    first one raises LogError instead.
    """

    name: str
    header: Record
    strict: bool = False
    damaged: List[str] = field(default_factory=list)  # the first MAX_DAMAGED_KEPT, in order
    damaged_count: int = 0
    warnings: List[str] = field(default_factory=list)
    lines: int = 1
    ended: bool = False
    _source: Optional[BinaryIO] = None

    def records(self) -> Iterator[Record]:
        assert self._source is not None
        checker = LogChecker(self.header["version"])
        # events that msgspec's typed decoder finds valid skip the usual decode and checks (version 1
        # logs rename fields first, so they take the usual path)
        read_event = _read_event if not checker.version1 else None
        source = self._source
        readline = source.readline
        lineno = 1
        try:
            while True:  # _lines(), inlined: its generator and tuple a line cost ~6% of a million-event report
                line = readline(MAX_LINE + 1)
                if not line:
                    break
                lineno += 1
                self.lines = lineno
                if read_event is not None and len(line) <= MAX_LINE and not checker.ended:
                    event = read_event(line)
                    if event is not None:
                        checker.passed_event()
                        yield event
                        continue
                torn = _line_end(source, line)
                if not line.strip():
                    continue
                try:
                    parsed = _parse(line)
                    checker.check(parsed)
                except RecordError as err:
                    where = f"{self.name}:{lineno}"
                    problem = f"{where}: last line is torn (tracer stopped mid-write)" if torn else f"{where}: {err}"
                    if self.strict:
                        raise LogError(problem) from None
                    self.damaged_count += 1
                    if len(self.damaged) < MAX_DAMAGED_KEPT:
                        self.damaged.append(problem)
                    continue
                assert isinstance(parsed, dict)  # check() accepts objects only
                yield parsed
            self.ended = checker.ended
            if not self.ended:
                self.warnings.append(f"{self.name}: ends at line {self.lines} without an end record (the tracer "
                                     "was stopped, or its log could not be written): the summary covers up to there")
        finally:
            self._source.close()


def _fast_decoder() -> Optional[Callable[[bytes], object]]:
    """msgspec's JSON decoder when installed (extra `fast`: about twice as fast as the json
    module on log lines); None, and the standard library alone, otherwise (lab guests)."""
    try:
        from msgspec.json import Decoder
    except ImportError:
        return None
    decode: Callable[[bytes], object] = Decoder().decode
    return decode


_fast_decode = _fast_decoder()
_read_event: Optional[EventReader] = event_reader()


def _parse(line: bytes) -> object:
    if len(line) > MAX_LINE:
        raise RecordError(f"line longer than {MAX_LINE} bytes")
    if _fast_decode is not None:
        try:
            return _fast_decode(line)
        except Exception:  # noqa: BLE001 - any failure: the standard library decides, and says what is wrong
            pass  # (it also takes what msgspec refuses: lone surrogate escapes, NaN, 1e400)
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RecordError(f"not UTF-8 (byte {err.start})") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise RecordError("JSON nested too deeply") from None
    except ValueError as err:
        raise RecordError(f"not JSON ({err})") from None


def _lines(source: BinaryIO, first: int) -> Iterator[Tuple[int, bytes, bool]]:
    """(line number, line, torn) in constant memory: a line over MAX_LINE is cut to MAX_LINE + 1
    bytes and the rest discarded (its length alone marks it damaged)."""
    lineno = first - 1
    while True:
        line = source.readline(MAX_LINE + 1)
        if not line:
            return
        lineno += 1
        yield lineno, line, _line_end(source, line)


def _line_end(source: BinaryIO, line: bytes) -> bool:
    """Whether `line`, just read with readline(MAX_LINE + 1), is torn (the file ends inside it);
    a line cut at the cap is not: the rest of it is skipped here, its length marks it damaged."""
    if len(line) > MAX_LINE and not line.endswith(b"\n"):
        while True:  # skip to the end of this line
            rest = source.readline(MAX_LINE)
            if not rest or rest.endswith(b"\n"):
                break
        return False
    return not line.endswith(b"\n")


def _open_source(path: Union[str, Path]) -> Tuple[str, BinaryIO]:
    """A regular file, or stdin for `-` when it is a file or a pipe: never a FIFO, device or terminal
    (which would block, or feed us /dev/zero forever)."""
    if str(path) == "-":
        fd = sys.stdin.fileno() if sys.stdin is not None else -1
        try:
            mode = os.fstat(fd).st_mode
        except (OSError, ValueError):
            raise LogError("stdin is closed: give a log file, or pipe one into `report -`") from None
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
            raise LogError("stdin is a terminal or a device, not a log: pipe one in (`report - < run.ndjson`)")
        return "<stdin>", io.open(os.dup(fd), "rb", buffering=1 << 16)
    name = str(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)  # a FIFO must not block us
    except OSError as err:
        raise LogError(f"cannot read {name}: {err.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device or special file"
        raise LogError(f"{name} is {kind}, not a log file: give the file written by `trace --log` "
                       "(or `-` to read one from a pipe)")
    return name, io.open(fd, "rb", buffering=1 << 16)


def open_log(path: Union[str, Path], strict: bool = False) -> LogReader:
    """Open a log and check its header (errors there are always fatal: nothing can be replayed)."""
    name, source = _open_source(path)
    try:
        first = next(_lines(source, 1), None)
        if first is None:
            raise LogError(f"{name} is empty: not an mpxtrace log")
        try:
            header = _parse(first[1])
        except RecordError:
            raise LogError(f"{name}:1: not an mpxtrace log header (was it written by `mpxtrace trace --log`?)") from None
        try:
            check_header(header, LOG_FORMAT, LOG_VERSION)
        except RecordError as err:
            raise LogError(f"{name}:1: {err}") from None
    except BaseException:
        source.close()
        raise
    assert isinstance(header, dict)
    return LogReader(name, header, strict, _source=source)

