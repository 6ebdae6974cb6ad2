"""Kernel-lab tests: `lab` marks tests that boot real kernels under QEMU (minutes, root)."""

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "lab: boots a real Debian kernel under QEMU (root, network to the Debian "
        "mirror on the first run; select with -m lab, deselect with -m 'not lab')")
