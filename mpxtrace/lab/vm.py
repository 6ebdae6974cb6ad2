"""run_in_guest: boot a lab kernel, run one command in it, collect its results."""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from . import guest
from .disks import dump_ext4, make_ext4, stage_tree, tree_size
from .errors import LabError
from .image import Image, cache_root, ensure_image
from .kernels import get_kernel
from .qemu import qemu_argv, run_qemu

# Never copied into the guest: VCS data, virtualenvs, bytecode, build junk.
PROJECT_EXCLUDES = (".git", ".venv", "venv", "__pycache__", ".pytest_cache", ".mypy_cache",
                    ".tox", "node_modules")
OUT_DISK_SIZE = 1 << 30  # sparse: costs only what the guest writes
KEEP_RUNS = 30  # console logs of this many recent runs are kept
# A boot that dies before the command begins (no BEGIN marker, no timeout) is tried once more:
# nothing of the command ran, so nothing is hidden.  CI saw 7.2 die 1.9 s into a boot, in the
# kernel's own text patching under TCG ("Oops: int3" in ktime_get, a kworker switching clocksource).
BOOT_ATTEMPTS = 2


@dataclass
class GuestResult:
    kernel: str  # lab kernel key, e.g. "6.1"
    kernel_release: Optional[str]  # `uname -r` in the guest; None if it never got that far
    exit_code: Optional[int]  # None: no exit marker (timeout, panic, boot failure)
    output: str  # the command's stdout+stderr (partial when exit_code is None)
    console_log: Path  # the whole serial console of the run
    seconds: float  # wall time of the boot+run (image build excluded)
    error: Optional[str] = None  # why exit_code is None, pointing at console_log
    failed_boots: List[str] = field(default_factory=list)  # boots that died before the command began

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def check(self) -> "GuestResult":
        """Raise LabError unless the command ran and exited 0."""
        if self.exit_code is None:
            raise LabError(self.error or f"guest run failed; see {self.console_log}")
        if self.exit_code != 0:
            raise LabError(f"command exited {self.exit_code} in the {self.kernel} guest; "
                           f"output:\n{self.output[-4000:]}\nconsole log: {self.console_log}")
        return self


def _run_dir(kernel: str, nonce: str) -> Path:
    runs = cache_root() / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    old = sorted(runs.iterdir(), key=lambda p: p.name)
    for stale in old[:max(0, len(old) - KEEP_RUNS + 1)]:
        shutil.rmtree(stale, ignore_errors=True)
    run = runs / f"{time.strftime('%Y%m%d-%H%M%S')}-{kernel}-{nonce[:8]}"
    run.mkdir()
    return run


def _diagnose(console: str, timed_out: bool, timeout: float, log: Path) -> str:
    stub = guest.stub_failure(console)
    if stub:
        why = f"the guest could not start the run ({stub})"
    elif timed_out:
        why = f"the guest did not finish within {timeout:.0f} s (killed)"
    elif "Kernel panic" in console:
        line = next(l for l in console.splitlines() if "Kernel panic" in l)
        why = f"the guest kernel panicked ({line.strip()})"
    else:
        why = "the guest stopped without printing its exit marker"
    return f"{why}; see the console log {log}"


