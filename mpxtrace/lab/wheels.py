"""Pure-Python runtime dependencies for the guest, fetched on the host with pip.

The guest suites ship older (or no) click/pyroute2, so the newest release that
supports the guest's Python is unpacked into a directory on the guest's PYTHONPATH.
"""

from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path
from typing import List, Sequence

from .steplog import StepLog

RUNTIME_WHEELS = ("click", "pyroute2", "prometheus_client")  # prometheus_client: trace --prometheus

_PURE_TAG = re.compile(r"-(py3|py2\.py3)-none-any\.whl$")


def download_and_unpack(packages: Sequence[str], python_version: str, download_dir: Path,
                        target: Path, log: StepLog) -> List[str]:
    """Download one wheel per package for python_version and unpack it into target.

    Returns the wheel file names (recorded in the image manifest).
    """
    download_dir.mkdir(parents=True, exist_ok=True)
    log.run(f"pip download {' '.join(packages)} for Python {python_version}",
            [sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
             "--only-binary=:all:", "--no-deps", "--python-version", python_version,
             "--dest", str(download_dir), *packages])
    wheels = sorted(download_dir.glob("*.whl"))
    names = [w.name for w in wheels]
    impure = [n for n in names if not _PURE_TAG.search(n)]
    if impure:
        raise log.fail("pip download", f"not pure-Python wheels: {impure}")
    target.mkdir(parents=True, exist_ok=True)
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as zf:
            zf.extractall(target)
    log.note(f"unpacked into {target}: {names}")
    return names
