"""Find the Debian mirror the host already uses (never hard-code another host)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

APT_SOURCES = Path("/etc/apt/sources.list")
APT_SOURCES_D = Path("/etc/apt/sources.list.d")


def source_uris(texts: Iterable[str]) -> List[str]:
    """All repository URIs in one-line (.list) or deb822 (.sources) texts."""
    uris: List[str] = []
    for text in texts:
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            m = re.match(r"^URIs:\s*(.*)$", line, re.IGNORECASE)
            if m:
                uris.extend(m.group(1).split())
                continue
            m = re.match(r"^deb(?:-src)?\s+(?:\[[^\]]*\]\s+)?(\S+)", line)
            if m:
                uris.append(m.group(1))
    return uris


def pick_mirrors(uris: Iterable[str]) -> Tuple[Optional[str], Optional[str]]:
    """(debian, debian-security) base URIs, e.g. http://deb.debian.org/debian."""
    debian = security = None
    for uri in uris:
        uri = uri.rstrip("/")
        if security is None and uri.endswith("/debian-security"):
            security = uri
        elif debian is None and uri.endswith("/debian"):
            debian = uri
    # Security updates live beside the main archive on Debian mirrors.
    if security is None and debian is not None:
        security = debian + "-security"
    return debian, security


def host_mirrors() -> Tuple[str, str]:
    """Mirrors from $MPXTRACE_LAB_MIRROR[_SECURITY] or the host's apt sources."""
    env_main = os.environ.get("MPXTRACE_LAB_MIRROR")
    env_sec = os.environ.get("MPXTRACE_LAB_MIRROR_SECURITY")
    texts = []
    files = [APT_SOURCES] + (sorted(APT_SOURCES_D.glob("*.list")) + sorted(APT_SOURCES_D.glob("*.sources"))
                             if APT_SOURCES_D.is_dir() else [])
    for path in files:
        try:
            texts.append(path.read_text())
        except OSError:
            pass
    debian, security = pick_mirrors(source_uris(texts))
    debian = (env_main or debian or "").rstrip("/")
    if not debian:
        from .errors import LabError
        raise LabError("no Debian mirror found in /etc/apt/sources.list{,.d}; set MPXTRACE_LAB_MIRROR")
    security = (env_sec or (security if not env_main else None) or debian + "-security").rstrip("/")
    return debian, security
