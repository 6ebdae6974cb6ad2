"""Create a file a root tool can trust: no symlink in any component, mode 0600, never over an
existing file.

``O_NOFOLLOW`` protects only the last component; a symlinked parent directory
(``/tmp/x -> /etc``) would still steer a root write elsewhere.  Where the kernel has
``openat2`` (5.6+), ``RESOLVE_NO_SYMLINKS`` refuses a symlink anywhere in the path in one call;
elsewhere the path is walked one directory at a time with ``O_NOFOLLOW | O_DIRECTORY``.
"""
from __future__ import annotations

import ctypes
import errno
import os
import stat
from pathlib import Path
from typing import List, Optional, Union

__all__ = ["UnsafePath", "create_private", "SYS_OPENAT2", "RESOLVE_NO_SYMLINKS"]

SYS_OPENAT2 = 437  # the same number on every architecture using the generic syscall table
RESOLVE_NO_SYMLINKS = 0x04
_AT_FDCWD = -100
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(Exception):
    """The file cannot be created safely; the message names the path and what to do."""


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc: Optional[ctypes.CDLL] = None


def _openat2(path: str, flags: int, mode: int, resolve: int) -> int:
    """openat2(AT_FDCWD, path, ...); raises OSError (ENOSYS where the kernel lacks it)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    how = _OpenHow(flags, mode, resolve)
    fd = _libc.syscall(ctypes.c_long(SYS_OPENAT2), ctypes.c_int(_AT_FDCWD), os.fsencode(path),
                       ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return int(fd)


def _walk_create(path: str) -> int:
    """The portable fallback: open each directory with O_NOFOLLOW relative to the previous one."""
    parts: List[str] = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    dirfd = os.open("/" if path.startswith("/") else ".", _DIRECTORY)
    try:
        for i, name in enumerate(parts[:-1]):
            try:
                nextfd = os.open(name, _DIRECTORY, dir_fd=dirfd)
            except OSError as err:
                # a symlink to a directory gives ENOTDIR (or ELOOP) under O_NOFOLLOW|O_DIRECTORY
                if err.errno in (errno.ENOTDIR, errno.ELOOP) and _is_symlink(name, dirfd):
                    raise OSError(errno.ELOOP, "symbolic link", "/".join(parts[:i + 1])) from None
                raise OSError(err.errno, err.strerror, path) from None
            os.close(dirfd)
            dirfd = nextfd
        return os.open(parts[-1], _CREATE, 0o600, dir_fd=dirfd)
    finally:
        os.close(dirfd)


def _is_symlink(name: str, dirfd: int) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dirfd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def create_private(path: Union[str, Path], *, use_openat2: bool = True) -> int:
    """A new regular file at `path`, open for writing, mode 0600: its file descriptor.

    Refused (UnsafePath) when any component is a symlink, when the file already exists, or
    when it cannot be created.
    """
    text = os.fspath(path)
    fd = -1
    try:
        if use_openat2:
            try:
                fd = _openat2(text, _CREATE, 0o600, RESOLVE_NO_SYMLINKS)
            except OSError as err:
                if err.errno != errno.ENOSYS:
                    raise
        if fd < 0:
            fd = _walk_create(text)
    except FileExistsError:
        raise UnsafePath(f"{text} already exists: choose another file or remove it first "
                         "(mpxtrace never overwrites a file)") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise UnsafePath(f"{text}: a component of the path is a symbolic link; mpxtrace runs as root and "
                             "writes only through real directories: give the resolved path "
                             f"(realpath {os.path.dirname(text) or '.'})") from None
        raise UnsafePath(f"cannot create {text}: {err.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):  # O_EXCL already refuses this; belt and braces for odd filesystems
        os.close(fd)
        raise UnsafePath(f"{text} is not a regular file")
    os.fchmod(fd, 0o600)  # exactly 0600 whatever the umask
    return fd
