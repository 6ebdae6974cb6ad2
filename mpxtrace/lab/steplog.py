"""Run build steps with all their output in one log file, failing with the step name."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

from .errors import LabError


class StepLog:
    def __init__(self, path: Path, what: str, progress: Optional[Callable[[str], None]] = None) -> None:
        self.path = path
        self.what = what  # e.g. "lab image for 6.1", used in error messages
        self.progress = progress or (lambda msg: print(f"mpxtrace lab: {msg}", file=sys.stderr, flush=True))
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", buffering=1)

    def note(self, text: str) -> None:
        self._file.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")

    def fail(self, step: str, detail: str = "") -> LabError:
        self.note(f"FAILED: {step} {detail}")
        return LabError(f"{self.what}: step '{step}' failed{': ' + detail if detail else ''}; "
                        f"see the log {self.path}")

    def run(self, step: str, argv: Sequence[str], *, env: Optional[Dict[str, str]] = None,
            timeout: float = 1800, quiet: bool = False) -> None:
        """Run argv with stdout+stderr appended to the log (not a pipe: output can be huge)."""
        if not quiet:
            self.progress(f"{self.what}: {step}")
        self.note(f"== {step}: {' '.join(argv)}")
        full_env = dict(os.environ, **(env or {}))
        start = time.monotonic()
        self._file.flush()
        try:
            rc = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=self._file,
                                stderr=subprocess.STDOUT, env=full_env, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            raise self.fail(step, f"timed out after {timeout:.0f} s") from None
        except OSError as exc:
            raise self.fail(step, str(exc)) from None
        self.note(f"== {step}: exit {rc} after {time.monotonic() - start:.1f} s")
        if rc != 0:
            raise self.fail(step, f"exit status {rc}")

    def close(self) -> None:
        self._file.close()
