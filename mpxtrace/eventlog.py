"""The captured event log: NDJSON, one record per line, written carefully (we run as root).

Line 1 is the header; then seeds, events and lost notices in the order the tracer applied
them; the last line is ``{"type": "end"}``.  Replaying it through ``stats.Session`` rebuilds
the live run's summary exactly.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import IO, Iterator, List, Optional, Tuple

from .events import Record

__all__ = ["LogWriter", "LogError", "read_log", "open_private"]

LOG_FORMAT = "mpxtrace-log"
LOG_VERSION = 1


class LogError(Exception):
    """The log cannot be written or read; the message says what to do."""


def open_private(path: Path) -> IO[str]:
    """Create `path` for writing: never through a symlink, never over an existing file, mode 0600."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise LogError(f"{path} already exists: choose another --log file or remove it first "
                       "(mpxtrace never overwrites a capture)") from None
    except OSError as err:
        raise LogError(f"cannot create {path}: {err.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # O_EXCL already refuses this; belt and braces for odd filesystems
        os.close(fd)
        raise LogError(f"{path} is not a regular file")
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "w", encoding="utf-8", buffering=1 << 16)


class LogWriter:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh = open_private(path)

    def write(self, rec: Record) -> None:
        self._fh.write(json.dumps(rec, separators=(",", ":")) + "\n")

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()


def read_log(path: Path) -> Tuple[Record, Iterator[Record], List[str]]:
    """The header, an iterator over the other records, and warnings gathered while reading.

    A torn last line (the tracer was killed mid-write) is reported and skipped; damage
    anywhere else is an error naming the line.
    """
    try:
        fh = open(path, "r", encoding="utf-8")
    except OSError as err:
        raise LogError(f"cannot read {path}: {err.strerror}") from None
    first = fh.readline()
    try:
        header = json.loads(first)
    except ValueError:
        fh.close()
        raise LogError(f"{path}: line 1 is not an mpxtrace log header (was it written by `mpxtrace trace --log`?)") from None
    if not isinstance(header, dict) or header.get("type") != "header" or header.get("format") != LOG_FORMAT:
        fh.close()
        raise LogError(f"{path}: not an mpxtrace log (no header record on line 1)")
    if int(header.get("version", 0)) > LOG_VERSION:
        fh.close()
        raise LogError(f"{path}: log version {header.get('version')} is newer than this mpxtrace understands; upgrade mpxtrace")
    warnings: List[str] = []

    def records() -> Iterator[Record]:
        with fh:
            lineno = 1
            pending: Optional[Tuple[int, str]] = None
            for line in fh:
                lineno += 1
                if pending is not None:
                    raise LogError(f"{path}:{pending[0]}: damaged record: {pending[1][:80]!r}")
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except ValueError:
                    pending = (lineno, line)
                    continue
                if not isinstance(rec, dict) or "type" not in rec:
                    raise LogError(f"{path}:{lineno}: record without a type")
                yield rec
            if pending is not None:
                warnings.append(f"{path}:{pending[0]}: last line is torn (tracer stopped mid-write); ignored")

    return header, records(), warnings