class _ConsoleEcho:
    """Follows the console log while QEMU runs and passes on the command's output lines."""

    def __init__(self, path: Path, markers: "guest.Markers", sink: Callable[[str], None]) -> None:
        self.path, self.markers, self.sink = path, markers, sink
        self.offset = 0
        self.partial = ""
        self.state = "before"

    def __call__(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except OSError:
            return
        self.offset += len(chunk)
        lines = (self.partial + chunk.decode("utf-8", "replace").replace("\r", "")).split("\n")
        self.partial = lines.pop()
        for line in lines:
            if self.state == "before" and line == self.markers.begin:
                self.state = "body"
            elif self.state == "body" and line == self.markers.end:
                self.state = "done"
            elif self.state == "body":
                self.sink(line + "\n")


def run_in_guest(kernel: str, argv: Sequence[str], *, project_dir: Path, timeout: float = 600,
                 env: Optional[Dict[str, str]] = None, out_dir: Optional[Path] = None,
                 echo: Optional[Callable[[str], None]] = None) -> GuestResult:
    """Run argv in a fresh boot of lab kernel `kernel` (building its image if needed).

    In the guest: root, cwd /mnt/project (project_dir, read-only), PYTHONPATH
    /mnt/project:/opt/mpxtrace-deps, debugfs/tracefs mounted, `ulimit -l unlimited`.
    Files the command writes under /mnt/out are copied to out_dir afterwards.
    `echo` receives the command's output line by line while it runs (for live display).
    `timeout` bounds the boot+run; the one-time image build is not counted.
    """
    spec = get_kernel(kernel)
    argv = [str(a) for a in argv]
    project_dir = Path(project_dir)
    if not project_dir.is_dir():
        raise LabError(f"project_dir {project_dir} is not a directory")
    guest.run_init_script(argv, guest.Markers("0"), env)  # validate early
    image: Image = ensure_image(spec.key)
    failed_boots: List[str] = []
    while True:
        result, began, timed_out = _boot_and_run(spec.key, image, argv, project_dir, timeout, env, out_dir, echo)
        if began or timed_out or result.exit_code is not None or len(failed_boots) + 1 >= BOOT_ATTEMPTS:
            break
        failed_boots.append(result.error or f"see {result.console_log}")
    if failed_boots and result.error is not None:
        result.error += f" (after {len(failed_boots)} boot(s) that failed the same way: {'; '.join(failed_boots)})"
    result.failed_boots = failed_boots
    return result


def _boot_and_run(kernel: str, image: Image, argv: Sequence[str], project_dir: Path, timeout: float,
                  env: Optional[Dict[str, str]], out_dir: Optional[Path],
                  echo: Optional[Callable[[str], None]]) -> Tuple[GuestResult, bool, bool]:
    """One boot: the result, whether the command began (its BEGIN marker), whether it timed out."""
    nonce = secrets.token_hex(8)
    markers = guest.Markers(nonce)
    run = _run_dir(kernel, nonce)
    console_log = run / "console.log"
    work = Path(tempfile.mkdtemp(prefix="work-", dir=run))
    try:
        tree = work / "project"
        stage_tree(project_dir, tree, PROJECT_EXCLUDES)
        size, entries = tree_size(tree)
        make_ext4(tree, work / "project.img", guest.PROJECT_LABEL, int(size * 1.3) + (32 << 20),
                  inodes=entries + 4096)
        shutil.rmtree(tree)

        out_tree = work / "out"
        (out_tree / guest.RUN_DIR_ON_OUT).mkdir(parents=True)
        script = guest.run_init_script(argv, markers, env)
        (out_tree / guest.RUN_DIR_ON_OUT / "init").write_text(script)
        # No journal: the host reads this disk with debugfs, which does not replay one.
        make_ext4(out_tree, work / "out.img", guest.OUT_LABEL, OUT_DISK_SIZE, features="^has_journal")

        cmd = qemu_argv(image.vmlinuz, image.rootfs, image.root_partuuid, guest.STUB_PATH,
                        [(guest.PROJECT_LABEL, work / "project.img"), (guest.OUT_LABEL, work / "out.img")])
        (run / "qemu.argv").write_text("\n".join(cmd) + "\n")
        start = time.monotonic()
        qemu_stderr = run / "qemu.stderr"
        status, timed_out = run_qemu(cmd, console_log, qemu_stderr, timeout,
                                     _ConsoleEcho(console_log, markers, echo) if echo else None)
        seconds = time.monotonic() - start

        console = console_log.read_text(errors="replace")
        parsed = guest.parse_console(console, markers)
        error = None
        if parsed.exit_code is None:
            error = _diagnose(console, timed_out, timeout, console_log)
            qemu_says = qemu_stderr.read_text(errors="replace").strip()
            if qemu_says and not timed_out:
                error += f"; QEMU exited {status}: {qemu_says[-1000:]}"
        if out_dir is not None:
            dumped = work / "dumped"
            try:
                dump_ext4(work / "out.img", dumped)
                shutil.copytree(dumped, out_dir, symlinks=True, dirs_exist_ok=True)
            except LabError:
                if parsed.exit_code is not None:
                    raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return (GuestResult(kernel, parsed.kernel_release, parsed.exit_code, parsed.output,
                        console_log, round(seconds, 2), error), parsed.began, timed_out)
