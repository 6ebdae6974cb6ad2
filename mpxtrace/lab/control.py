"""Parse Debian control data as printed by ``apt-cache show``."""

from __future__ import annotations

import re
from typing import Dict, List, Tuple


def parse_stanzas(text: str) -> List[Dict[str, str]]:
    """Split RFC822-style stanzas; continuation lines are joined with newlines."""
    stanzas: List[Dict[str, str]] = []
    current: Dict[str, str] = {}
    last = None
    for line in text.splitlines():
        if not line.strip():
            if current:
                stanzas.append(current)
            current, last = {}, None
        elif line[0] in " \t" and last is not None:
            current[last] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            last = key.strip()
            current[last] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def parse_depends(value: str) -> List[List[Tuple[str, str]]]:
    """``a (= 1) | b, c`` -> [[("a", "= 1"), ("b", "")], [("c", "")]]."""
    groups: List[List[Tuple[str, str]]] = []
    for group in value.split(","):
        alts = []
        for alt in group.split("|"):
            m = re.match(r"^\s*([^\s(\[]+)\s*(?:\(([^)]*)\))?", alt)
            if m and m.group(1):
                name = m.group(1).split(":", 1)[0]  # drop :any / :amd64 qualifiers
                alts.append((name, (m.group(2) or "").strip()))
        if alts:
            groups.append(alts)
    return groups


def dep_names(stanza: Dict[str, str], field: str = "Depends") -> List[str]:
    """Every package name mentioned in a dependency field (alternatives included)."""
    return [name for group in parse_depends(stanza.get(field, "")) for name, _ in group]


def python_minor(debian_version: str) -> str:
    """"3.11.2-1+b1" -> "3.11" (the python3 package version is the interpreter's)."""
    m = re.match(r"^(?:\d+:)?(\d+)\.(\d+)", debian_version)
    if not m:
        raise ValueError(f"not a python3 package version: {debian_version!r}")
    return f"{m.group(1)}.{m.group(2)}"
