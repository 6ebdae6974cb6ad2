"""Standard output that can break: a closed pipe (`| head`) or a full device (`> /dev/full`).

Either ends the command quietly with status 1: no traceback, a one-line reason unless the
reader simply went away (EPIPE, as `head` expects), and a live trace stops cleanly first
(probes detached, log closed) instead of dying in the middle of a callback.
"""
from __future__ import annotations

import errno
import json
import os
import sys
from typing import Any, Callable, Dict, Optional, TypeVar

import click

__all__ = ["QuietOutputGroup", "OutputGuard", "is_output_error", "print_json"]

_OUTPUT_ERRNOS = {errno.EPIPE, errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG, errno.EBADF}
F = TypeVar("F", bound=Callable[..., Any])


def print_json(rec: Dict[str, Any]) -> None:
    """One record as a JSON line on stdout, flushed (a reader may act on each line)."""
    sys.stdout.write(json.dumps(rec, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def is_output_error(err: OSError) -> bool:
    """An error writing a stream (no file name: opening and creating files name theirs)."""
    return err.errno in _OUTPUT_ERRNOS and err.filename is None


def _quiet_exit(err: Optional[OSError]) -> None:
    try:  # whatever is still buffered goes nowhere, so the interpreter's exit flush stays quiet
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (a test runner's capture)
    if err is None or err.errno != errno.EPIPE:
        reason = "it is closed" if err is None else (err.strerror or str(err))
        try:
            sys.stderr.write(f"mpxtrace: cannot write to standard output: {reason}\n")
            sys.stderr.flush()
        except (OSError, ValueError, AttributeError):
            pass
    sys.exit(1)


class QuietOutputGroup(click.Group):
    """The command group: a broken stdout ends any command quietly with status 1."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        if sys.stdout is None:  # started with stdout closed (`>&-`)
            sys.stdout = open(os.devnull, "w")
            _quiet_exit(None)
        try:
            try:
                return super().main(*args, **kwargs)
            finally:
                sys.stdout.flush()  # a full device shows up here if nothing flushed before
        except OSError as err:
            if not is_output_error(err):
                raise
            _quiet_exit(err)


class OutputGuard:
    """Wraps a live trace's output callbacks: the first output error stops the trace (via
    `on_error`) instead of escaping from a callback; `raise_if_broken` re-raises it after the
    tracer has finished cleanly."""

    def __init__(self) -> None:
        self.error: Optional[OSError] = None
        self.on_error: Callable[[], None] = lambda: None

    def wrap(self, callback: F) -> F:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if self.error is not None:
                return None
            try:
                return callback(*args, **kwargs)
            except OSError as err:
                if not is_output_error(err):
                    raise
                self.error = err
                self.on_error()
                return None
        return guarded  # type: ignore[return-value]

    def raise_if_broken(self) -> None:
        if self.error is not None:
            raise self.error
