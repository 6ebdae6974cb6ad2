"""Files a root tool creates: no symlink in any component, 0600, never over an existing file;
openat2 where the kernel has it, the component walk elsewhere (both tested here)."""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

import mpxtrace.safefile as safefile
from mpxtrace.safefile import UnsafePath, create_private

BOTH = pytest.mark.parametrize("use_openat2", [True, False], ids=["openat2", "walk"])


@BOTH
def test_creates_a_private_file(tmp_path: Path, use_openat2: bool) -> None:
    old = os.umask(0)
    try:
        fd = create_private(tmp_path / "log", use_openat2=use_openat2)
    finally:
        os.umask(old)
    os.close(fd)
    assert stat.S_IMODE(os.stat(tmp_path / "log").st_mode) == 0o600


@BOTH
def test_a_symlinked_parent_directory_is_refused(tmp_path: Path, use_openat2: bool) -> None:
    (tmp_path / "etc").mkdir()
    os.symlink(tmp_path / "etc", tmp_path / "x")
    with pytest.raises(UnsafePath, match="symbolic link"):
        create_private(tmp_path / "x" / "log", use_openat2=use_openat2)
    os.symlink("../x", tmp_path / "etc" / "loop")  # deeper, relative, through `..`
    (tmp_path / "d").mkdir()
    with pytest.raises(UnsafePath, match="symbolic link"):
        create_private(tmp_path / "d" / ".." / "x" / "log", use_openat2=use_openat2)
    assert sorted(p.name for p in (tmp_path / "etc").iterdir()) == ["loop"]


@BOTH
def test_a_symlink_as_the_file_itself_is_refused(tmp_path: Path, use_openat2: bool) -> None:
    os.symlink(tmp_path / "target", tmp_path / "log")
    with pytest.raises(UnsafePath):
        create_private(tmp_path / "log", use_openat2=use_openat2)
    assert not (tmp_path / "target").exists()


@BOTH
def test_an_existing_file_is_never_overwritten(tmp_path: Path, use_openat2: bool) -> None:
    (tmp_path / "log").write_text("precious")
    with pytest.raises(UnsafePath, match="already exists"):
        create_private(tmp_path / "log", use_openat2=use_openat2)
    assert (tmp_path / "log").read_text() == "precious"


@BOTH
def test_relative_paths_resolve_from_the_working_directory(tmp_path: Path, use_openat2: bool,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    os.close(create_private("sub/log", use_openat2=use_openat2))
    assert (tmp_path / "sub" / "log").is_file()


def test_falls_back_to_the_walk_where_the_kernel_has_no_openat2(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def enosys(*args: object) -> int:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))
    walked = []
    real_walk = safefile._walk_create
    monkeypatch.setattr(safefile, "_openat2", enosys)
    monkeypatch.setattr(safefile, "_walk_create", lambda path: walked.append(path) or real_walk(path))
    os.close(create_private(tmp_path / "log"))
    assert walked == [str(tmp_path / "log")]
    (tmp_path / "etc").mkdir()
    os.symlink(tmp_path / "etc", tmp_path / "x")
    with pytest.raises(UnsafePath, match="symbolic link"):
        create_private(tmp_path / "x" / "log")
