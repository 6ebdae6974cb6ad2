"""Types are checked everywhere: mypy --strict over the whole package (pyproject's [tool.mypy]),
and one annotation style that the Python 3.9 of the 5.10 lab guest can run.

mypy cannot target 3.9 any more (its python_version starts at 3.10), so what 3.9 needs is
checked here: every module parses with the 3.9 grammar and postpones its annotations
(``from __future__ import annotations``), and annotations use typing's generics (``Dict``,
``Optional``) rather than ``dict[...]``/``X | None``, which 3.9 cannot evaluate at run time
(dataclasses, click and typing.get_type_hints may evaluate them)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mpxtrace"
BUILTIN_GENERICS = {"dict": "Dict", "list": "List", "tuple": "Tuple", "set": "Set", "frozenset": "FrozenSet",
                    "type": "Type"}


def test_mypy_strict_passes_on_the_whole_package() -> None:
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True)
    assert proc.returncode == 0, proc.stdout
    # every module was checked: nothing excluded (mpxtrace/lab/ included)
    assert f"no issues found in {len(_modules())} source files" in proc.stdout, proc.stdout


def _modules() -> List[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _annotations(tree: ast.AST) -> Iterator[ast.expr]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            for arg in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]:
                if arg is not None and arg.annotation is not None:
                    yield arg.annotation
            if node.returns is not None:
                yield node.returns
        elif isinstance(node, ast.AnnAssign):
            yield node.annotation


def style_problems(source: str) -> List[str]:
    """What keeps `source` from the one typing style (empty when it follows it)."""
    tree = ast.parse(source, feature_version=(3, 9))
    problems: List[str] = []
    has_code = any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)) for n in tree.body)
    future = any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and
                 any(a.name == "annotations" for a in n.names) for n in tree.body)
    if has_code and not future:
        problems.append("no `from __future__ import annotations`")
    for annotation in _annotations(tree):
        for node in ast.walk(annotation):
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) \
                    and node.value.id in BUILTIN_GENERICS:
                problems.append(f"line {node.lineno}: {node.value.id}[...]: use typing's "
                                f"{BUILTIN_GENERICS[node.value.id]}[...]")
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
                problems.append(f"line {node.lineno}: X | Y: use Optional[X] / Union[X, Y]")
    return problems


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_follows_the_typing_style(path: Path) -> None:
    assert style_problems(path.read_text()) == []


def test_style_check_sees_each_departure() -> None:
    good = "from __future__ import annotations\nfrom typing import Dict, Optional\n" \
           "def f(a: Dict[str, int], b: Optional[int] = None) -> None: ...\n"
    assert style_problems(good) == []
    assert style_problems("def f(a: int) -> None: ...\n") == ["no `from __future__ import annotations`"]
    assert len(style_problems("from __future__ import annotations\nx: dict[str, int] = {}\n")) == 1
    assert len(style_problems("from __future__ import annotations\ndef f() -> int | None: ...\n")) == 1
    with pytest.raises(SyntaxError):  # 3.10 grammar
        style_problems("match x:\n    case 1:\n        pass\n")
