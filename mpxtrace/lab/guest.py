"""What runs inside the guest, and reading its results back from the serial console.

Two scripts: a fixed *stub* baked into the image (``/sbin/mpxlab-init``, the
kernel's ``init=``) and a per-run *init* written to the run's scratch disk.  The
stub only finds the scratch disk and hands over, so changing what a run does
never needs an image rebuild, and nothing about a run goes on the kernel
command line.  Pure functions only: tested on the host.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

STUB_PATH = "/sbin/mpxlab-init"
DEPS_DIR = "/opt/mpxtrace-deps"
PROJECT_MOUNT = "/mnt/project"
OUT_MOUNT = "/mnt/out"
RUN_DIR_ON_OUT = ".mpxlab"  # removed from /mnt/out before the command runs
PROJECT_LABEL = "mpxproj"
OUT_LABEL = "mpxout"
ROOT_LABEL = "mpxroot"
STUB_FAILURE = "MPXLAB-STUB-FAILED"

_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

STUB_SCRIPT = f"""#!/bin/sh
# mpxtrace lab: the kernel's init=. Finds the run disk by label and runs its init.
export PATH={_PATH}
mount -t proc proc /proc
mount -t sysfs sysfs /sys  # libblkid needs it to find LABEL=
mount -t devtmpfs devtmpfs /dev 2>/dev/null  # not auto-mounted without an initramfs
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/mpxlab {OUT_MOUNT}
# NVMe namespaces may appear a little after the root disk: retry for ~10 s.
i=0
until mount -t ext4 LABEL={OUT_LABEL} {OUT_MOUNT} 2>/dev/null; do
  i=$((i + 1))
  if [ "$i" -ge 50 ]; then echo "{STUB_FAILURE}: no disk labelled {OUT_LABEL}"; echo o > /proc/sysrq-trigger; sleep 30; fi
  sleep 0.2
done
if cp -a {OUT_MOUNT}/{RUN_DIR_ON_OUT}/. /run/mpxlab/ && rm -rf {OUT_MOUNT}/{RUN_DIR_ON_OUT}; then
  exec /bin/sh /run/mpxlab/init
