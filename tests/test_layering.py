"""Every module in its room: the kernel probes (mpxtrace/kernel/) and the lab (mpxtrace/lab/)
import nothing from the rest of the package, so either can be read, tested and reused alone."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import List, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mpxtrace"
SELF_CONTAINED = ("kernel", "lab")


def imported_modules(source: str, package: Tuple[str, ...]) -> List[str]:
    """Absolute names of what `source`, a module of `package` (e.g. ("mpxtrace", "kernel")), imports."""
    names: List[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else ()
            names.append(".".join(base + ((node.module,) if node.module else ())))
    return names


def escapes(source: str, room: str) -> List[str]:
    return [name for name in imported_modules(source, ("mpxtrace", room))
            if name.split(".")[0] == "mpxtrace" and name.split(".")[:2] != ["mpxtrace", room]]


@pytest.mark.parametrize("room", SELF_CONTAINED)
def test_room_imports_nothing_from_the_rest_of_the_package(room: str) -> None:
    found = {str(path.relative_to(PACKAGE)): escapes(path.read_text(), room)
             for path in sorted((PACKAGE / room).glob("*.py"))}
    assert {path: names for path, names in found.items() if names} == {}


def test_escapes_are_seen() -> None:
    source = "from ..flags import kernel_config\nfrom .btf import Btf\nimport mpxtrace.tracer\nimport os\n"
    assert escapes(source, "kernel") == ["mpxtrace.flags", "mpxtrace.tracer"]
    assert escapes("from . import btf\nfrom mpxtrace.kernel.btf import Btf\n", "kernel") == []
