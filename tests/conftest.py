"""Unit tests must not change the host: mounting tracefs/debugfs/securityfs is for commands run
for real.  A test that needs a kernel injects one (tests/fake_kernel.py)."""
from __future__ import annotations

from typing import Iterator, List

import pytest

from mpxtrace.kernel import features as kernel_probe


@pytest.fixture(autouse=True)
def refuse_mounts(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    attempts: List[str] = []

    def refuse() -> None:
        attempts.append("mount_pseudo_filesystems")
        raise AssertionError("a unit test tried to mount tracefs/debugfs/securityfs on the host")

    monkeypatch.setattr(kernel_probe, "mount_pseudo_filesystems", refuse)
    yield
    assert not attempts, "a unit test reached mount_pseudo_filesystems(): inject a Host (tests/fake_kernel.py)"