fi
echo "{STUB_FAILURE}: no run script on {OUT_LABEL}"
echo o > /proc/sysrq-trigger
sleep 30
"""


@dataclass(frozen=True)
class Markers:
    """Console lines that delimit a run's results; the nonce makes them unforgeable."""

    nonce: str

    @property
    def release(self) -> str:
        return f"MPXLAB-{self.nonce}-RELEASE"

    @property
    def begin(self) -> str:
        return f"MPXLAB-{self.nonce}-BEGIN"

    @property
    def end(self) -> str:
        return f"MPXLAB-{self.nonce}-END"

    @property
    def exit(self) -> str:
        return f"MPXLAB-{self.nonce}-EXIT"


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def run_init_script(argv: Sequence[str], markers: Markers, env: Optional[Mapping[str, str]] = None) -> str:
    """The per-run init: mount the kernel filesystems, run argv, print results, power off.

    argv and env values are shell-quoted, never interpolated raw.
    """
    if not argv:
        raise ValueError("argv must not be empty")
    exports = []
    for name, value in (env or {}).items():
        if not _ENV_NAME.match(name):
            raise ValueError(f"invalid environment variable name: {name!r}")
        exports.append(f"export {name}={shlex.quote(value)}")
    command = " ".join(shlex.quote(a) for a in argv)
    return "\n".join([
        "#!/bin/sh",
        "# mpxtrace lab: per-run guest init (generated; see mpxtrace/lab/guest.py)",
        f"export PATH={_PATH}",
        "export HOME=/root TERM=dumb LANG=C.UTF-8",
        "mountpoint -q /sys || mount -t sysfs sysfs /sys",
        "mount -t tmpfs tmpfs /tmp",
        "mount -t securityfs securityfs /sys/kernel/security",
        "mount -t debugfs debugfs /sys/kernel/debug",
        # tracefs is auto-mounted under debugfs too, but tools look in /sys/kernel/tracing.
        "mount -t tracefs tracefs /sys/kernel/tracing",
        "mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs tmpfs /dev/shm",
        # what udev/systemd would link: bpftrace 0.27 (7.2's) compiles through /dev/fd/N
        "[ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd",
        f"mkdir -p {PROJECT_MOUNT}",
        f"mount -t ext4 -o ro LABEL={PROJECT_LABEL} {PROJECT_MOUNT}",
        "ulimit -l unlimited",  # BPF maps are charged to locked memory on older kernels
        # Keep kernel chatter off the console so it cannot interleave with the output.
        "echo 1 > /proc/sys/kernel/printk",
        # A kernel stuck for good (a soft lockup: 2 x watchdog_thresh without scheduling) ends
        # the guest at once, with every CPU's backtrace, instead of idling until the host's
        # timeout. The threshold is raised so that a starved TCG vCPU does not trip it, and
        # panic_print=32 replays the log the printk level above kept off the console.
        "for knob in watchdog_thresh=30 softlockup_all_cpu_backtrace=1 softlockup_panic=1 panic_print=32; do"
        " echo ${knob#*=} 2>/dev/null > /proc/sys/kernel/${knob%=*}; done",  # 2> first: it silences a missing knob
        f'echo "{markers.release} $(uname -r)"',
        f"export PYTHONPATH={PROJECT_MOUNT}:{DEPS_DIR}",
        "export PYTHONDONTWRITEBYTECODE=1",  # the project disk is read-only
        *exports,
        f"cd {PROJECT_MOUNT}",
        f"echo {markers.begin}",
        f"{command} </dev/null",
        "rc=$?",
        # The newline makes END start a line even if the output did not end with one.
        "echo",
        f"echo {markers.end}",
        # Stop leftovers (init itself survives kill -1) so /mnt/out can be unmounted;
        # the host reads that disk with debugfs, which does not replay a journal.
        "kill -KILL -1 2>/dev/null; sleep 0.2",
        f"cd / && sync && umount {OUT_MOUNT} || mount -o remount,ro {OUT_MOUNT}; sync",
        f'echo "{markers.exit} $rc"',
        "echo o > /proc/sysrq-trigger",
        "sleep 30",
        "",
    ])


@dataclass(frozen=True)
class ConsoleResult:
    kernel_release: Optional[str]
    exit_code: Optional[int]  # None: the guest never printed the exit marker
    output: str  # what the command printed (partial if it never finished)
    complete: bool  # both BEGIN and END seen
    began: bool = False  # BEGIN seen: the command was started


def parse_console(text: str, markers: Markers) -> ConsoleResult:
    """Extract release, output and exit status from a serial console capture."""
    text = text.replace("\r", "")  # the serial tty turns \n into \r\n
    release = None
    m = re.search(rf"^{re.escape(markers.release)} (\S+)$", text, re.MULTILINE)
    if m:
        release = m.group(1)
    exit_code = None
    m = re.search(rf"^{re.escape(markers.exit)} (\d+)$", text, re.MULTILINE)
    if m:
        exit_code = int(m.group(1))
    output, complete = "", False
    b = re.search(rf"^{re.escape(markers.begin)}\n", text, re.MULTILINE)
    if b:
        body = text[b.end():]
        e = re.search(rf"^{re.escape(markers.end)}$", body, re.MULTILINE)
        if e:
            # Drop the one newline the init's "echo" added before END.
            output, complete = body[:e.start()][:-1], True
        else:
            output = body
    return ConsoleResult(release, exit_code, output, complete, b is not None)


def stub_failure(text: str) -> Optional[str]:
    """The stub's own error line, if it printed one."""
    for line in text.replace("\r", "").splitlines():
        if line.startswith(STUB_FAILURE):
            return line
    return None

