"""Build (once, cached) a bootable guest per lab kernel: vmlinuz + an ext4 root disk.

Cache layout under ${MPXTRACE_LAB_CACHE:-/var/cache/mpxtrace-lab}/<kernel key>/:
  apt/            private apt state used to resolve versions
  <key>/          a finished image: vmlinuz, root.img, manifest.json, build.log
  build-<key>.log the log of the latest build attempt for that key
  .build-*        a build in progress (renamed to <key> only when complete)
The key hashes the resolved package versions and RECIPE_VERSION, so an image is
rebuilt only when the archive moves or this recipe changes.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from . import guest
from .aptstate import KEYRING, AptState, sources_lines
from .disks import make_ext4, partuuid, tree_size
from .errors import LabError
from .kernels import KernelSpec, get_kernel
from .mirror import host_mirrors
from .resolve import Resolved, resolve_kernel
from .steplog import StepLog
from .wheels import RUNTIME_WHEELS, download_and_unpack

# Bump when the image contents change in a way the package versions do not capture.
RECIPE_VERSION = 4  # 4: bpftrace and stress-ng for bench/suite.py

# What the guest needs besides BCC and headers (given exact versions in build()).
GUEST_PACKAGES = ("python3", "procps", "mount", "util-linux", "e2fsprogs", "kmod")

# The benchmark's peer (bpftrace) and load generator (stress-ng), from the suite's own apt.
# Installed where the suite has them; the manifest records which, and bench/suite.py says
# what it could not measure without them.
BENCH_PACKAGES = ("bpftrace", "stress-ng")

# Re-read package lists at most this often (seconds); $MPXTRACE_LAB_APT_MAX_AGE overrides.
APT_MAX_AGE = 6 * 3600

_CHROOT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "DEBIAN_FRONTEND": "noninteractive",
    "LC_ALL": "C",
}

# Mounts live in a private mount namespace, so they vanish with the chroot and
# never leak into (or get deleted through from) the host.
_CHROOT_SH = ('r="$1"; shift; mount -t proc proc "$r/proc" && mount -t sysfs sysfs "$r/sys" '
              '&& mount --rbind /dev "$r/dev" && exec chroot "$r" /bin/sh -ec "$1"')


def cache_root() -> Path:
    return Path(os.environ.get("MPXTRACE_LAB_CACHE") or "/var/cache/mpxtrace-lab")


def cache_key(resolved: Resolved, recipe_version: int = RECIPE_VERSION) -> str:
    """Short stable hash of everything that decides the image contents."""
    material = {
        "recipe": recipe_version,
        "suite": resolved.suite,
        "release": resolved.release,
        "vmlinuz": [resolved.vmlinuz_package, resolved.vmlinuz_path],
        "image": [resolved.image_package, resolved.image_version],
        "headers": [resolved.headers_package, resolved.headers_version],
        "bcc": resolved.bcc_version,
        "python": resolved.python_package_version,
    }
    blob = json.dumps(material, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class Image:
    kernel: str
    directory: Path
    manifest: Dict[str, Any]

    @property
    def vmlinuz(self) -> Path:
        return self.directory / "vmlinuz"

    @property
    def rootfs(self) -> Path:
        return self.directory / "root.img"

    @property
    def root_partuuid(self) -> str:
        return str(self.manifest["root_partuuid"])

    @property
    def resolved(self) -> Resolved:
        return Resolved.from_dict(self.manifest["resolved"])

    @classmethod
    def load(cls, kernel: str, directory: Path) -> "Image":
        return cls(kernel, directory, json.loads((directory / "manifest.json").read_text()))


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Serialise builds of one kernel across processes (e.g. parallel test workers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def cached_images(kernel: str) -> List[Image]:
    """Finished images for a kernel, newest first."""
    kdir = cache_root() / get_kernel(kernel).key
    found = [Image.load(get_kernel(kernel).key, d.parent) for d in kdir.glob("*/manifest.json")
             if not d.parent.name.startswith(".")]
    return sorted(found, key=lambda im: im.manifest.get("built_at", 0), reverse=True)


def _progress(msg: str) -> None:
    print(f"mpxtrace lab: {msg}", file=sys.stderr, flush=True)


def ensure_image(kernel: str, *, progress: Optional[Callable[[str], None]] = None) -> Image:
    """Return the cached image for `kernel`, building it first if needed."""
    spec = get_kernel(kernel)
    progress = progress or _progress
    kdir = cache_root() / spec.key
    with _locked(kdir / ".lock"):
        mirrors = host_mirrors()
        apt = AptState(kdir / "apt", spec, mirrors)
        try:
            apt.update(float(os.environ.get("MPXTRACE_LAB_APT_MAX_AGE", APT_MAX_AGE)))
            resolved = _resolve(spec, apt)
        except LabError as exc:
            # Offline with a usable image: run on what we have rather than fail.
            existing = cached_images(spec.key)
            if existing:
                progress(f"warning: cannot resolve {spec.suite} packages ({exc}); using cached "
                         f"image {existing[0].directory}")
                return existing[0]
            raise
        final = kdir / cache_key(resolved)
        if (final / "manifest.json").exists():
            return Image.load(spec.key, final)
        return _build(spec, resolved, final, mirrors, progress, apt)


def _resolve(spec: KernelSpec, apt: AptState) -> Resolved:
    """resolve_kernel, memoised per apt-lists refresh: each apt-cache call re-reads
    the whole package cache (~0.5 s), which would dominate a warm run's start-up."""
    memo = apt.root / "resolved.json"
    version = apt.lists_version()
    try:
        data = json.loads(memo.read_text())
        if version is not None and data.get("lists_version") == version:
            return Resolved.from_dict(data["resolved"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    resolved = resolve_kernel(spec, apt.show)
    if version is not None:
        memo.write_text(json.dumps({"lists_version": version, "resolved": resolved.to_dict()}))
    return resolved


def _chroot(log: StepLog, step: str, root: Path, script: str) -> None:
    log.run(step, ["unshare", "--mount", "--propagation", "private", "--",
                   "sh", "-c", _CHROOT_SH, "mpxlab-chroot", str(root), script], env=_CHROOT_ENV)


def _configure_apt(spec: KernelSpec, root: Path, mirrors: Tuple[str, str]) -> None:
    apt_dir = root / "etc/apt"
    (apt_dir / "sources.list").write_text("\n".join(sources_lines(spec, mirrors)) + "\n")
    conf = ['APT::Install-Recommends "false";', 'APT::Install-Suggests "false";',
            'Acquire::Languages "none";']
    if not spec.check_valid_until:
        conf.append('Acquire::Check-Valid-Until "false";')  # sid's Release often expired
    (apt_dir / "apt.conf.d/99mpxlab").write_text("\n".join(conf) + "\n")
    # No service may start inside the chroot.
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    resolv = root / "etc/resolv.conf"
    if resolv.is_symlink() or resolv.exists():
        resolv.unlink()
    resolv.write_text(Path("/etc/resolv.conf").read_text() if Path("/etc/resolv.conf").exists() else "")


def _safe_rmtree(root: Path) -> None:
    for sub in ("proc", "sys", "dev"):
        if os.path.ismount(root / sub):
            raise LabError(f"{root / sub} is still mounted; refusing to delete {root}")
    shutil.rmtree(root, ignore_errors=True)


def _available(apt: AptState, packages: Tuple[str, ...]) -> Dict[str, Optional[str]]:
    """Candidate version of each package in the suite, None where the suite lacks it."""
    found: Dict[str, Optional[str]] = {}
    for name in packages:
        stanza = apt.show(name)
        found[name] = stanza.get("Version") if stanza else None
    return found


def _build(spec: KernelSpec, r: Resolved, final: Path, mirrors: Tuple[str, str],
           progress: Callable[[str], None], apt: AptState) -> Image:
    kdir = final.parent
    for stale in kdir.glob(".build-*"):  # we hold the lock: these are interrupted builds
        _safe_rmtree(stale / "root")
        shutil.rmtree(stale, ignore_errors=True)
    tmp = kdir / f".build-{final.name}-{os.getpid()}"
    tmp.mkdir()
    log_path = kdir / f"build-{final.name}.log"
    log_path.unlink(missing_ok=True)
    log = StepLog(log_path, f"lab image {spec.key} ({r.release})", progress)
    started = time.monotonic()
    progress(f"building the {spec.key} guest image ({r.suite}, {r.release}); this takes a few "
             f"minutes once; log: {log_path}")
    log.note(f"resolved: {json.dumps(r.to_dict(), indent=1)}")
    root = tmp / "root"
    try:
        debootstrap = ["debootstrap", "--variant=minbase", "--components=main"]
        if KEYRING.exists():
            debootstrap.append(f"--keyring={KEYRING}")
        log.run(f"debootstrap {r.suite}", debootstrap + [r.suite, str(root), mirrors[0]],
                env=_CHROOT_ENV)
        _configure_apt(spec, root, mirrors)
        packages = list(GUEST_PACKAGES) + [f"{r.headers_package}={r.headers_version}",
                                           f"python3-bpfcc={r.bcc_version}"]
        bench_tools = _available(apt, BENCH_PACKAGES)
        for name, version in bench_tools.items():
            log.note(f"{name}: {version or f'not in {r.suite}; the benchmark will skip it'}")
        packages += [f"{name}={version}" for name, version in bench_tools.items() if version]
        _chroot(log, "apt-get install BCC and kernel headers", root,
                "apt-get -q update && apt-get -q -y install " + " ".join(packages))
        # Only vmlinuz is needed from the kernel (NVMe and ext4 are built in): unpack the
        # package instead of installing it, which would also build an initramfs.
        _chroot(log, f"unpack {r.vmlinuz_package}", root,
                f"mkdir -p /tmp/kernel && cd /tmp/kernel && apt-get -q download "
                f"{r.vmlinuz_package}={r.image_version} && dpkg-deb -x ./*.deb /tmp/kernel/x && "
                "dpkg-query -W -f '${Package} ${Version}\\n' > /tmp/kernel/dpkg-list")
        vmlinuz = root / "tmp/kernel/x" / r.vmlinuz_path
        if not vmlinuz.is_file():
            raise log.fail(f"unpack {r.vmlinuz_package}", f"no {r.vmlinuz_path} in the package")
        shutil.copyfile(vmlinuz, tmp / "vmlinuz")
        installed = dict(line.split(" ", 1) for line in
                         (root / "tmp/kernel/dpkg-list").read_text().splitlines() if " " in line)
        wheels = download_and_unpack(RUNTIME_WHEELS, r.python_version, tmp / "wheels",
                                     root / guest.DEPS_DIR.lstrip("/"), log)
        stub = root / guest.STUB_PATH.lstrip("/")
        stub.write_text(guest.STUB_SCRIPT)
        stub.chmod(0o755)
        _chroot(log, "clean up the root fs", root,
                "apt-get clean && rm -rf /var/lib/apt/lists/* /tmp/* /var/tmp/* /boot/initrd.img* "
                "/usr/share/doc/* /usr/share/man/* /usr/share/info/*")
        size, entries = tree_size(root)
        signature = random.SystemRandom().randrange(1, 1 << 32)
        progress(f"lab image {spec.key}: mkfs.ext4 ({size >> 20} MiB of files)")
        # Headroom for what tests write into the root fs (/tmp and /run are tmpfs).
        make_ext4(root, tmp / "root.img", guest.ROOT_LABEL, int(size * 1.2) + (256 << 20),
                  partition_signature=signature, inodes=int(entries * 1.3) + 16384, log=log)
        _safe_rmtree(root)
        shutil.rmtree(tmp / "wheels", ignore_errors=True)
        manifest = {
            "kernel": spec.key,
            "key": final.name,
            "recipe_version": RECIPE_VERSION,
            "resolved": r.to_dict(),
            "root_partuuid": partuuid(signature),
            "wheels": wheels,
            "bench_tools": bench_tools,
            "guest_packages": {p: v for p, v in installed.items()
                               if p in ("python3", "python3-bpfcc", "libbpfcc", r.headers_package)
                               or p.startswith(("libllvm", "libclang-cpp"))},
            "mirrors": list(mirrors),
            "built_at": time.time(),
            "build_seconds": round(time.monotonic() - started, 1),
            "root_files_bytes": size,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
        log.note(f"build finished in {manifest['build_seconds']} s")
        log.close()
        shutil.copyfile(log_path, tmp / "build.log")
        os.rename(tmp, final)  # atomic: a cache entry is complete or absent
    except BaseException:
        log.close()
        _safe_rmtree(root)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log_path.unlink(missing_ok=True)  # a copy is in the image directory
    # Older images of this kernel are superseded (1 GB each); a run that already
    # started QEMU on one keeps its open file.
    for old in kdir.glob("*/manifest.json"):
        if old.parent != final:
            shutil.rmtree(old.parent, ignore_errors=True)
    progress(f"lab image {spec.key} built in {manifest['build_seconds']} s: {final}")
    return Image.load(spec.key, final)
