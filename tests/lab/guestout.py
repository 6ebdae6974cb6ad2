"""Guest side of every lab test: print the one JSON report between two marker lines, where
the host (tests/lab/guestreport.py) finds it in the guest's output.  Standard library only:
it runs on the guests' Python 3.9 to 3.14."""
from __future__ import annotations

import json
from typing import Any, Dict


def print_report(mark: str, report: Dict[str, Any]) -> None:
    print(mark)
    print(json.dumps(report))
    print(mark, flush=True)
