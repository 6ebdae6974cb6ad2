"""A private apt state on the host, one per lab kernel, for resolving package versions.

Private lists (Dir::State::Lists etc.) keep the host's own apt untouched and let
us read suites the host does not use (bullseye, trixie, sid).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from .control import parse_stanzas
from .errors import LabError
from .kernels import KernelSpec

KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")


def sources_lines(spec: KernelSpec, mirrors: Tuple[str, str], signed_by: Optional[Path] = None) -> List[str]:
    """One-line apt sources for the kernel's suite(s)."""
    opts = f"[signed-by={signed_by}] " if signed_by else ""
    bases = {"debian": mirrors[0], "debian-security": mirrors[1]}
    return [f"deb {opts}{bases[archive]} {suite} main" for archive, suite in spec.apt_suites()]


class AptState:
    def __init__(self, root: Path, spec: KernelSpec, mirrors: Tuple[str, str]) -> None:
        self.root = root
        self.spec = spec
        self.mirrors = mirrors
        self.stamp = root / "updated"

    def _options(self) -> List[str]:
        r = self.root
        opts = {
            "Dir::Etc::SourceList": r / "sources.list",
            "Dir::Etc::SourceParts": r / "sources.list.d",
            "Dir::Etc::Preferences": r / "preferences",
            "Dir::Etc::PreferencesParts": r / "preferences.d",
            "Dir::State::Lists": r / "lists",
            "Dir::State::Status": r / "status",
            "Dir::Cache": r / "cache",
            "APT::Architecture": "amd64",
            "APT::Architectures": "amd64",
            "Acquire::Languages": "none",
            "Acquire::Check-Valid-Until": "true" if self.spec.check_valid_until else "false",
        }
        return [a for k, v in opts.items() for a in ("-o", f"{k}={v}")]

    def _prepare(self) -> None:
        for sub in ("lists/partial", "cache/archives/partial", "sources.list.d", "preferences.d"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "status").touch()
        signed = KEYRING if KEYRING.exists() else None
        text = "\n".join(sources_lines(self.spec, self.mirrors, signed)) + "\n"
        src = self.root / "sources.list"
        if not src.exists() or src.read_text() != text:
            src.write_text(text)
            self.stamp.unlink(missing_ok=True)  # new sources: lists are stale

    def update(self, max_age: float) -> None:
        """apt-get update unless lists are younger than max_age seconds.

        An offline host with old lists keeps working (with a warning): lists
        only move the cache key forward, never invalidate an existing image.
        """
        self._prepare()
        if self.stamp.exists() and time.time() - self.stamp.stat().st_mtime < max_age:
            return
        proc = subprocess.run(["apt-get", "-q", *self._options(), "update"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        failed = proc.returncode != 0 or "\nW: Failed" in proc.stdout or "\nE:" in proc.stdout
        if failed:
            if any((self.root / "lists").glob("*_Packages*")):
                print(f"mpxtrace lab: warning: apt update for {self.spec.suite} failed, "
                      f"using older lists:\n{proc.stdout[-2000:]}", file=sys.stderr)
                return
            raise LabError(f"apt-get update for {self.spec.suite} failed:\n{proc.stdout[-4000:]}")
        self.stamp.touch()

    def lists_version(self) -> Optional[float]:
        """Changes whenever the lists were refreshed (or the sources changed)."""
        return self.stamp.stat().st_mtime if self.stamp.exists() else None

    def show(self, package: str) -> Optional[Dict[str, str]]:
        """The candidate version's stanza, or None if apt knows no such package."""
        proc = subprocess.run(["apt-cache", *self._options(), "show", "--no-all-versions", package],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            return None
        stanzas = parse_stanzas(proc.stdout)
        return stanzas[0] if stanzas else None
