"""Disk images without loop devices: ``mkfs.ext4 -d`` fills a file from a directory."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Optional, Tuple

from .errors import LabError

if TYPE_CHECKING:
    from .steplog import StepLog

SECTOR = 512
PART_START = 2048  # 1 MiB alignment, as fdisk does


def tree_size(root: Path) -> Tuple[int, int]:
    """(bytes rounded up to 4 KiB blocks, number of entries) of a directory tree."""
    total, count = 0, 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            total += (st.st_size + 4095) // 4096 * 4096
            count += 1
    return total, count


def mbr_bytes(signature: int, start: int, sectors: int) -> bytes:
    """A one-partition MBR (type 0x83).

    The kernel turns the disk signature into PARTUUID ``SSSSSSSS-01``, which lets
    ``root=PARTUUID=`` find the root disk without an initramfs and without relying
    on NVMe probe order (controllers are probed asynchronously).
    """
    mbr = bytearray(SECTOR)
    struct.pack_into("<I", mbr, 440, signature)
    chs = b"\xfe\xff\xff"  # "use LBA"
    mbr[446:462] = struct.pack("<B3sB3sII", 0, chs, 0x83, chs, start, sectors)
    mbr[510:512] = b"\x55\xaa"
    return bytes(mbr)


def partuuid(signature: int) -> str:
    return f"{signature:08x}-01"


def make_ext4(src: Path, image: Path, label: str, size: int, *, partition_signature: Optional[int] = None,
              inodes: Optional[int] = None, features: Optional[str] = None, log: Optional[StepLog] = None) -> None:
    """Create a sparse ext4 image of `size` bytes filled from `src`.

    With partition_signature the filesystem goes into partition 1 of an MBR disk.
    """
    size = (size + (1 << 20) - 1) // (1 << 20) << 20
    image.unlink(missing_ok=True)
    with open(image, "wb") as f:
        f.truncate(size)
        if partition_signature is not None:
            f.write(mbr_bytes(partition_signature, PART_START, size // SECTOR - PART_START))
    argv = ["mkfs.ext4", "-q", "-F", "-L", label, "-m", "0", "-d", str(src)]
    if inodes:
        argv += ["-N", str(inodes)]
    if features:
        argv += ["-O", features]
    fs_bytes = size
    if partition_signature is not None:
        argv += ["-E", f"offset={PART_START * SECTOR}"]
        fs_bytes -= PART_START * SECTOR
    argv += [str(image), f"{fs_bytes // 1024}k"]
    if log is not None:
        log.run(f"mkfs.ext4 {image.name}", argv, quiet=True)
        return
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise LabError(f"mkfs.ext4 for {image} failed: {proc.stdout[-2000:]}")


def stage_tree(src: Path, dest: Path, exclude: Iterable[str]) -> None:
    """Copy src to dest, skipping any file or directory whose name is in exclude."""
    names = set(exclude)
    shutil.copytree(src, dest, symlinks=True, ignore=lambda d, entries: [e for e in entries if e in names])


def dump_ext4(image: Path, dest: Path) -> None:
    """Copy a (non-partitioned) ext4 image's contents into dest, without mounting it."""
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["debugfs", "-R", f"rdump / {dest}", str(image)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # debugfs exits 0 even when a command fails: look for its error lines too.
    errors = [l for l in proc.stdout.splitlines() if l and not l.startswith("debugfs ")]
    if proc.returncode != 0 or errors:
        raise LabError(f"copying the guest's /mnt/out from {image} failed: {proc.stdout[-2000:]}")
    lost = dest / "lost+found"
    if lost.is_dir() and not any(lost.iterdir()):
        lost.rmdir()
