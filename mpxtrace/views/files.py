"""Files the views write: created the way the log is (we may run as root)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

__all__ = ["OutputError", "create_private"]


class OutputError(Exception):
    """The output file cannot be created; the message says what to do."""


def create_private(path: Path) -> BinaryIO:
    """A new file opened for binary writing: mode 0600, never through a symlink, never over an existing file."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise OutputError(f"{path} already exists: choose another file name or remove it first") from None
    except OSError as err:
        raise OutputError(f"cannot create {path}: {err.strerror}") from None
    return os.fdopen(fd, "wb")
