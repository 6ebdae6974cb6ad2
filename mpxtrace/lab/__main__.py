"""python -m mpxtrace.lab [--kernel K] [--list] -- CMD...: run CMD in a lab guest."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional

from .errors import LabError
from .image import cached_images
from .kernels import ALIASES, DEFAULT_KERNEL, KERNELS
from .vm import run_in_guest

LAB_FAILURE = 125  # exit status when the guest gave no result (boot failure, timeout)


def _list() -> None:
    for key, spec in KERNELS.items():
        aliases = ", ".join(a for a, k in ALIASES.items() if k == key)
        images = cached_images(key)
        if images:
            m = images[0].manifest
            cached = (f"cached {m['resolved']['release']}, BCC {m['resolved']['bcc_version']}, "
                      f"Python {m['resolved']['python_version']}: {images[0].directory}")
        else:
            cached = "not built yet"
        print(f"{key:5} {spec.suite:9} ({aliases}) {spec.note}; {cached}")


def _env(pairs: List[str]) -> Dict[str, str]:
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--env needs NAME=VALUE, got {pair!r}")
        env[name] = value
    return env


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpxtrace.lab", description=__doc__)
    parser.add_argument("--kernel", "-k", default=DEFAULT_KERNEL,
                        help=f"lab kernel: {', '.join(KERNELS)} (default {DEFAULT_KERNEL})")
    parser.add_argument("--list", action="store_true", help="list the lab kernels and cached images")
    parser.add_argument("--project", type=Path, default=Path.cwd(),
                        help="directory mounted read-only at /mnt/project (default: cwd)")
    parser.add_argument("--out", type=Path, help="copy the guest's /mnt/out here afterwards")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--timeout", type=float, default=600, help="seconds for boot+run")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    args = parser.parse_args(argv)
    if args.list:
        _list()
        return 0
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (use: -- CMD ARGS...)")
    try:
        result = run_in_guest(args.kernel, command, project_dir=args.project, timeout=args.timeout,
                              env=_env(args.env), out_dir=args.out)
    except (LabError, KeyError) as exc:
        print(f"mpxtrace lab: error: {exc}", file=sys.stderr)
        return LAB_FAILURE
    sys.stdout.write(result.output)
    if result.output and not result.output.endswith("\n"):
        sys.stdout.write("\n")
    print(f"mpxtrace lab: {result.kernel} ({result.kernel_release}) exit {result.exit_code} "
          f"in {result.seconds:.1f} s; console: {result.console_log}", file=sys.stderr)
    for failed in result.failed_boots:
        print(f"mpxtrace lab: an earlier boot died before the command began, and was booted again: {failed}",
              file=sys.stderr)
    if result.exit_code is None:
        print(f"mpxtrace lab: error: {result.error}", file=sys.stderr)
        return LAB_FAILURE
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
